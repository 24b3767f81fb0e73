"""--backend on the CLI: `sdk encode` reports what ran; `sdk sync` records it and `sdk search` reuses it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sdk.cli.main import main
from sdk.encoders.dense import DenseEncoder

pytest.importorskip("onnxruntime")


@pytest.fixture()
def model(tiny_bert_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bert_dir, tmp_path / "model"))


def test_encode_runs_and_reports_the_backend(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDK_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "in.txt"
    texts = [f"text number {i} about packages" for i in range(9)]
    src.write_text("\n".join(texts), encoding="utf8")
    out = tmp_path / "v.npy"
    assert main(["encode", str(src), "--model", str(model), "--backend", "onnx", "--output", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["backend"] == "onnx:model.onnx"
    np.testing.assert_allclose(np.load(out), DenseEncoder(str(model), device="cpu").encode(texts), atol=1e-4)
    assert main(["encode", str(src), "--model", str(model), "--backend", "auto", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["backend"] == "torch" or report["backend"].split(":")[0] in ("onnx", "openvino")


def test_sync_records_the_backend_and_search_reuses_it(model: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDK_LEDGER_DIR", str(tmp_path / "ledgers"))
    url = f"qdrant+local:{tmp_path / 'q'}"
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"n{i}.txt").write_text(f"note {i}: how do I install package number {i}?", encoding="utf8")
    assert main(["sync", str(src), "--store", url, "--collection", "notes", "--dense-model", str(model),
                 "--no-sparse", "--backend", "onnx", "--json"]) == 0
    capsys.readouterr()
    assert main(["search", "install package 2", "--store", url, "--collection", "notes", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert len(hits) == 4
    # torch vectors differ from the ONNX ones in the fingerprint: the collection guard refuses them
    assert main(["search", "install package 2", "--store", url, "--collection", "notes", "--backend", "torch"]) == 1
    assert "built by another dense encoder" in capsys.readouterr().err
