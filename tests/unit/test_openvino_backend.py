"""backend="openvino" on tiny random models: conversion, static int8, caching, file selection, parity with torch."""

from __future__ import annotations

import json
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sdk.cli.main import main
from sdk.core.errors import InputError, MissingDependencyError, ModelLoadError
from sdk.encoders.backends import transformers_in
from sdk.encoders.backends.graph import SIDECAR
from sdk.encoders.backends.onnx import ONNX_FILE
from sdk.encoders.backends.openvino import OV_FILE, OV_INT8_FILE, OvModel, calibration_texts
from sdk.encoders.cross_encoder import CrossEncoder
from sdk.encoders.dense import DenseEncoder
from sdk.encoders.fingerprint import encoder_manifest
from sdk.encoders.sparse import SparseEncoder
from tests.encoder_fixtures import BACKEND_TEXTS, build_tiny_cross_encoder, build_tiny_mlm

pytest.importorskip("openvino", reason="the openvino extra is part of .[all]")

ATOL = 1e-4
TEXTS = BACKEND_TEXTS
CALIBRATION = [f"{t} number {i}" for i, t in enumerate(TEXTS * 2)]


def _ov(encoder: torch.nn.Module) -> list[OvModel]:
    return [t.auto_model for t in transformers_in(list(encoder)) if isinstance(t.auto_model, OvModel)]


@pytest.fixture()
def bert_dir(tiny_bert_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bert_dir, tmp_path / "model"))


def test_dense_fp32_matches_torch_and_is_cached(bert_dir: Path) -> None:
    ref = DenseEncoder(bert_dir, device="cpu").encode(TEXTS, batch_size=4)
    enc = DenseEncoder(bert_dir, device="cpu", backend="openvino")
    (model,) = _ov(enc)
    assert model.path == bert_dir / "openvino" / OV_FILE and model.path.with_suffix(".bin").is_file()
    assert json.loads((bert_dir / "openvino" / SIDECAR).read_text())[OV_FILE]["source"] == ONNX_FILE
    out = enc.encode(TEXTS, batch_size=4)
    assert out.shape == ref.shape and np.abs(out - ref).max() <= ATOL
    assert np.abs(enc.encode(TEXTS[2]) - ref[2]).max() <= ATOL  # one text, no padding
    stamp = model.path.stat().st_mtime_ns
    again = DenseEncoder(bert_dir, device="cpu", backend="openvino")
    assert _ov(again)[0].path.stat().st_mtime_ns == stamp  # reused, not converted again
    assert encoder_manifest(enc)["backend"] == {"name": "openvino", "files": {"0.auto_model": OV_FILE}}


def test_static_int8_is_calibrated_recorded_and_selectable(bert_dir: Path, tmp_path: Path) -> None:
    fp32 = DenseEncoder(bert_dir, device="cpu", backend="openvino").encode(TEXTS, normalize_embeddings=True)
    int8 = DenseEncoder(bert_dir, device="cpu", backend="openvino",
                        model_kwargs={"quantize": "int8", "calibration": CALIBRATION})
    target = bert_dir / "openvino" / OV_INT8_FILE
    assert _ov(int8)[0].path == target
    info = json.loads((bert_dir / "openvino" / SIDECAR).read_text())[OV_INT8_FILE]
    assert info["calibration_texts"] == len(CALIBRATION) and "static int8" in info["quantization"]
    out = int8.encode(TEXTS, normalize_embeddings=True)
    assert float((out * fp32).sum(1).mean()) > 0.95
    xml = (target).read_text()
    assert "FakeQuantize" in xml or "FakeConvert" in xml or "i8" in xml  # really quantized
    stamp = target.stat().st_mtime_ns
    picked = DenseEncoder(bert_dir, device="cpu", backend="openvino", model_kwargs={"file_name": f"openvino/{OV_INT8_FILE}"})
    assert _ov(picked)[0].path == target and target.stat().st_mtime_ns == stamp
    same = DenseEncoder(bert_dir, device="cpu", backend="openvino", model_kwargs={"quantize": "int8"})
    assert target.stat().st_mtime_ns == stamp  # no calibration named: the existing int8 file is used
    assert np.array_equal(same.encode(TEXTS), int8.encode(TEXTS))
    file = tmp_path / "calib.jsonl"
    file.write_text("\n".join(json.dumps({"_id": str(i), "text": t}) for i, t in enumerate(TEXTS)), encoding="utf8")
    DenseEncoder(bert_dir, device="cpu", backend="openvino", model_kwargs={"quantize": "int8", "calibration": str(file)})
    assert target.stat().st_mtime_ns != stamp  # another calibration set: quantized again
    assert json.loads((bert_dir / "openvino" / SIDECAR).read_text())[OV_INT8_FILE]["calibration_texts"] == len(TEXTS)


