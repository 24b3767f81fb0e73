#!/usr/bin/env bash
# The whole test suite: install (idempotent), start the real database engines, run pytest.
# Extra arguments go to pytest. Exit status is pytest's; "no tests collected" (5) fails too.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/browser.sh  # headless Chromium for the HTML report test (Debian's package; no-op when present)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# The BEIR test data lives beside the checkout (../shared/data); a clone elsewhere finds the workspace copy.
if [ -z "${SDK_DATA_DIR:-}" ]; then
  for candidate in "$PWD/../shared/data" /work/shared/data; do
    if [ -f "$candidate/pyfaq/corpus.jsonl" ]; then export SDK_DATA_DIR="$(cd "$candidate" && pwd)"; break; fi
  done
fi
if [ -x scripts/engines.sh ] && [ -z "${SDK_SKIP_ENGINES:-}" ]; then
  # Engines this run starts are stopped when it ends (SDK_KEEP_ENGINES=1 keeps them), so no server
  # outlives its clone and a later run never reuses one whose data folder is gone.
  if ! scripts/engines.sh status >/dev/null 2>&1 && [ -z "${SDK_KEEP_ENGINES:-}" ]; then
    trap 'scripts/engines.sh stop >&2 || true' EXIT
  fi
  eval "$(scripts/engines.sh start)"
fi
.venv/bin/python -m pytest "$@"
