"""SparseEncoder behaviour on tiny random SPLADE models built locally (no download)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from sdk.core.errors import InputError, ModelLoadError
from sdk.core.types import SparseVector
from sdk.encoders.modules import MLMTransformer, Router, SparseStaticEmbedding, SpladePooling
from sdk.encoders.sparse import SparseEncoder
from tests.encoder_fixtures import build_tiny_bert_base, build_tiny_mlm

TEXTS = [
    "how do i install a python package",
    "a",
    "what is the difference between a list and a tuple in python",
    "debian package search",
    "vector database",
]


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_mlm(tmp_path_factory.mktemp("tiny-mlm"))


@pytest.fixture(scope="module")
def splade(mlm_dir: Path) -> SparseEncoder:
    return SparseEncoder(mlm_dir, device="cpu")


def _reference(mlm_dir: Path, texts: list[str], pooling: str = "max") -> torch.Tensor:
    """SPLADE computed by hand from the transformers model, one text at a time (no padding)."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(mlm_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(mlm_dir)
    rows = []
    with torch.no_grad():
        for text in texts:
            logits = model(**tokenizer(text, return_tensors="pt")).logits[0]
            weights = torch.log1p(torch.relu(logits))
            rows.append(weights.max(dim=0).values if pooling == "max" else weights.sum(dim=0))
    return torch.stack(rows)


def test_bare_fill_mask_folder_becomes_splade(splade: SparseEncoder, mlm_dir: Path) -> None:
    assert [type(m) for m in splade] == [MLMTransformer, SpladePooling]
    assert splade[1].pooling_strategy == "max"
    vocab = len(splade.tokenizer.get_vocab())
    assert splade.get_embedding_dimension() == vocab
    dense = splade.encode(TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False)
    torch.testing.assert_close(dense, _reference(mlm_dir, TEXTS), atol=1e-5, rtol=0)


def test_default_output_is_one_sparse_vector_per_text(splade: SparseEncoder) -> None:
    vectors = splade.encode(TEXTS)
    assert isinstance(vectors, list) and len(vectors) == len(TEXTS)
    assert all(isinstance(v, SparseVector) and len(v) > 0 for v in vectors)
    assert all(list(v.indices) == sorted(v.indices) and min(v.values) > 0 for v in vectors)
    single = splade.encode(TEXTS[0])
    assert isinstance(single, SparseVector) and single.indices == vectors[0].indices
    np.testing.assert_allclose(single.values, vectors[0].values, atol=1e-6)
    assert splade.encode([]) == []


def test_tensor_outputs(splade: SparseEncoder) -> None:
    dim = splade.get_embedding_dimension()
    sparse = splade.encode(TEXTS, convert_to_tensor=True)
    assert sparse.layout == torch.sparse_coo and sparse.shape == (len(TEXTS), dim)
    dense = splade.encode(TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False)
    assert dense.layout == torch.strided
    torch.testing.assert_close(sparse.to_dense(), dense)
    one = splade.encode(TEXTS[2], convert_to_tensor=True)
    assert one.shape == (dim,) and one.layout == torch.sparse_coo
    torch.testing.assert_close(one.to_dense(), dense[2])
    listed = splade.encode(TEXTS, convert_to_sparse_tensor=True)
    assert isinstance(listed, list) and all(t.layout == torch.sparse_coo and t.shape == (dim,) for t in listed)
    vec = splade.encode(TEXTS[2])
    np.testing.assert_allclose(vec.to_dense(dim), dense[2].numpy())
    assert splade.encode([], convert_to_tensor=True).shape == (0, dim)


def test_batching_does_not_change_results(splade: SparseEncoder) -> None:
    batched = splade.encode(TEXTS, batch_size=2, convert_to_tensor=True).to_dense()
    one_by_one = torch.stack([splade.encode(t, convert_to_tensor=True).to_dense() for t in TEXTS])
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=0)


def test_sum_pooling_and_log1p_relu(mlm_dir: Path) -> None:
    mlm = MLMTransformer.load(mlm_dir)
    summed = SparseEncoder(modules=[mlm, SpladePooling("sum")], device="cpu")
    got = summed.encode(TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False)
    torch.testing.assert_close(got, _reference(mlm_dir, TEXTS, "sum"), atol=1e-4, rtol=1e-5)
    double = SparseEncoder(modules=[mlm, SpladePooling("max", "log1p_relu")], device="cpu")
    got = double.encode(TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False)
    torch.testing.assert_close(got, torch.log1p(_reference(mlm_dir, TEXTS)), atol=1e-5, rtol=0)