def test_calibration_input_errors(tmp_path: Path) -> None:
    assert len(calibration_texts(None)) > 50  # the bundled sample texts
    with pytest.raises(InputError, match="does not exist"):
        calibration_texts(tmp_path / "nope.txt")
    with pytest.raises(InputError, match="must be strings"):
        calibration_texts(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(InputError, match="no non-empty text"):
        calibration_texts(["", "  "])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\nnot json\n', encoding="utf8")
    with pytest.raises(InputError, match="bad.jsonl:2 is not JSON"):
        calibration_texts(bad)
    lines = tmp_path / "texts.txt"
    lines.write_text("one\n\ntwo\n", encoding="utf8")
    assert calibration_texts(lines) == ["one", "two"]


def test_stale_conversion_is_redone_after_the_weights_change(bert_dir: Path) -> None:
    path = _ov(DenseEncoder(bert_dir, device="cpu", backend="openvino"))[0].path
    tuned = DenseEncoder(bert_dir, device="cpu")
    with torch.no_grad():
        tuned.transformer.auto_model.embeddings.word_embeddings.weight.mul_(1.5)
    expected = tuned.encode(TEXTS)
    tuned.save(bert_dir)  # fine-tuned weights saved over the old ones; openvino/ and onnx/ stay behind
    reloaded = DenseEncoder(bert_dir, device="cpu", backend="openvino")
    assert _ov(reloaded)[0].path == path
    assert np.abs(reloaded.encode(TEXTS) - expected).max() <= ATOL


def test_save_and_reload_and_pickle(bert_dir: Path, tmp_path: Path) -> None:
    enc = DenseEncoder(bert_dir, device="cpu", backend="openvino", model_kwargs={"export_dir": str(tmp_path / "ex")})
    assert _ov(enc)[0].path == tmp_path / "ex" / OV_FILE and not (bert_dir / "openvino").exists()
    out = tmp_path / "saved"
    enc.save(out)
    assert (out / "model.safetensors").is_file() and (out / "openvino" / OV_FILE).is_file()
    assert (out / "openvino" / "openvino_model.bin").is_file()
    back = DenseEncoder(out, device="cpu", backend="openvino")
    assert _ov(back)[0].path == out / "openvino" / OV_FILE
    assert np.allclose(back.encode(TEXTS), enc.encode(TEXTS), atol=1e-6)
    clone = pickle.loads(pickle.dumps(enc))
    assert _ov(clone)[0]._session is None
    assert np.abs(clone.encode(TEXTS) - enc.encode(TEXTS)).max() == 0


def test_multi_process_pool_runs_openvino(bert_dir: Path) -> None:
    enc = DenseEncoder(bert_dir, device="cpu", backend="openvino")
    pool = enc.start_multi_process_pool(["cpu", "cpu"])
    try:
        out = enc.encode(TEXTS, pool=pool, batch_size=4)
    finally:
        enc.stop_multi_process_pool(pool)
    assert np.abs(out - enc.encode(TEXTS, batch_size=4)).max() <= 1e-6


def test_backend_option_errors(bert_dir: Path) -> None:
    with pytest.raises(InputError, match="do not apply to backend='openvino'"):
        DenseEncoder(bert_dir, device="cpu", backend="openvino", model_kwargs={"provider": "CPUExecutionProvider"})
    with pytest.raises(InputError, match="do not apply to backend='onnx'"):
        DenseEncoder(bert_dir, device="cpu", backend="onnx", model_kwargs={"calibration": ["x"]})
    with pytest.raises(InputError, match="ov_config must be a dict"):
        DenseEncoder(bert_dir, device="cpu", backend="openvino", model_kwargs={"ov_config": "fast"})
    with pytest.raises(InputError, match="quantize"):
        DenseEncoder(bert_dir, device="cpu", backend="openvino", model_kwargs={"quantize": "int4"})
    with pytest.raises(ModelLoadError, match="not found"):
        DenseEncoder(bert_dir, device="cpu", backend="openvino", model_kwargs={"file_name": "openvino/other.xml"})
    assert not (bert_dir / "openvino").exists()  # nothing half-written by refused options


def test_missing_openvino_names_the_extra(bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(MissingDependencyError, match=r"retrieval-forge\[openvino\]"):
        DenseEncoder(bert_dir, device="cpu", backend="openvino")
    assert not (bert_dir / "onnx").exists()  # refused before exporting anything


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_mlm(tmp_path_factory.mktemp("ov-mlm"))


def test_sparse_and_cross_encoder_match_torch(mlm_dir: Path, tmp_path: Path) -> None:
    ref = SparseEncoder(mlm_dir, device="cpu").encode(TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False)
    out = SparseEncoder(mlm_dir, device="cpu", backend="openvino").encode(
        TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False)
    assert (out - ref).abs().max().item() <= ATOL
    folder = build_tiny_cross_encoder(tmp_path / "ce", num_labels=1)
    pairs = [(TEXTS[i], TEXTS[-1 - i]) for i in range(len(TEXTS))]
    scores = CrossEncoder(folder, device="cpu").predict(pairs, batch_size=4)
    assert np.abs(CrossEncoder(folder, device="cpu", backend="openvino").predict(pairs, batch_size=4) - scores).max() <= ATOL


def test_onnx_only_folder_converts_from_the_shipped_graph(bert_dir: Path) -> None:
    ref = DenseEncoder(bert_dir, device="cpu").encode(TEXTS, batch_size=4)
    DenseEncoder(bert_dir, device="cpu", backend="onnx")
    for weights in bert_dir.glob("*.safetensors"):
        weights.unlink()
    (bert_dir / "onnx" / SIDECAR).unlink()
    enc = DenseEncoder(bert_dir, device="cpu", backend="openvino")
    assert np.abs(enc.encode(TEXTS, batch_size=4) - ref).max() <= ATOL
    with pytest.raises(ModelLoadError, match="cannot be re-exported"):
        DenseEncoder(bert_dir, device="cpu", backend="openvino", model_kwargs={"export": True})
    assert encoder_manifest(enc)["backend"]["name"] == "openvino"
    assert enc.fingerprint() != DenseEncoder(bert_dir, device="cpu", backend="onnx").fingerprint()


def test_cli_export_openvino_with_static_int8(bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    calib = tmp_path / "calib.txt"
    calib.write_text("\n".join(CALIBRATION), encoding="utf8")
    assert main(["export", "openvino", str(bert_dir), "--quantize", "int8", "--calibration", str(calib), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)  # NNCF's progress stays off stdout
    assert report["kind"] == "dense" and report["format"] == "openvino"
    assert report["files"] == [str(bert_dir / "openvino" / OV_FILE), str(bert_dir / "openvino" / OV_INT8_FILE)]
    with pytest.raises(SystemExit) as usage:  # static int8 is OpenVINO's
        main(["export", "onnx", str(bert_dir), "--calibration", str(calib)])
    assert usage.value.code == 2
    assert main(["export", "openvino", str(bert_dir), "--calibration", str(calib)]) == 1
    assert "add --quantize int8" in capsys.readouterr().err
