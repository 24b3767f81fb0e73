"""CrossEncoder behaviour on tiny random rerankers built locally (no download)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sdk.core.errors import InputError, ModelLoadError
from sdk.encoders.cross_encoder import CrossEncoder
from sdk.encoders.modules import ClassificationTransformer
from tests.encoder_fixtures import build_tiny_bert_base, build_tiny_cross_encoder

PAIRS = [
    ("how do i install a python package", "use pip install and the name of the package"),
    ("what is a tuple", "a tuple is a list that can not be set"),
    ("debian package search", "a"),
    ("vector database", "the database can search vector data by query"),
]


@pytest.fixture(scope="module")
def ce1_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("ce1"), num_labels=1)


@pytest.fixture(scope="module")
def ce3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("ce3"), num_labels=3, seed=1)


@pytest.fixture(scope="module")
def ce1(ce1_dir: Path) -> CrossEncoder:
    return CrossEncoder(ce1_dir, device="cpu")


@pytest.fixture(scope="module")
def ce3(ce3_dir: Path) -> CrossEncoder:
    return CrossEncoder(ce3_dir, device="cpu")


def _logits(folder: Path, pairs: list[tuple[str, str]]) -> torch.Tensor:
    """Raw classification logits from transformers, one pair at a time (no padding)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        return torch.cat([model(**tokenizer(a, b, return_tensors="pt")).logits for a, b in pairs])


def test_one_label_scores_are_sigmoid_of_logits(ce1: CrossEncoder, ce1_dir: Path) -> None:
    assert ce1.num_labels == 1 and isinstance(ce1.activation_fn, torch.nn.Sigmoid)
    assert isinstance(ce1[0], ClassificationTransformer) and len(ce1) == 1
    scores = ce1.predict(PAIRS)
    assert isinstance(scores, np.ndarray) and scores.shape == (len(PAIRS),) and scores.dtype == np.float32
    logits = _logits(ce1_dir, PAIRS)[:, 0]
    np.testing.assert_allclose(scores, torch.sigmoid(logits).numpy(), atol=1e-6)
    raw = ce1.predict(PAIRS, activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(raw, logits.numpy(), atol=1e-5)


def test_single_pair_gives_a_single_score(ce1: CrossEncoder) -> None:
    one = ce1.predict(PAIRS[0])
    assert np.ndim(one) == 0
    assert one == pytest.approx(float(ce1.predict(PAIRS)[0]), abs=1e-6)
    assert np.ndim(ce1.predict(list(PAIRS[0]))) == 0  # a [query, document] list is one pair too


def test_output_types(ce1: CrossEncoder) -> None:
    as_tensor = ce1.predict(PAIRS, convert_to_tensor=True)
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.shape == (len(PAIRS),)
    as_list = ce1.predict(PAIRS, convert_to_numpy=False)
    assert isinstance(as_list, list) and len(as_list) == len(PAIRS)
    assert ce1.predict([]).shape == (0,)


def test_batching_does_not_change_scores(ce1: CrossEncoder) -> None:
    np.testing.assert_allclose(ce1.predict(PAIRS, batch_size=1), ce1.predict(PAIRS, batch_size=3), atol=1e-6)


def test_three_labels(ce3: CrossEncoder, ce3_dir: Path) -> None:
    assert ce3.num_labels == 3 and isinstance(ce3.activation_fn, torch.nn.Identity)
    scores = ce3.predict(PAIRS)
    assert scores.shape == (len(PAIRS), 3)
    np.testing.assert_allclose(scores, _logits(ce3_dir, PAIRS).numpy(), atol=1e-5)
    probs = ce3.predict(PAIRS, apply_softmax=True)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert ce3.predict(PAIRS[1]).shape == (3,)
    with pytest.raises(InputError, match="1-label"):
        ce3.rank("query", ["a", "b"])


def test_rank(ce1: CrossEncoder) -> None:
    query, docs = "how do i install a python package", [d for _, d in PAIRS]
    ranked = ce1.rank(query, docs, return_documents=True)
    scores = ce1.predict([(query, d) for d in docs])
    assert [r["corpus_id"] for r in ranked] == list(np.argsort(-scores, kind="stable"))
    assert all(r["text"] == docs[r["corpus_id"]] for r in ranked)
    assert [r["score"] for r in ranked] == pytest.approx(sorted(scores.tolist(), reverse=True), abs=1e-6)
    top = ce1.rank(query, docs, top_k=2)
    assert len(top) == 2 and "text" not in top[0] and top[0]["corpus_id"] == ranked[0]["corpus_id"]
    assert ce1.rank(query, []) == []


def test_max_length_truncates_pairs(ce1_dir: Path) -> None:
    short = CrossEncoder(ce1_dir, device="cpu", max_length=8)
    assert short.max_length == 8
    features = short.transformer.tokenize([PAIRS[0]])
    assert features["input_ids"].shape[1] == 8
    long_pair = (PAIRS[0][0], PAIRS[0][1] + " and more words")
    assert short.predict(long_pair) == pytest.approx(short.predict(PAIRS[0]), abs=1e-6)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (None, "is None"),
        ("just a string", "not a string"),
        (["a", "b", "c"], "length 3"),
        ([("a", "b"), ("c", 4)], "pair 1: the second element is int"),
        ([("a", "b"), "c"], "pair 1 must be"),
        (42, "list of"),
    ],
)
def test_bad_pairs_are_rejected(ce1: CrossEncoder, bad: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        ce1.predict(bad)  # type: ignore[arg-type]


def test_other_bad_arguments(ce1: CrossEncoder, ce1_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="batch_size"):
        ce1.predict(PAIRS, batch_size=0)
    with pytest.raises(InputError, match="activation_fn must be callable"):
        ce1.predict(PAIRS, activation_fn="sigmoid")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="num_labels"):
        CrossEncoder(ce1_dir, num_labels=0)
    with pytest.raises(InputError, match="max_length"):
        CrossEncoder(ce1_dir, max_length=-3)
    with pytest.raises(InputError, match="top_k"):
        ce1.rank("q", ["d"], top_k=0)
    with pytest.raises(InputError, match="query must be a string"):
        ce1.rank(None, ["d"])  # type: ignore[arg-type]
    with pytest.raises(ModelLoadError, match="does not exist"):
        CrossEncoder(tmp_path / "missing" / "model")