def test_chunked_pooling_matches(mlm_dir: Path, splade: SparseEncoder) -> None:
    chunked = SparseEncoder(modules=[MLMTransformer.load(mlm_dir), SpladePooling(chunk_size=3)], device="cpu")
    torch.testing.assert_close(chunked.encode(TEXTS, convert_to_tensor=True).to_dense(),
                               splade.encode(TEXTS, convert_to_tensor=True).to_dense())


def test_max_active_dims_keeps_the_largest_weights(splade: SparseEncoder) -> None:
    full = splade.encode(TEXTS)
    capped = splade.encode(TEXTS, max_active_dims=3)
    for f, c in zip(full, capped, strict=True):
        assert len(c) == min(3, len(f))
        assert sorted(c.values, reverse=True) == sorted(f.values, reverse=True)[: len(c)]
        assert set(c.indices) <= set(f.indices)
    assert splade.encode(TEXTS, max_active_dims=10**6) == full


def test_max_active_dims_default_is_saved(mlm_dir: Path, tmp_path: Path) -> None:
    model = SparseEncoder(mlm_dir, device="cpu", max_active_dims=2)
    assert all(len(v) <= 2 for v in model.encode(TEXTS))
    model.save(tmp_path)
    config = json.loads((tmp_path / "config_sentence_transformers.json").read_text())
    assert config["max_active_dims"] == 2 and config["model_type"] == "SparseEncoder"
    assert SparseEncoder(tmp_path, device="cpu").max_active_dims == 2


def test_prompts_and_query_document_helpers(mlm_dir: Path) -> None:
    model = SparseEncoder(mlm_dir, device="cpu", prompts={"query": "query: ", "passage": "passage: "})
    assert model.encode_query(TEXTS[0]) == model.encode("query: " + TEXTS[0])
    assert model.encode_document(TEXTS[0]) == model.encode("passage: " + TEXTS[0])
    assert model.encode(TEXTS[0], prompt_name="query") == model.encode_query(TEXTS[0])
    assert model.encode_query(TEXTS[0], prompt="") == model.encode(TEXTS[0])
    with pytest.raises(InputError, match="prompt_name 'nope'"):
        model.encode(TEXTS[0], prompt_name="nope")


def test_decode(splade: SparseEncoder) -> None:
    vector = splade.encode(TEXTS[0])
    decoded = splade.decode(vector)
    weights = [w for _, w in decoded]
    assert weights == sorted(weights, reverse=True) and len(decoded) == len(vector)
    vocab = splade.tokenizer.get_vocab()
    assert all(dict(zip(vector.indices, vector.values, strict=True))[vocab[t]] == w for t, w in decoded)
    assert splade.decode(vector, top_k=2) == decoded[:2]
    as_tensor = splade.encode(TEXTS[:2], convert_to_tensor=True)
    assert splade.decode(as_tensor, top_k=2) == [splade.decode(v, top_k=2) for v in splade.encode(TEXTS[:2])]
    with pytest.raises(InputError, match="top_k"):
        splade.decode(vector, top_k=0)
    with pytest.raises(InputError, match="SparseVector"):
        splade.decode("not an embedding")


def test_sparsity(splade: SparseEncoder) -> None:
    dim = splade.get_embedding_dimension()
    vectors = splade.encode(TEXTS)
    stats = SparseEncoder.sparsity(splade.encode(TEXTS, convert_to_tensor=True))
    assert stats["active_dims"] == pytest.approx(np.mean([len(v) for v in vectors]))
    assert stats["sparsity_ratio"] == pytest.approx(1 - stats["active_dims"] / dim)
    assert SparseEncoder.sparsity(vectors, dim=dim) == pytest.approx(stats)
    with pytest.raises(InputError, match="dim="):
        SparseEncoder.sparsity(vectors)


def test_similarity_dot_and_cosine(mlm_dir: Path) -> None:
    model = SparseEncoder(mlm_dir, device="cpu")
    dense = model.encode(TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False)
    vectors = model.encode(TEXTS)
    torch.testing.assert_close(model.similarity(vectors, vectors[:2]), dense @ dense[:2].T)
    torch.testing.assert_close(model.similarity(vectors[:2], vectors), dense[:2] @ dense.T)
    torch.testing.assert_close(model.similarity_pairwise(vectors, vectors), (dense * dense).sum(1))
    assert model.similarity(vectors[0], vectors[1]).shape == (1, 1)
    model.similarity_fn_name = "cosine"
    unit = torch.nn.functional.normalize(dense, dim=1)
    torch.testing.assert_close(model.similarity(vectors, model.encode(TEXTS, convert_to_tensor=True)), unit @ unit.T)
    with pytest.raises(InputError, match="unknown similarity"):
        model.similarity_fn_name = "nonsense"
    with pytest.raises(InputError, match="'dot' or 'cosine'"):
        SparseEncoder(mlm_dir, device="cpu", similarity_fn_name="euclidean")


