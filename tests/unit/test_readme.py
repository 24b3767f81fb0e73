"""Every code block of the README runs: Python blocks in a fresh folder, shell blocks with the venv's
`sdk` on PATH, and the install block as a pip dry run (plus the models step it names)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BLOCKS = re.findall(r"```(python|bash)\n(.*?)\n```", (REPO / "README.md").read_text(), re.S)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
SHELL = [code for lang, code in BLOCKS if lang == "bash" and not code.startswith(("scripts/", "pip install"))]
INSTALL = [code for lang, code in BLOCKS if lang == "bash" and code.startswith("pip install")]


def _env(tmp_path: Path) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "SDK_LEDGER_DIR": str(tmp_path / "ledgers"), "PYTHONPATH": str(REPO)}


def test_the_readme_has_python_and_shell_blocks() -> None:
    assert len(PYTHON) >= 4 and SHELL and len(INSTALL) == 1


@pytest.mark.parametrize("index", range(len(PYTHON)), ids=lambda i: f"python-{i}")
def test_python_block_runs(index: int, tmp_path: Path, minilm_path: Path) -> None:
    env = _env(tmp_path)
    if "SDK_RERANKER" in PYTHON[index]:  # offline: a tiny local cross-encoder; a real engine when one runs
        from tests.encoder_fixtures import build_tiny_cross_encoder

        env["SDK_RERANKER"] = str(build_tiny_cross_encoder(tmp_path / "reranker", num_labels=1))
        if os.environ.get("SDK_TEST_POSTGRES_URL"):
            env["SDK_STORE"] = os.environ["SDK_TEST_POSTGRES_URL"]
    proc = subprocess.run([sys.executable, "-c", PYTHON[index]], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("index", range(len(SHELL)), ids=lambda i: f"shell-{i}")
def test_shell_block_runs(index: int, tmp_path: Path, minilm_path: Path) -> None:
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", SHELL[index]], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_install_block_resolves_without_warnings_and_names_the_models_step() -> None:
    command = INSTALL[0]
    extras = re.search(r'pip install "\.\[([a-z,]+)\]"', command)
    assert extras and "sdk models install" in command
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--quiet",
                           f".[{extras.group(1)}]"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "deprecat" not in (proc.stdout + proc.stderr).lower(), proc.stderr[-3000:]
