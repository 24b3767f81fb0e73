"""backend="onnx" on tiny random models: export, cache, file selection, parity with torch."""

from __future__ import annotations

import os
import pickle
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sdk.cli.main import main
from sdk.core.errors import CapabilityError, InputError, MissingDependencyError, ModelLoadError
from sdk.encoders.backends import transformers_in
from sdk.encoders.backends.onnx import ONNX_FILE, SIDECAR, OrtModel, quantized_name
from sdk.encoders.cross_encoder import CrossEncoder
from sdk.encoders.dense import DenseEncoder
from sdk.encoders.modules import Router, SparseStaticEmbedding, SpladePooling
from sdk.encoders.sparse import SparseEncoder
from tests.encoder_fixtures import BACKEND_TEXTS, build_tiny_cross_encoder, build_tiny_mlm, tiny_tokenizer

ATOL = 1e-4
TEXTS = BACKEND_TEXTS


def _copy(src: Path, tmp_path: Path, name: str = "model") -> Path:
    return Path(shutil.copytree(src, tmp_path / name))


def _ort(encoder: torch.nn.Module) -> list[OrtModel]:
    return [t.auto_model for t in transformers_in(list(encoder)) if isinstance(t.auto_model, OrtModel)]


@pytest.fixture()
def bert_dir(tiny_bert_dir: Path, tmp_path: Path) -> Path:
    return _copy(tiny_bert_dir, tmp_path)


def test_dense_fp32_matches_torch_and_is_cached(bert_dir: Path) -> None:
    ref = DenseEncoder(bert_dir, device="cpu").encode(TEXTS, batch_size=4)
    onnx = DenseEncoder(bert_dir, device="cpu", backend="onnx")
    (model,) = _ort(onnx)
    assert model.path == bert_dir / "onnx" / ONNX_FILE and (bert_dir / "onnx" / SIDECAR).is_file()
    out = onnx.encode(TEXTS, batch_size=4)
    assert out.shape == ref.shape and np.abs(out - ref).max() <= ATOL
    assert np.abs(onnx.encode(TEXTS[2]) - ref[2]).max() <= ATOL  # single text, no padding at all
    stamp = model.path.stat().st_mtime_ns
    again = DenseEncoder(bert_dir, device="cpu", backend="onnx")
    assert _ort(again)[0].path.stat().st_mtime_ns == stamp  # reused, not re-exported
    assert not next(iter(transformers_in(list(again)))).auto_model.__dict__["torch_model"].training


def test_mpnet_with_dense_projection_matches_torch(tiny_mpnet_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_mpnet_dir, tmp_path)
    ref = DenseEncoder(folder, device="cpu").encode(TEXTS, batch_size=5)
    out = DenseEncoder(folder, device="cpu", backend="onnx").encode(TEXTS, batch_size=5)
    assert out.shape == (len(TEXTS), 24) and np.abs(out - ref).max() <= ATOL


def test_int8_file_is_created_and_selectable_by_file_name(bert_dir: Path) -> None:
    fp32 = DenseEncoder(bert_dir, device="cpu", backend="onnx").encode(TEXTS, normalize_embeddings=True)
    int8 = DenseEncoder(bert_dir, device="cpu", backend="onnx", model_kwargs={"quantize": "int8"})
    name = quantized_name()
    assert _ort(int8)[0].path == bert_dir / "onnx" / name
    assert (bert_dir / "onnx" / name).stat().st_size < (bert_dir / "onnx" / ONNX_FILE).stat().st_size
    out = int8.encode(TEXTS, normalize_embeddings=True)
    assert float((out * fp32).sum(1).mean()) > 0.95
    picked = DenseEncoder(bert_dir, device="cpu", backend="onnx", model_kwargs={"file_name": f"onnx/{name}"})
    assert _ort(picked)[0].path == bert_dir / "onnx" / name
    assert np.allclose(picked.encode(TEXTS, normalize_embeddings=True), out, atol=1e-6)
    with pytest.raises(ModelLoadError, match="not found"):
        DenseEncoder(bert_dir, device="cpu", backend="onnx", model_kwargs={"file_name": "onnx/other.onnx"})