def test_base_model_gets_a_one_label_head(tmp_path: Path) -> None:
    model = CrossEncoder(build_tiny_bert_base(tmp_path / "base"), device="cpu")
    assert model.num_labels == 1 and model.predict(PAIRS).shape == (len(PAIRS),)


def test_save_load_round_trip_keeps_activation(ce1_dir: Path, tmp_path: Path) -> None:
    model = CrossEncoder(ce1_dir, device="cpu", activation_fn=torch.nn.Tanh(), max_length=32)
    model.save(tmp_path)
    config = json.loads((tmp_path / "config_sentence_transformers.json").read_text())
    assert config["model_type"] == "CrossEncoder"
    assert config["activation_fn"] == "torch.nn.modules.activation.Tanh"
    manifest = json.loads((tmp_path / "modules.json").read_text())
    assert manifest[0]["type"] == ClassificationTransformer.st_type and manifest[0]["path"] == ""
    settings = json.loads((tmp_path / "sentence_bert_config.json").read_text())
    assert settings["transformer_task"] == "sequence-classification"
    loaded = CrossEncoder(tmp_path, device="cpu")
    assert isinstance(loaded.activation_fn, torch.nn.Tanh) and loaded.max_length == 32
    np.testing.assert_allclose(loaded.predict(PAIRS), model.predict(PAIRS), atol=0)


@pytest.mark.parametrize(
    ("path", "expected"),
    [("torch.nn.modules.activation.Tanh", torch.nn.Tanh), ("my_package.evil.Activation", torch.nn.Sigmoid)],
)
def test_v4_v5_folder_activation(ce1_dir: Path, tmp_path: Path, path: str, expected: type) -> None:
    """sentence-transformers 4-5 saved plain transformers folders with the activation in config.json;
    a path outside torch.nn is never imported (the default is used instead)."""
    import shutil

    folder = Path(shutil.copytree(ce1_dir, tmp_path / "ce"))
    config = json.loads((folder / "config.json").read_text())
    config["sentence_transformers"] = {"activation_fn": path}
    (folder / "config.json").write_text(json.dumps(config))
    assert isinstance(CrossEncoder(folder, device="cpu").activation_fn, expected)


def test_activation_is_not_a_stack_module(ce1: CrossEncoder) -> None:
    assert len(list(ce1.children())) == 1


def test_lazy_export() -> None:
    import sdk

    assert sdk.CrossEncoder is CrossEncoder


def test_predict_and_rank_in_a_multi_process_pool(ce1: CrossEncoder, ce3: CrossEncoder) -> None:
    pairs = [(q, f"{d} {i}") for i, (q, d) in enumerate(PAIRS * 5)]
    local = ce1.predict(pairs, batch_size=4)
    pool = ce1.start_multi_process_pool(["cpu", "cpu"])
    try:
        scores = ce1.predict(pairs, batch_size=4, pool=pool, chunk_size=3)
        assert scores.shape == local.shape and np.abs(scores - local).max() < 1e-6
        assert abs(ce1.predict(pairs[4], pool=pool) - local[4]) < 1e-6
        docs = [d for _, d in pairs]
        pooled, alone = ce1.rank(pairs[0][0], docs, pool=pool), ce1.rank(pairs[0][0], docs)
        assert sorted(h["corpus_id"] for h in pooled) == list(range(len(docs)))
        assert np.allclose([h["score"] for h in pooled], [h["score"] for h in alone], atol=1e-6)
        assert ce1.predict([], pool=pool).shape == (0,)
    finally:
        ce1.stop_multi_process_pool(pool)
    # a list of devices starts a pool for this call only
    probs = ce3.predict(pairs, apply_softmax=True, device=["cpu", "cpu"], chunk_size=4)
    assert probs.shape == (len(pairs), 3) and np.abs(probs - ce3.predict(pairs, apply_softmax=True)).max() < 1e-6
    with pytest.raises(InputError, match="start_multi_process_pool"):
        ce1.predict(pairs, pool={"input": None})
