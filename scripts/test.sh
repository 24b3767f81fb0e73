#!/usr/bin/env bash
# The whole test suite: install (idempotent), start the real database engines, run pytest.
# Extra arguments go to pytest. Exit status is pytest's; "no tests collected" (5) fails too.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [ -x scripts/engines.sh ] && [ -z "${SDK_SKIP_ENGINES:-}" ]; then
  eval "$(scripts/engines.sh start)"
fi
.venv/bin/python -m pytest "$@"
