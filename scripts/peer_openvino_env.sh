#!/usr/bin/env bash
# A separate environment for the peer's OpenVINO path (bench/encode.py's sentence-transformers
# backend="openvino" lines): optimum-intel pins an older transformers/tokenizers than ours, so it
# must not share .venv. Usage: bash scripts/peer_openvino_env.sh [VENV] (default .venv-peer-openvino).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-peer-openvino}"
PY="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
# torch as pinned for the project (constraints.txt), the peer and its OpenVINO extra at the versions measured.
"$VENV/bin/pip" install -q "$(grep '^torch==' constraints.txt)" "sentence-transformers==6.2.0" \
    "optimum-intel[openvino]==2.2.0" "$(grep '^openvino==' constraints.txt)" "$(grep '^nncf==' constraints.txt)" \
    "datasets>=2.19"
"$VENV/bin/python" -c "import sentence_transformers, optimum.intel, openvino; print('peer OpenVINO env ready:', sentence_transformers.__version__, openvino.__version__)"
