"""The batching pipeline (token-length buckets, background tokenization) and the multi-process pool."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sdk.core.errors import InputError, SDKError
from sdk.encoders import feed as feed_module
from sdk.encoders.dense import DenseEncoder
from sdk.encoders.feed import batches

WORDS = "the a of to python package install list tuple debian database vector search query text model".split()


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 40)))) for _ in range(n)]


def test_batches_cover_every_text_once_and_are_token_sorted(tiny_bert: DenseEncoder, monkeypatch) -> None:
    monkeypatch.setattr(feed_module, "WINDOW", 40)
    texts = _texts(203)
    seen: list[int] = []
    for idx, features in batches(texts, 8, tiny_bert.transformer.tokenize):
        lengths = features["attention_mask"].sum(1)
        assert features["input_ids"].shape[1] == int(lengths.max())  # trimmed to its own longest row
        assert torch.equal(lengths, lengths.sort(descending=True, stable=True).values)
        single = tiny_bert.transformer.tokenize([texts[idx[0]]])
        assert torch.equal(features["input_ids"][0, : single["input_ids"].shape[1]], single["input_ids"][0])
        seen.extend(idx.tolist())
    assert sorted(seen) == list(range(len(texts)))


def test_left_padding_is_trimmed_on_the_left(tiny_bert: DenseEncoder) -> None:
    tokenizer = tiny_bert.tokenizer
    texts = _texts(30, seed=1)

    def tokenize(items: list[str]) -> dict[str, torch.Tensor]:
        return dict(tokenizer(items, padding=True, padding_side="left", return_tensors="pt"))

    for idx, features in batches(texts, 7, tokenize, background=False):
        assert bool(features["attention_mask"][:, -1].all())
        alone = tokenize([texts[idx[-1]]])["input_ids"][0]
        assert torch.equal(features["input_ids"][-1, -len(alone):], alone)


def test_encoding_equals_one_text_at_a_time(tiny_bert: DenseEncoder, monkeypatch) -> None:
    monkeypatch.setattr(feed_module, "WINDOW", 16)
    texts = _texts(70, seed=2)
    together = tiny_bert.encode(texts, batch_size=4)
    alone = np.stack([tiny_bert.encode(t) for t in texts[:10]])
    assert np.abs(together[:10] - alone).max() < 1e-5
    tokens = tiny_bert.encode(texts[:5], output_value="token_embeddings", batch_size=2)
    assert [len(t) for t in tokens] == [len(tiny_bert.tokenizer(t)["input_ids"]) for t in texts[:5]]
    assert tiny_bert.encode([], batch_size=4).shape == (0, 32)


def test_tokenizer_errors_surface_from_the_background_thread(tiny_bert: DenseEncoder) -> None:
    def broken(items: list[str]) -> dict[str, torch.Tensor]:
        raise RuntimeError("tokenizer exploded")

    with pytest.raises(RuntimeError, match="tokenizer exploded"):
        list(batches(_texts(50), 4, broken))
    with pytest.raises(InputError, match="batch_size"):
        tiny_bert.encode(["x"], batch_size=True)  # type: ignore[arg-type]


def test_consumer_stopping_early_releases_the_thread(tiny_bert: DenseEncoder) -> None:
    feed = batches(_texts(500), 2, tiny_bert.transformer.tokenize)
    next(feed)
    feed.close()  # generator finalisation stops and joins the producer


def test_multi_process_pool_on_two_cpu_workers(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """ONNX encoder in the pool: workers must reopen their own sessions after unpickling."""
    import shutil

    folder = Path(shutil.copytree(tiny_bert_dir, tmp_path / "bert"))
    texts = _texts(90, seed=3)
    expected = DenseEncoder(folder, device="cpu").encode(texts, batch_size=8, normalize_embeddings=True)
    encoder = DenseEncoder(folder, device="cpu", backend="onnx")
    pool = encoder.start_multi_process_pool(["cpu", "cpu"])
    try:
        out = encoder.encode(texts, batch_size=8, normalize_embeddings=True, pool=pool, chunk_size=20)
        assert out.shape == expected.shape and np.abs(out - expected).max() < 1e-4
        single = encoder.encode_multi_process(texts[3], pool, normalize_embeddings=True)
        assert single.shape == (32,) and np.abs(single - expected[3]).max() < 1e-4
        with pytest.raises(SDKError, match="pool worker failed"):
            encoder.encode_multi_process(texts, pool, precision="int4")
        assert encoder.encode_multi_process([], pool).shape == (0, 32)
    finally:
        encoder.stop_multi_process_pool(pool)
    with pytest.raises(InputError, match="start_multi_process_pool"):
        encoder.encode(texts, pool={"bad": 1})


def test_a_list_of_devices_encodes_in_a_pool_for_that_call(tiny_bert: DenseEncoder) -> None:
    texts = _texts(40, seed=4)
    out = tiny_bert.encode(texts, device=["cpu", "cpu"], chunk_size=10, normalize_embeddings=True)
    assert np.abs(out - tiny_bert.encode(texts, normalize_embeddings=True)).max() < 1e-5
    with pytest.raises(InputError, match="non-empty"):
        tiny_bert.encode(texts, device=[])
