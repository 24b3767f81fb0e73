"""The CLI in process, the README's commands, and every example's main()."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from sdk.cli.main import main

REPO = Path(__file__).resolve().parents[2]


def test_readme_has_the_two_commands_and_ci_calls_the_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    assert blocks[0].startswith("scripts/setup.sh && ") and "/sdk sync --sample " in blocks[0]
    assert "/sdk search " in blocks[0] and blocks[1] == "scripts/test.sh"
    assert "scripts/test.sh" in (REPO / ".ci" / "run").read_text()


def test_readme_main_job_syncs_the_sample_and_searches_offline(tmp_path: Path, minilm_path: Path) -> None:
    """The README's first command after setup, verbatim, in a fresh folder: sync, then search."""
    import os
    import subprocess

    readme = (REPO / "README.md").read_text()
    command = re.findall(r"```bash\n(.*?)\n```", readme, re.S)[0].removeprefix("scripts/setup.sh && ")
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    env = {**os.environ, "SDK_LEDGER_DIR": str(tmp_path / "ledgers"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "70 added" in proc.stdout and "faq -> faq_v1" in proc.stdout
    hits = re.findall(r"^ *\d+\. [-0-9.]+  (faq\d+)#0$", proc.stdout, re.M)
    assert len(hits) == 5 and "faq0074" in hits[:2]  # the FAQ answer about #! and chmod +x


def test_sdk_encode_bundled_sample(minilm_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["encode", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["texts"] == 8 and report["shape"] == [8, 384] and report["dtype"] == "float32"


def test_sdk_encode_file_to_npy(tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.txt"
    src.write_text("first text\n\nsecond text\nthird\n")
    out = tmp_path / "out.npy"
    code = main(["encode", str(src), "--model", str(tiny_bert_dir), "--precision", "int8",
                 "--truncate-dim", "16", "--output", str(out)])
    assert code == 0
    saved = np.load(out)
    assert saved.shape == (3, 16) and saved.dtype == np.int8
    assert "encoded 3 texts" in capsys.readouterr().out


def test_sdk_encode_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["encode", str(tmp_path / "missing.txt")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.txt" in err and "Traceback" not in err
    assert main(["encode", "--model", str(tmp_path / "no" / "model")]) == 1
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.py")), ids=lambda p: p.name)
def test_examples_run(path: Path, minilm_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    if path.name == "hybrid_rerank.py":  # offline: a tiny local reranker; a real engine when one runs
        from tests.encoder_fixtures import build_tiny_cross_encoder

        monkeypatch.setenv("SDK_RERANKER", str(build_tiny_cross_encoder(tmp_path / "reranker", num_labels=1)))
        if os.environ.get("SDK_TEST_POSTGRES_URL"):
            monkeypatch.setenv("SDK_STORE", os.environ["SDK_TEST_POSTGRES_URL"])
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main()
    if path.name == "encode_and_search.py":
        assert "Debian" in result[0]
    if path.name.startswith("distill_"):  # the student moved towards the teacher
        assert result["after"] < result["before"]
    if path.name == "rag_quickstart.py":
        assert "faq0074" in result[:2]  # the FAQ answer about #! and chmod +x
    if path.name == "hybrid_rerank.py":
        assert len(result) == 5
    if path.name == "sync_folder.py":
        assert result["second"].updated == 1 and result["second"].deleted == 1 and result["top"] == "debian.md#0"
    if path.name == "langchain_chain.py":
        assert "apt-get update" in result
    if path.name == "feedback_loop.py":
        assert result["labels"] > 10 and result["decisions"] and result["decisions"][0] in ("promoted", "refused")
