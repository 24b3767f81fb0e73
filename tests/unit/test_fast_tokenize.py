"""The Rust-tokenizer fast path gives exactly what the transformers tokenizer call gives."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sdk.encoders import feed as feed_module
from sdk.encoders.dense import DenseEncoder
from sdk.encoders.feed import batches
from sdk.encoders.modules import Transformer
from sdk.encoders.tokenize_fast import FastTokenizer

EDGE_CASES = [
    "", " ", "[CLS] hello [SEP] [MASK] [PAD]", "émoji 🤖 ünïcode ñ 中文", "x" * 3000, "word " * 600,
    "UPPER case Text", "tab\tand\nnewline",
]


def _real_texts(data: Path, per_file: int = 150) -> list[str]:
    texts: list[str] = []
    for name in ("debpkg/corpus.jsonl", "debpkg/queries.jsonl", "pyfaq/corpus.jsonl", "pyfaq/queries.jsonl"):
        with open(data / name, encoding="utf8") as fh:
            texts += [json.loads(line)["text"] for line in islice(fh, per_file)]
    return texts + EDGE_CASES


def _assert_same(transformer: Transformer, items: list) -> None:
    expected = transformer.tokenize(items)
    ragged = transformer.tokenize_ragged(items)
    assert ragged is not None
    got = ragged.take(np.arange(len(items)))
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key


@pytest.fixture()
def minilm_copy(minilm_path: Path) -> DenseEncoder:
    """A private MiniLM: these tests change its tokenizer's padding and truncation sides."""
    return DenseEncoder(minilm_path, device="cpu")


def test_real_texts_and_pairs_match_the_transformers_call(minilm_copy: DenseEncoder, shared_data: Path) -> None:
    texts = _real_texts(shared_data)
    transformer = minilm_copy.transformer
    _assert_same(transformer, texts)
    _assert_same(transformer, list(zip(texts[: len(texts) // 2], texts[len(texts) // 2 :], strict=False)))
    _assert_same(transformer, texts[:1])
    transformer.max_seq_length = 16  # a new limit reconfigures the copy
    _assert_same(transformer, texts)


def test_padding_and_truncation_sides_are_followed_when_changed(minilm_copy: DenseEncoder, shared_data: Path) -> None:
    texts = _real_texts(shared_data, per_file=40)
    transformer, tokenizer = minilm_copy.transformer, minilm_copy.tokenizer
    _assert_same(transformer, texts)  # caches a copy set up for the defaults
    tokenizer.padding_side = "left"
    _assert_same(transformer, texts)
    tokenizer.truncation_side = "left"
    _assert_same(transformer, texts)
    _assert_same(transformer, list(zip(texts, reversed(texts), strict=True)))


def test_models_without_token_types_and_lower_casing(tiny_mpnet_dir: Path, tiny_bert: DenseEncoder,
                                                     shared_data: Path) -> None:
    texts = _real_texts(shared_data, per_file=40)
    mpnet = DenseEncoder(tiny_mpnet_dir, device="cpu").transformer
    assert "token_type_ids" not in mpnet.tokenize(texts[:2])
    _assert_same(mpnet, texts)
    tiny_bert.transformer.do_lower_case = True
    try:
        _assert_same(tiny_bert.transformer, texts)
    finally:
        tiny_bert.transformer.do_lower_case = False


def test_pipeline_batches_are_identical_on_both_paths(minilm: DenseEncoder, shared_data: Path, monkeypatch) -> None:
    monkeypatch.setattr(feed_module, "WINDOW", 64)
    texts = _real_texts(shared_data, per_file=60)
    transformer = minilm.transformer
    slow = list(batches(texts, 16, transformer.tokenize, background=False))
    fast = list(batches(texts, 16, transformer.tokenize, background=False, ragged=transformer.tokenize_ragged))
    assert len(slow) == len(fast)
    for (idx_a, feat_a), (idx_b, feat_b) in zip(slow, fast, strict=True):
        assert np.array_equal(idx_a, idx_b)
        assert feat_a.keys() == feat_b.keys()
        for key in feat_a:
            assert torch.equal(feat_a[key], feat_b[key]), key


def test_tokenizers_it_cannot_mirror_fall_back_to_the_transformers_call(tiny_bert: DenseEncoder) -> None:
    assert FastTokenizer.wrap(SimpleNamespace(pad_token_id=0)) is None  # a slow (pure Python) tokenizer
    no_pad = SimpleNamespace(backend_tokenizer=tiny_bert.tokenizer.backend_tokenizer, pad_token_id=None)
    assert FastTokenizer.wrap(no_pad) is None
    texts = ["a python package", "the vector search query text"]
    expected = tiny_bert.encode(texts)
    feed = list(batches(texts, 4, tiny_bert.transformer.tokenize, ragged=lambda items: None))
    assert len(feed) == 1 and torch.equal(feed[0][1]["input_ids"], tiny_bert.transformer.tokenize(texts[::-1])["input_ids"])
    assert np.allclose(tiny_bert.encode(texts), expected)


def test_a_pickled_transformer_rebuilds_its_fast_tokenizer(minilm_copy: DenseEncoder) -> None:
    import pickle

    transformer = minilm_copy.transformer
    transformer.tokenize_ragged(["warm the cache"])
    assert "_fast_tokenizer" in transformer.__dict__
    clone = pickle.loads(pickle.dumps(transformer))
    assert "_fast_tokenizer" not in clone.__dict__ and "_fast_tokenizer" in transformer.__dict__
    _assert_same(clone, ["after a round trip", "through pickle"])