def test_intersection(splade: SparseEncoder) -> None:
    query, docs = splade.encode(TEXTS[0]), splade.encode(TEXTS)
    shared = SparseEncoder.intersection(query, docs)
    for doc, inter in zip(docs, shared, strict=True):
        common = set(query.indices) & set(doc.indices)
        assert set(inter.indices) == common
        assert sum(inter.values) == pytest.approx(query.dot(doc), rel=1e-5)
    as_tensor = SparseEncoder.intersection(splade.encode(TEXTS[0], convert_to_tensor=True),
                                           splade.encode(TEXTS, convert_to_tensor=True))
    assert as_tensor.layout == torch.sparse_coo and as_tensor.shape[0] == len(TEXTS)
    np.testing.assert_allclose(as_tensor.to_dense()[1].numpy(), shared[1].to_dense(as_tensor.shape[1]), rtol=1e-6)
    with pytest.raises(InputError, match="single embedding"):
        SparseEncoder.intersection(docs, query)


@pytest.mark.parametrize(
    ("bad", "message"),
    [(None, "is None"), (["ok", 3], r"sentences\[1\] is int"), (42, "string or a list"), ([b"bytes"], "not a string")],
)
def test_bad_texts_are_rejected(splade: SparseEncoder, bad: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        splade.encode(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True])
def test_bad_max_active_dims(splade: SparseEncoder, mlm_dir: Path, bad: object) -> None:
    with pytest.raises(InputError, match="max_active_dims"):
        splade.encode(TEXTS, max_active_dims=bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="max_active_dims"):
        SparseEncoder(mlm_dir, device="cpu", max_active_dims=bad)  # type: ignore[arg-type]


def test_other_bad_arguments(splade: SparseEncoder) -> None:
    with pytest.raises(InputError, match="batch_size"):
        splade.encode(TEXTS, batch_size=0)
    with pytest.raises(InputError, match="task"):
        splade.encode(TEXTS, task=3)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="pooling_strategy"):
        SpladePooling("mean")
    with pytest.raises(InputError, match="activation_function"):
        SpladePooling("max", "gelu")


def test_non_mlm_and_dense_folders_are_refused(tmp_path: Path, mlm_dir: Path) -> None:
    base = build_tiny_bert_base(tmp_path / "base")
    with pytest.raises(ModelLoadError, match="not a fill-mask"):
        SparseEncoder(base, device="cpu")
    from sdk.encoders.dense import DenseEncoder

    DenseEncoder(base, device="cpu").save(tmp_path / "dense")
    with pytest.raises(ModelLoadError, match="no sparse output"):
        SparseEncoder(tmp_path / "dense", device="cpu")
    with pytest.raises(ModelLoadError, match="does not exist"):
        SparseEncoder(tmp_path / "missing" / "model", device="cpu")


def test_save_load_round_trip(splade: SparseEncoder, tmp_path: Path) -> None:
    splade.save(tmp_path)
    manifest = json.loads((tmp_path / "modules.json").read_text())
    assert [m["type"] for m in manifest] == [MLMTransformer.st_type, SpladePooling.st_type]
    settings = json.loads((tmp_path / "sentence_bert_config.json").read_text())
    assert settings["transformer_task"] == "fill-mask"
    loaded = SparseEncoder(tmp_path, device="cpu")
    assert [type(m) for m in loaded] == [MLMTransformer, SpladePooling]
    assert loaded.encode(TEXTS) == splade.encode(TEXTS)
    assert loaded.similarity_fn_name.value == "dot"


def test_sentence_transformers_v5_folder_layout_loads(splade: SparseEncoder, tmp_path: Path) -> None:
    """Most SPLADE models on the hub were saved by sentence-transformers 5.x: older names and keys."""
    splade.save(tmp_path)
    manifest = json.loads((tmp_path / "modules.json").read_text())
    manifest[0]["type"] = "sentence_transformers.sparse_encoder.models.MLMTransformer"
    manifest[1]["type"] = "sentence_transformers.sparse_encoder.models.SpladePooling"
    (tmp_path / "modules.json").write_text(json.dumps(manifest))
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    pooling = tmp_path / manifest[1]["path"] / "config.json"
    pooling.write_text(json.dumps({"pooling_strategy": "max", "word_embedding_dimension": None}))
    loaded = SparseEncoder(tmp_path, device="cpu")
    assert [type(m) for m in loaded] == [MLMTransformer, SpladePooling] and loaded.max_seq_length == 64
    assert loaded.get_embedding_dimension() == splade.get_embedding_dimension()
    assert loaded.encode(TEXTS) == splade.encode(TEXTS)


