"""encoder_fingerprint: equal for the same model, different for anything that changes the vectors."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from sdk.core.errors import InputError
from sdk.encoders import fingerprint as fp_module
from sdk.encoders.cross_encoder import CrossEncoder
from sdk.encoders.dense import DenseEncoder
from sdk.encoders.fingerprint import encoder_fingerprint, encoder_manifest, tokenizer_digest, weights_digest
from sdk.encoders.sparse import SparseEncoder
from sdk.quantization import Calibration
from tests.conftest import build_tiny_bert
from tests.encoder_fixtures import build_tiny_cross_encoder, build_tiny_mlm

FORMAT = re.compile(r"^sha256:[0-9a-f]{32}$")
PROMPTS = {"query": "query: ", "document": "passage: "}  # those of the tiny_bert_dir fixture


@pytest.fixture()
def bert(tiny_bert_dir: Path) -> DenseEncoder:
    """A fresh DenseEncoder per test: the tests change its settings and weights."""
    return DenseEncoder(tiny_bert_dir, device="cpu")


def test_same_folder_loaded_twice_gives_the_same_fingerprint(tiny_bert_dir: Path, tmp_path: Path) -> None:
    first = encoder_fingerprint(DenseEncoder(tiny_bert_dir, device="cpu"))
    assert FORMAT.match(first)
    assert encoder_fingerprint(DenseEncoder(tiny_bert_dir, device="cpu")) == first
    copy = shutil.copytree(tiny_bert_dir, tmp_path / "copy")  # another path, same model
    assert encoder_fingerprint(DenseEncoder(copy, device="cpu")) == first


def test_a_different_model_differs(bert: DenseEncoder, tiny_mpnet_dir: Path, tmp_path: Path) -> None:
    assert encoder_fingerprint(DenseEncoder(tiny_mpnet_dir, device="cpu")) != encoder_fingerprint(bert)
    # same architecture and config, other random weights
    other = tmp_path / "other"
    shutil.copytree(bert.model_path, other)
    torch.manual_seed(123)
    enc = DenseEncoder(other, device="cpu")
    with torch.no_grad():
        for param in enc.parameters():
            param.copy_(torch.randn_like(param))
    assert encoder_fingerprint(enc) != encoder_fingerprint(bert)


def test_prompts_similarity_truncation_and_calibration_count(bert: DenseEncoder, tiny_bert_dir: Path) -> None:
    base = encoder_fingerprint(bert)
    load = lambda **kw: DenseEncoder(tiny_bert_dir, device="cpu", **kw)  # noqa: E731
    assert encoder_fingerprint(load(prompts={"document": "doc: "})) != base
    assert encoder_fingerprint(load(default_prompt_name="query")) != base
    assert encoder_fingerprint(load(similarity_fn_name="dot")) != base
    assert encoder_fingerprint(load(prompts=PROMPTS)) == base  # the saved prompts restated: nothing changed
    bert.truncate_dim = 16
    assert encoder_fingerprint(bert) != base
    bert.truncate_dim = None
    assert encoder_fingerprint(bert) == base
    bert.max_seq_length = 32
    assert encoder_fingerprint(bert) != base
    bert.max_seq_length = 64
    assert encoder_fingerprint(bert) == base
    bert.calibration = Calibration(np.array([[-1.0] * 32, [1.0] * 32]))
    calibrated = encoder_fingerprint(bert)
    assert calibrated != base
    bert.calibration = Calibration(np.array([[-1.0] * 32, [2.0] * 32]))
    assert encoder_fingerprint(bert) not in (base, calibrated)


def test_removing_normalize_differs(bert: DenseEncoder, tmp_path: Path) -> None:
    unnormalized = build_tiny_bert(tmp_path / "plain", normalize=False, prompts=PROMPTS)  # same seed, same weights
    plain = DenseEncoder(unnormalized, device="cpu")
    assert weights_digest(plain) == weights_digest(bert)
    assert encoder_fingerprint(plain) != encoder_fingerprint(bert)
    pooled_max = build_tiny_bert(tmp_path / "max", pooling="max", prompts=PROMPTS)
    assert encoder_fingerprint(DenseEncoder(pooled_max, device="cpu")) != encoder_fingerprint(bert)


def test_a_weight_nudged_by_1e_6_differs_and_the_cache_notices(bert: DenseEncoder) -> None:
    base = encoder_fingerprint(bert)
    param = dict(bert.named_parameters())["0.auto_model.encoder.layer.1.output.dense.weight"]
    original = param.detach().clone()
    with torch.no_grad():
        param[3, 5] += 1e-6
    assert not torch.equal(param, original)
    nudged = encoder_fingerprint(bert)
    assert nudged != base
    with torch.no_grad():
        param.copy_(original)
    assert encoder_fingerprint(bert) == base
    embeddings = bert[0].auto_model.embeddings.word_embeddings.weight
    embeddings.data = torch.zeros_like(embeddings)  # replaced, not changed in place
    assert encoder_fingerprint(bert) not in (base, nudged)


def test_the_weight_hash_is_cached_until_a_tensor_changes(bert: DenseEncoder) -> None:
    with mock.patch.object(fp_module, "_hash_tensor", wraps=fp_module._hash_tensor) as hashed:
        first = encoder_fingerprint(bert)
        calls = hashed.call_count
        assert calls == len(list(bert.parameters())) + len(list(bert.buffers()))
        assert encoder_fingerprint(bert, precision="float32") != first
        assert encoder_fingerprint(bert) == first
        assert hashed.call_count == calls  # served from the cache
        with torch.no_grad():
            next(bert.parameters()).mul_(1.0)  # same values, but written: hashed again
        assert encoder_fingerprint(bert) == first
        assert hashed.call_count == 2 * calls


def test_caller_settings_are_part_of_the_fingerprint(bert: DenseEncoder) -> None:
    base = encoder_fingerprint(bert)
    assert encoder_fingerprint(bert, precision="float32") == encoder_fingerprint(bert, precision="float32")
    assert encoder_fingerprint(bert, precision="float32") not in (base, encoder_fingerprint(bert, precision="int8"))
    assert encoder_manifest(bert, fields=("a", 1), path=Path("/x"))["settings"] == {"fields": ["a", 1], "path": "/x"}
    with pytest.raises(InputError, match="settings.callback is a function.*no stable JSON form"):
        encoder_fingerprint(bert, callback=lambda x: x)
    with pytest.raises(InputError, match="DenseEncoder, SparseEncoder or CrossEncoder"):
        encoder_fingerprint("all-MiniLM-L6-v2")  # type: ignore[arg-type]


def test_the_manifest_says_what_changed(bert: DenseEncoder, tiny_bert_dir: Path) -> None:
    before = encoder_manifest(bert)
    after = encoder_manifest(DenseEncoder(tiny_bert_dir, device="cpu", prompts={"document": "doc: "}))
    assert [k for k in before if before[k] != after[k]] == ["config"]
    assert [m["type"] for m in before["modules"]] == ["Transformer", "Pooling", "Normalize"]
    assert before["modules"][1]["config"]["pooling_mode_mean_tokens"] is True
    assert "_name_or_path" not in before["modules"][0]["model_config"]
    assert before["backend"] == {"name": "torch"}


def test_tokenizer_digest_ignores_call_state(bert: DenseEncoder, tiny_mpnet_dir: Path) -> None:
    digest = tokenizer_digest(bert.tokenizer)
    bert.tokenizer(["a b c"] * 2, truncation=True, max_length=3, padding="max_length")
    assert tokenizer_digest(bert.tokenizer) == digest
    assert tokenizer_digest(DenseEncoder(tiny_mpnet_dir, device="cpu").tokenizer) != digest


def test_sparse_and_cross_encoders(tmp_path: Path) -> None:
    mlm = build_tiny_mlm(tmp_path / "mlm")
    splade = SparseEncoder(mlm, device="cpu")
    base = encoder_fingerprint(splade)
    assert FORMAT.match(base) and encoder_fingerprint(SparseEncoder(mlm, device="cpu")) == base
    assert encoder_fingerprint(SparseEncoder(mlm, device="cpu", max_active_dims=5)) != base
    assert encoder_fingerprint(SparseEncoder(build_tiny_mlm(tmp_path / "mlm2", seed=1), device="cpu")) != base

    cross_dir = build_tiny_cross_encoder(tmp_path / "cross", num_labels=1)
    cross = CrossEncoder(cross_dir, device="cpu")
    scored = encoder_fingerprint(cross)
    assert encoder_fingerprint(CrossEncoder(cross_dir, device="cpu")) == scored
    assert encoder_fingerprint(CrossEncoder(cross_dir, device="cpu", activation_fn=torch.nn.Identity())) != scored
    assert encoder_fingerprint(CrossEncoder(cross_dir, device="cpu", max_length=16)) != scored
    assert len({base, scored}) == 2


def _export_onnx_only(source: Path, tmp_path: Path) -> Path:
    from sdk.encoders.backends.onnx import SIDECAR

    folder = Path(shutil.copytree(source, tmp_path / "onnx-only"))
    DenseEncoder(folder, device="cpu", backend="onnx")  # exports onnx/model.onnx
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    (folder / "onnx" / SIDECAR).unlink()
    return folder


def test_onnx_backend_and_onnx_only_folders(tiny_bert_dir: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_bert_dir, tmp_path / "model"))
    torch_fp = encoder_fingerprint(DenseEncoder(folder, device="cpu"))
    onnx_enc = DenseEncoder(folder, device="cpu", backend="onnx")
    onnx_fp = encoder_fingerprint(onnx_enc)
    assert onnx_fp != torch_fp
    assert encoder_manifest(onnx_enc)["backend"] == {"name": "onnx", "files": {"0.auto_model": "model.onnx"}}
    # the torch weights behind the graph are hashed: the same as on the torch backend
    assert weights_digest(onnx_enc) == weights_digest(DenseEncoder(folder, device="cpu"))
    assert encoder_fingerprint(DenseEncoder(folder, device="cpu", backend="onnx")) == onnx_fp

    only = _export_onnx_only(folder, tmp_path)
    weightless = DenseEncoder(only, device="cpu", backend="onnx")
    first = encoder_fingerprint(weightless)
    assert encoder_fingerprint(DenseEncoder(only, device="cpu", backend="onnx")) == first
    graph = only / "onnx" / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[-1] ^= 1  # one byte of the graph file (the session already runs from memory)
    graph.write_bytes(bytes(data))
    assert encoder_fingerprint(weightless) != first


def test_minilm_fingerprint_is_cached_until_a_weight_changes(minilm: DenseEncoder,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The second fingerprint of an unchanged model hashes nothing (speed is bench material, not a test)."""
    minilm.__dict__.pop(fp_module._CACHE_ATTR, None)
    first = encoder_fingerprint(minilm)
    hashed: list[str] = []
    real = fp_module._hash_tensor
    monkeypatch.setattr(fp_module, "_hash_tensor", lambda digest, name, tensor: (hashed.append(name),
                                                                                  real(digest, name, tensor)))
    assert encoder_fingerprint(minilm) == first and hashed == []
    weight = minilm.transformer.auto_model.embeddings.word_embeddings.weight
    with torch.no_grad():
        weight[0, 0] += 1.0
    try:
        assert encoder_fingerprint(minilm) != first and hashed  # an in-place change is seen
    finally:
        with torch.no_grad():
            weight[0, 0] -= 1.0


def test_device_does_not_matter(bert: DenseEncoder) -> None:
    base = encoder_fingerprint(bert)
    half = bert.to(torch.float64)
    assert encoder_fingerprint(half) != base  # dtype is part of what produces the vectors
    half.to(torch.float32)
    assert encoder_fingerprint(bert) == base
    if torch.cuda.is_available():  # pragma: no cover - CPU-only CI
        assert encoder_fingerprint(bert.to("cuda")) == base


def test_weightless_tensors_are_named_not_read() -> None:
    meta = torch.nn.Linear(2, 2, device="meta")
    named, empty = fp_module.hashlib.sha256(), fp_module.hashlib.sha256()
    fp_module._hash_tensor(named, "w", meta.weight)  # no bytes to read: name, dtype and shape only
    assert named.hexdigest() != empty.hexdigest()
