"""DenseEncoder behaviour on tiny random models built locally (no download)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sdk.core.errors import CapabilityError, InputError, ModelLoadError
from sdk.encoders.dense import DenseEncoder
from sdk.encoders.modules import POOLING_MODES, Normalize, Pooling, Transformer
from sdk.quantization import Calibration

TEXTS = [
    "how do i install a python package",
    "a",
    "what is the difference between a list and a tuple in python",
    "debian package search",
    "vector database",
]


def test_shapes_single_and_empty(tiny_bert: DenseEncoder) -> None:
    emb = tiny_bert.encode(TEXTS)
    assert emb.shape == (5, 32) and emb.dtype == np.float32
    assert tiny_bert.encode("one text").shape == (32,)
    empty = tiny_bert.encode([])
    assert empty.shape == (0, 32)
    assert tiny_bert.encode([], truncate_dim=8).shape == (0, 8)


def test_length_sorted_batching_restores_order(tiny_bert: DenseEncoder) -> None:
    batched = tiny_bert.encode(TEXTS, batch_size=2)
    one_by_one = np.stack([tiny_bert.encode(t) for t in TEXTS])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_output_types(tiny_bert: DenseEncoder) -> None:
    as_tensor = tiny_bert.encode(TEXTS, convert_to_tensor=True)
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.shape == (5, 32)
    as_list = tiny_bert.encode(TEXTS, convert_to_numpy=False)
    assert isinstance(as_list, list) and len(as_list) == 5 and as_list[0].shape == (32,)


def test_token_embeddings_are_trimmed_to_each_text(tiny_bert: DenseEncoder) -> None:
    tokens = tiny_bert.encode(TEXTS, output_value="token_embeddings")
    lengths = [len(tiny_bert.tokenizer(t)["input_ids"]) for t in TEXTS]
    assert [t.shape for t in tokens] == [(n, 32) for n in lengths]


def test_prompts_and_query_document_helpers(tiny_bert: DenseEncoder) -> None:
    assert tiny_bert.prompts == {"query": "query: ", "document": "passage: "}
    q = tiny_bert.encode_query(TEXTS[0])
    np.testing.assert_allclose(q, tiny_bert.encode("query: " + TEXTS[0]), atol=1e-6)
    np.testing.assert_allclose(q, tiny_bert.encode(TEXTS[0], prompt_name="query"), atol=1e-6)
    d = tiny_bert.encode_document(TEXTS[0])
    np.testing.assert_allclose(d, tiny_bert.encode("passage: " + TEXTS[0]), atol=1e-6)
    np.testing.assert_allclose(tiny_bert.encode(TEXTS[0], prompt="x: "), tiny_bert.encode("x: " + TEXTS[0]), atol=1e-6)
    with pytest.raises(InputError, match="prompt_name 'nope'"):
        tiny_bert.encode("x", prompt_name="nope")


def test_truncate_dim_per_call_at_construction_and_context(tiny_bert_dir: Path, tiny_bert: DenseEncoder) -> None:
    full = tiny_bert.encode(TEXTS)
    np.testing.assert_allclose(tiny_bert.encode(TEXTS, truncate_dim=8), full[:, :8], atol=1e-6)
    renorm = tiny_bert.encode(TEXTS, truncate_dim=8, normalize_embeddings=True)
    np.testing.assert_allclose(np.linalg.norm(renorm, axis=1), 1.0, atol=1e-5)
    short = DenseEncoder(tiny_bert_dir, device="cpu", truncate_dim=16)
    assert short.get_sentence_embedding_dimension() == 16
    assert short.encode(TEXTS).shape == (5, 16)
    with tiny_bert.truncate_sentence_embeddings(12):
        assert tiny_bert.get_sentence_embedding_dimension() == 12
        assert tiny_bert.encode(TEXTS).shape == (5, 12)
    assert tiny_bert.get_sentence_embedding_dimension() == 32
    with pytest.raises(InputError, match="truncate_dim"):
        tiny_bert.encode(TEXTS, truncate_dim=33)
    with pytest.raises(InputError, match="truncate_dim"):
        DenseEncoder(tiny_bert_dir, device="cpu", truncate_dim=0)


def test_similarity_functions(tiny_bert: DenseEncoder, tiny_mpnet_dir: Path) -> None:
    emb = tiny_bert.encode(TEXTS)
    sim = tiny_bert.similarity(emb, emb).numpy()
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    np.testing.assert_allclose(sim, unit @ unit.T, atol=1e-5)
    np.testing.assert_allclose(tiny_bert.similarity_pairwise(emb, emb).numpy(), np.ones(5), atol=1e-5)
    mpnet = DenseEncoder(tiny_mpnet_dir, device="cpu")
    assert mpnet.similarity_fn_name.value == "dot"
    assert mpnet.get_sentence_embedding_dimension() == 24
    e = mpnet.encode(TEXTS)
    np.testing.assert_allclose(mpnet.similarity(e, e).numpy(), e @ e.T, atol=1e-5)
    for name in ("euclidean", "manhattan"):
        enc = DenseEncoder(tiny_mpnet_dir, device="cpu", similarity_fn_name=name)
        p = 2 if name == "euclidean" else 1
        expected = -np.linalg.norm(e[:, None] - e[None], ord=p, axis=-1)
        np.testing.assert_allclose(enc.similarity(e, e).numpy(), expected, atol=1e-4)
        np.testing.assert_allclose(enc.similarity_pairwise(e[:2], e[1:3]).numpy(), np.diag(expected[:2, 1:3]), atol=1e-4)


@pytest.mark.parametrize("mode", POOLING_MODES)
def test_pooling_modes_match_manual_computation(tiny_bert: DenseEncoder, mode: str) -> None:
    transformer = tiny_bert.transformer
    encoder = DenseEncoder(modules=[transformer, Pooling(32, mode)], device="cpu")
    out = encoder.encode(TEXTS[:3], batch_size=3)
    feats = transformer.tokenize(TEXTS[:3])
    with torch.inference_mode():
        tokens = transformer(dict(feats))["token_embeddings"]
    mask = feats["attention_mask"]
    for row in range(3):
        n = int(mask[row].sum())
        t = tokens[row, :n]
        expected = {
            "cls": t[0],
            "max": t.max(dim=0).values,
            "mean": t.mean(dim=0),
            "mean_sqrt_len_tokens": t.sum(dim=0) / np.sqrt(n),
            "weightedmean": (t * torch.arange(1, n + 1).unsqueeze(1)).sum(0) / (n * (n + 1) / 2),
            "lasttoken": t[-1],
        }[mode]
        np.testing.assert_allclose(out[row], expected.numpy(), atol=1e-5)


def test_pooling_without_prompt_tokens(tiny_bert: DenseEncoder) -> None:
    transformer = tiny_bert.transformer
    with_prompt = DenseEncoder(modules=[transformer, Pooling(32, "mean", include_prompt=True)], device="cpu")
    without = DenseEncoder(modules=[transformer, Pooling(32, "mean", include_prompt=False)], device="cpu")
    a = with_prompt.encode("debian package", prompt="query: ")
    b = without.encode("debian package", prompt="query: ")
    assert not np.allclose(a, b)
    feats = transformer.tokenize(["query: debian package"])
    with torch.inference_mode():
        tokens = transformer(dict(feats))["token_embeddings"][0]
    prompt_len = len(transformer.tokenizer("query: ")["input_ids"]) - 1
    np.testing.assert_allclose(b, tokens[prompt_len:].mean(0).numpy(), atol=1e-5)


def test_construct_from_modules_and_save_round_trip(tiny_bert: DenseEncoder, tmp_path: Path) -> None:
    encoder = DenseEncoder(modules=[tiny_bert.transformer, Pooling(32, "cls"), Normalize()], device="cpu",
                           prompts={"query": "q: "}, default_prompt_name="query", similarity_fn_name="dot")
    encoder.calibrate(TEXTS)
    encoder.save(tmp_path / "saved")
    loaded = DenseEncoder(tmp_path / "saved", device="cpu")
    np.testing.assert_allclose(loaded.encode(TEXTS), encoder.encode(TEXTS), atol=1e-6)
    assert loaded.default_prompt_name == "query" and loaded.similarity_fn_name.value == "dot"
    np.testing.assert_array_equal(loaded.calibration.ranges, encoder.calibration.ranges)
    np.testing.assert_array_equal(loaded.encode(TEXTS, precision="int8"), encoder.encode(TEXTS, precision="int8"))


def test_bare_transformers_folder_uses_mean_pooling(tiny_bert: DenseEncoder, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    tiny_bert.transformer.auto_model.save_pretrained(bare)
    tiny_bert.tokenizer.save_pretrained(bare)
    encoder = DenseEncoder(bare, device="cpu")
    assert [type(m) for m in encoder] == [Transformer, Pooling]
    plain = DenseEncoder(modules=[tiny_bert.transformer, Pooling(32, "mean")], device="cpu")
    np.testing.assert_allclose(encoder.encode(TEXTS), plain.encode(TEXTS), atol=1e-5)


def test_bad_inputs_get_clear_errors(tiny_bert: DenseEncoder, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="None"):
        tiny_bert.encode(None)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"sentences\[1\] is int"):
        tiny_bert.encode(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(InputError, match="unknown precision 'int4'"):
        tiny_bert.encode("x", precision="int4")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="batch_size"):
        tiny_bert.encode(["x"], batch_size=0)
    with pytest.raises(InputError, match="output_value"):
        tiny_bert.encode("x", output_value="cls")  # type: ignore[arg-type]
    with pytest.raises(ModelLoadError, match="does not exist"):
        DenseEncoder(str(tmp_path / "missing" / "model"), device="cpu")
    with pytest.raises(CapabilityError):
        DenseEncoder(modules=[tiny_bert.transformer], backend="tensorrt")  # type: ignore[arg-type]


def test_int8_without_calibration_is_refused(tiny_bert_dir: Path) -> None:
    encoder = DenseEncoder(tiny_bert_dir, device="cpu")
    with pytest.raises(InputError, match="calibrate"):
        encoder.encode(TEXTS, precision="int8")
    assert encoder.encode(TEXTS, precision="ubinary").shape == (5, 4)


def test_pickle_only_weights_refused_unless_allowed(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_bert_dir, folder)
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="pickle"):
        DenseEncoder(folder, device="cpu")
    allowed = DenseEncoder(folder, device="cpu", allow_pickle=True)
    reference = DenseEncoder(tiny_bert_dir, device="cpu")
    np.testing.assert_allclose(allowed.encode(TEXTS), reference.encode(TEXTS), atol=1e-6)


def test_unknown_module_type_is_refused(tiny_bert_dir: Path, tmp_path: Path) -> None:
    import json

    folder = tmp_path / "custom"
    shutil.copytree(tiny_bert_dir, folder)
    manifest = json.loads((folder / "modules.json").read_text())
    manifest[1]["type"] = "my_package.evil.Module"
    (folder / "modules.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="custom code"):
        DenseEncoder(folder, device="cpu")


def test_calibration_passed_in(tiny_bert: DenseEncoder) -> None:
    emb = tiny_bert.encode(TEXTS)
    cal = Calibration.from_embeddings(emb)
    a = tiny_bert.encode(TEXTS, precision="uint8", calibration=cal)
    b = tiny_bert.encode(TEXTS, precision="uint8", calibration=cal.ranges)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.uint8


def test_hub_ids_are_resolved_through_the_hub(tmp_path: Path) -> None:
    # offline here: the hub lookup fails, and the error says what was tried and what to do
    with pytest.raises(ModelLoadError, match=r"sentence-transformers/not-a-real-model.*local model folder"):
        DenseEncoder("not-a-real-model", device="cpu", cache_folder=str(tmp_path), local_files_only=True)


def test_packaged_default_model_is_used_without_arguments(minilm_path: Path) -> None:
    from sdk.encoders.loading import default_dense_model, resolve_model_path

    assert Path(default_dense_model()) == minilm_path
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == minilm_path