def test_stale_export_is_redone_after_the_weights_change(bert_dir: Path) -> None:
    first = DenseEncoder(bert_dir, device="cpu", backend="onnx")
    path = _ort(first)[0].path
    tuned = DenseEncoder(bert_dir, device="cpu")
    with torch.no_grad():
        tuned.transformer.auto_model.embeddings.word_embeddings.weight.mul_(1.5)
    expected = tuned.encode(TEXTS)
    tuned.save(bert_dir)  # "fine-tuned" weights saved over the old ones; onnx/ stays behind
    reloaded = DenseEncoder(bert_dir, device="cpu", backend="onnx")
    assert _ort(reloaded)[0].path == path
    assert np.abs(reloaded.encode(TEXTS) - expected).max() <= ATOL


def test_a_file_an_older_export_made_is_made_again(bert_dir: Path) -> None:
    """Files our sidecar records without the current EXPORTER came from an older export: redone (int8 too)."""
    import json

    from sdk.encoders.backends.graph import EXPORTER

    DenseEncoder(bert_dir, device="cpu", backend="onnx", model_kwargs={"quantize": "int8"})
    sidecar = bert_dir / "onnx" / SIDECAR
    data = json.loads(sidecar.read_text())
    assert {data[n]["exporter"] for n in (ONNX_FILE, quantized_name())} == {EXPORTER}
    for info in data.values():
        info.pop("exporter")  # as the export before eager attention wrote it
    sidecar.write_text(json.dumps(data))
    stamps = {n: (bert_dir / "onnx" / n).stat().st_mtime_ns for n in (ONNX_FILE, quantized_name())}
    enc = DenseEncoder(bert_dir, device="cpu", backend="onnx", model_kwargs={"quantize": "int8"})
    assert all((bert_dir / "onnx" / n).stat().st_mtime_ns != t for n, t in stamps.items())
    assert json.loads(sidecar.read_text())[quantized_name()]["exporter"] == EXPORTER
    torch_model = _ort(enc)[0].__dict__["torch_model"]
    assert torch_model.config._attn_implementation != "eager" or not hasattr(torch_model, "set_attn_implementation")
    again = {n: (bert_dir / "onnx" / n).stat().st_mtime_ns for n in stamps}
    DenseEncoder(bert_dir, device="cpu", backend="onnx", model_kwargs={"quantize": "int8"})
    assert {n: (bert_dir / "onnx" / n).stat().st_mtime_ns for n in stamps} == again  # now current: reused


def test_export_dir_and_read_only_model_folder(bert_dir: Path, tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "exports"
    enc = DenseEncoder(bert_dir, device="cpu", backend="onnx", model_kwargs={"export_dir": str(target)})
    assert _ort(enc)[0].path == target / ONNX_FILE and not (bert_dir / "onnx").exists()
    monkeypatch.setenv("SDK_CACHE_DIR", str(tmp_path / "cache"))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).startswith(str(bert_dir)) else real_access(p, mode))
    cached = DenseEncoder(bert_dir, device="cpu", backend="onnx")
    assert str(_ort(cached)[0].path).startswith(str(tmp_path / "cache" / "onnx"))


def test_save_writes_torch_weights_and_the_onnx_file(bert_dir: Path, tmp_path: Path) -> None:
    enc = DenseEncoder(bert_dir, device="cpu", backend="onnx", model_kwargs={"quantize": "int8"})
    out = tmp_path / "saved"
    enc.save(out)
    assert (out / "model.safetensors").is_file() and (out / "onnx" / quantized_name()).is_file()
    back = DenseEncoder(out, device="cpu", backend="onnx", model_kwargs={"file_name": quantized_name()})
    assert np.allclose(back.encode(TEXTS), enc.encode(TEXTS), atol=1e-6)


def test_ort_model_pickles_without_its_session(bert_dir: Path) -> None:
    enc = DenseEncoder(bert_dir, device="cpu", backend="onnx")
    clone = pickle.loads(pickle.dumps(enc))
    assert _ort(clone)[0]._session is None
    assert np.abs(clone.encode(TEXTS) - enc.encode(TEXTS)).max() == 0


def test_backend_option_errors(bert_dir: Path) -> None:
    with pytest.raises(CapabilityError, match="openvino"):
        DenseEncoder(bert_dir, device="cpu", backend="tensorrt")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="backend='onnx' or 'openvino' only"):
        DenseEncoder(bert_dir, device="cpu", model_kwargs={"file_name": ONNX_FILE})
    with pytest.raises(CapabilityError, match="float16"):
        DenseEncoder(bert_dir, device="cpu", backend="onnx", model_kwargs={"torch_dtype": "float16"})
    with pytest.raises(InputError, match="quantize"):
        DenseEncoder(bert_dir, device="cpu", backend="onnx", model_kwargs={"quantize": "int4"})