def test_inference_free_round_trip_never_runs_the_mlm(mlm_dir: Path, tmp_path: Path) -> None:
    mlm = MLMTransformer.load(mlm_dir)
    generator = torch.Generator().manual_seed(0)
    weight = torch.rand(len(mlm.tokenizer.get_vocab()), generator=generator)
    router = Router.for_query_document([SparseStaticEmbedding(mlm.tokenizer, weight)], [mlm, SpladePooling("max")])
    model = SparseEncoder(modules=[router], device="cpu")
    model.save(tmp_path)
    loaded = SparseEncoder(tmp_path, device="cpu")
    assert isinstance(loaded[0], Router)
    loaded_mlm = loaded[0].sub_modules["document"][0]
    assert isinstance(loaded_mlm, MLMTransformer)

    with mock.patch.object(loaded_mlm.auto_model, "forward", side_effect=AssertionError("MLM ran")) as forward:
        queries = loaded.encode_query(TEXTS)
    forward.assert_not_called()
    vocab = loaded.tokenizer.get_vocab()
    for text, vector in zip(TEXTS, queries, strict=True):
        ids = sorted({vocab[t] for t in loaded.tokenizer.tokenize(text)})
        assert list(vector.indices) == ids
        np.testing.assert_allclose(vector.values, weight[ids].numpy(), rtol=1e-6)
    assert queries == model.encode_query(TEXTS)
    # documents (and plain encode: the default route) still run SPLADE
    assert loaded.encode_document(TEXTS) == SparseEncoder(mlm_dir, device="cpu").encode(TEXTS)
    assert loaded.encode(TEXTS) == loaded.encode_document(TEXTS)
    with pytest.raises(InputError, match="no route for task 'summary'"):
        loaded.encode(TEXTS, task="summary")


def test_static_weights_from_an_idf_json_folder(mlm_dir: Path, tmp_path: Path) -> None:
    mlm = MLMTransformer.load(mlm_dir)
    folder = tmp_path / "static"
    SparseStaticEmbedding(mlm.tokenizer).save(folder)
    (folder / "model.safetensors").unlink()
    (folder / "idf.json").write_text(json.dumps({"python": 2.5, "package": 1.5}))
    (folder / "config.json").write_text(json.dumps({"frozen": True, "path": "idf.json"}))
    static = SparseStaticEmbedding.load(folder)
    assert static.frozen and not static.weight.requires_grad
    model = SparseEncoder(modules=[static], device="cpu")
    vocab = mlm.tokenizer.get_vocab()
    assert model.encode("python package install") == SparseVector((vocab["package"], vocab["python"]), (1.5, 2.5))
    (folder / "config.json").write_text(json.dumps({"path": "../../etc/idf.json"}))
    with pytest.raises(ModelLoadError, match="inside the folder"):
        SparseStaticEmbedding.load(folder)


def test_lazy_export() -> None:
    import sdk

    assert sdk.SparseEncoder is SparseEncoder


def test_multi_process_pool_gives_the_local_vectors(splade: SparseEncoder) -> None:
    texts = [f"{t} {i}" for i, t in enumerate(TEXTS * 6)]
    local = splade.encode(texts, batch_size=4)
    pool = splade.start_multi_process_pool(["cpu", "cpu"])
    try:
        pooled = splade.encode(texts, batch_size=4, pool=pool, chunk_size=5)
        assert len(pooled) == len(local)
        for a, b in zip(pooled, local, strict=True):
            assert np.array_equal(a.indices, b.indices) and np.allclose(a.values, b.values, atol=1e-6)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch's sparse unpickling warned about unchecked invariants
            matrix = splade.encode(texts, pool=pool, chunk_size=7, convert_to_tensor=True)
        assert matrix.is_coalesced()
        assert torch.allclose(matrix.to_dense(), splade.encode(texts, convert_to_tensor=True).to_dense(), atol=1e-6)
        one = splade.encode(texts[2], pool=pool, max_active_dims=3)
        assert isinstance(one, SparseVector) and len(one.indices) <= 3
    finally:
        splade.stop_multi_process_pool(pool)