def test_missing_onnxruntime_names_the_extra(bert_dir: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match=r"retrieval-forge\[onnx\]"):
        DenseEncoder(bert_dir, device="cpu", backend="onnx")


def test_bfloat16_torch_dtype_runs_the_whole_stack(tiny_mpnet_dir: Path) -> None:
    ref = DenseEncoder(tiny_mpnet_dir, device="cpu").encode(TEXTS)
    half = DenseEncoder(tiny_mpnet_dir, device="cpu", model_kwargs={"torch_dtype": "bfloat16"})
    assert half.transformer.auto_model.dtype == torch.bfloat16
    out = half.encode(TEXTS)
    assert out.dtype == np.float32 and float((out * ref).sum(1).min()) > 0.98


# -- sparse and cross-encoder ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_mlm(tmp_path_factory.mktemp("onnx-mlm"))


def test_sparse_fp32_matches_torch(mlm_dir: Path) -> None:
    ref = SparseEncoder(mlm_dir, device="cpu").encode(TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False)
    enc = SparseEncoder(mlm_dir, device="cpu", backend="onnx")
    out = enc.encode(TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False)
    assert (out - ref).abs().max().item() <= ATOL
    assert torch.equal(out > 1e-3, ref > 1e-3)
    int8 = SparseEncoder(mlm_dir, device="cpu", backend="onnx", model_kwargs={"quantize": "int8"})
    q = int8.encode(TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False)
    assert torch.nn.functional.cosine_similarity(q, ref).mean().item() > 0.95


def test_inference_free_router_exports_only_the_document_transformer(mlm_dir: Path) -> None:
    torch_enc = SparseEncoder(mlm_dir, device="cpu")
    mlm = torch_enc[0]
    router = Router.for_query_document([SparseStaticEmbedding(tiny_tokenizer())], [mlm, SpladePooling("max")])
    enc = SparseEncoder(modules=[router], device="cpu", backend="onnx")
    assert len(_ort(enc)) == 1
    ref = torch_enc.encode(TEXTS[:6], convert_to_tensor=True, convert_to_sparse_tensor=False)
    docs = enc.encode_document(TEXTS[:6], convert_to_tensor=True, convert_to_sparse_tensor=False)
    assert (docs - ref).abs().max().item() <= ATOL
    assert enc.encode_query("python package", convert_to_tensor=True).shape[-1] == ref.shape[-1]


@pytest.mark.parametrize("labels", [1, 3])
def test_cross_encoder_matches_torch(tmp_path: Path, labels: int) -> None:
    folder = build_tiny_cross_encoder(tmp_path / "ce", num_labels=labels)
    pairs = [(TEXTS[i], TEXTS[-1 - i]) for i in range(len(TEXTS))]
    ref = CrossEncoder(folder, device="cpu").predict(pairs, batch_size=4)
    enc = CrossEncoder(folder, device="cpu", backend="onnx")
    assert enc.num_labels == labels
    assert np.abs(enc.predict(pairs, batch_size=4) - ref).max() <= ATOL
    if labels == 1:
        assert [h["corpus_id"] for h in enc.rank(TEXTS[0], TEXTS[:6])] == [
            h["corpus_id"] for h in CrossEncoder(folder, device="cpu").rank(TEXTS[0], TEXTS[:6])]


# -- CLI -------------------------------------------------------------------------------------------


def test_cli_export_onnx_with_int8(bert_dir: Path, capsys) -> None:
    assert main(["export", "onnx", str(bert_dir), "--quantize", "int8", "--json"]) == 0
    report = __import__("json").loads(capsys.readouterr().out)
    assert report["kind"] == "dense"
    assert report["files"] == [str(bert_dir / "onnx" / ONNX_FILE), str(bert_dir / "onnx" / quantized_name())]


def test_cli_export_detects_sparse_and_cross(mlm_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["export", "onnx", str(mlm_dir), "--output", str(tmp_path / "sp")]) == 0
    assert "sparse model" in capsys.readouterr().out and (tmp_path / "sp" / ONNX_FILE).is_file()
    ce = build_tiny_cross_encoder(tmp_path / "ce", num_labels=1)
    assert main(["export", "onnx", str(ce), "--json"]) == 0
    assert '"kind": "cross"' in capsys.readouterr().out
    assert main(["export", "onnx", str(tmp_path / "nope")]) == 1


# -- folders that ship ONNX graphs and no torch weights ---------------------------------------------


def _onnx_only(folder: Path, exported_by: Any) -> Path:
    """Export ``folder``'s graph, then delete its torch weights: what an ONNX-only hub repo looks like."""
    exported_by(folder, device="cpu", backend="onnx")
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    (folder / "onnx" / SIDECAR).unlink()
    return folder


def test_onnx_only_dense_folder_runs_quantizes_and_saves(bert_dir: Path, tmp_path: Path) -> None:
    ref = DenseEncoder(bert_dir, device="cpu").encode(TEXTS, batch_size=4)
    folder = _onnx_only(bert_dir, DenseEncoder)
    enc = DenseEncoder(folder, device="cpu", backend="onnx")
    assert np.abs(enc.encode(TEXTS, batch_size=4) - ref).max() <= ATOL
    with pytest.raises(ModelLoadError, match="backend='onnx'"):
        DenseEncoder(folder, device="cpu")
    with pytest.raises(ModelLoadError, match="cannot be re-exported"):
        DenseEncoder(folder, device="cpu", backend="onnx", model_kwargs={"export": True})
    int8 = DenseEncoder(folder, device="cpu", backend="onnx", model_kwargs={"quantize": "int8"})
    assert _ort(int8)[0].path == folder / "onnx" / quantized_name()  # quantized from the shipped fp32 graph
    assert float((int8.encode(TEXTS) * ref).sum(1).mean()) > 0.95
    int8.save(tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved" / "onnx").glob("*.onnx")) == sorted([ONNX_FILE, quantized_name()])
    assert not list((tmp_path / "saved").glob("*.safetensors"))
    again = DenseEncoder(tmp_path / "saved", device="cpu", backend="onnx")
    assert np.abs(again.encode(TEXTS, batch_size=4) - ref).max() <= ATOL


def test_onnx_only_folder_without_model_onnx_names_the_files_it_has(bert_dir: Path) -> None:
    folder = _onnx_only(bert_dir, DenseEncoder)
    os.replace(folder / "onnx" / ONNX_FILE, folder / "onnx" / "model_O3.onnx")
    with pytest.raises(ModelLoadError, match="model_O3.onnx.*file_name"):
        DenseEncoder(folder, device="cpu", backend="onnx")
    enc = DenseEncoder(folder, device="cpu", backend="onnx", model_kwargs={"file_name": "onnx/model_O3.onnx"})
    assert enc.encode(TEXTS[:2]).shape == (2, enc.get_sentence_embedding_dimension())


def test_onnx_only_graph_with_hub_output_names(bert_dir: Path) -> None:
    """Graphs exported by optimum (the hub's onnx/ folders) name the output last_hidden_state."""
    import onnx

    ref = DenseEncoder(bert_dir, device="cpu").encode(TEXTS, batch_size=4)
    folder = _onnx_only(bert_dir, DenseEncoder)
    graph = onnx.load(str(folder / "onnx" / ONNX_FILE))
    for node in graph.graph.node:
        node.output[:] = ["last_hidden_state" if o == "output" else o for o in node.output]
    graph.graph.output[0].name = "last_hidden_state"
    onnx.save(graph, str(folder / "onnx" / ONNX_FILE))
    enc = DenseEncoder(folder, device="cpu", backend="onnx")
    assert _ort(enc)[0].session.get_outputs()[0].name == "last_hidden_state"
    assert np.abs(enc.encode(TEXTS, batch_size=4) - ref).max() <= ATOL


def test_onnx_only_sparse_and_cross_encoder_folders(mlm_dir: Path, tmp_path: Path) -> None:
    sparse = _copy(mlm_dir, tmp_path, "sparse")
    ref = SparseEncoder(sparse, device="cpu").encode(TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False)
    _onnx_only(sparse, SparseEncoder)
    out = SparseEncoder(sparse, device="cpu", backend="onnx").encode(
        TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False)
    assert (out - ref).abs().max().item() <= ATOL
    cross = build_tiny_cross_encoder(tmp_path / "ce", num_labels=1)
    pairs = [(TEXTS[i], TEXTS[-1 - i]) for i in range(len(TEXTS))]
    scores = CrossEncoder(cross, device="cpu").predict(pairs)
    _onnx_only(cross, CrossEncoder)
    assert np.abs(CrossEncoder(cross, device="cpu", backend="onnx").predict(pairs) - scores).max() <= ATOL
    with pytest.raises(ModelLoadError, match="no torch weights"):
        CrossEncoder(cross, device="cpu")
