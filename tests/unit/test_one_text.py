"""The one-short-text path of graph backends (``sdk.encoders.one_text``): same vectors as the general loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sdk.encoders.dense import DenseEncoder
from sdk.encoders.modules import Pooling
from tests.conftest import build_tiny_bert
from tests.encoder_fixtures import BACKEND_TEXTS

QUERIES = ["apt-get update", "x", "how do I list the files a package installed", BACKEND_TEXTS[0]]


def _general(encoder: DenseEncoder) -> DenseEncoder:
    encoder._one_text_path = lambda: None  # the general loop only
    return encoder


@pytest.mark.parametrize("pooling", ["mean", "cls", "max", "lasttoken", "mean_sqrt_len_tokens", ("mean", "cls")])
@pytest.mark.parametrize("normalize", [True, False])
def test_one_text_equals_the_general_loop(tmp_path: Path, pooling: str | tuple[str, ...], normalize: bool) -> None:
    folder = build_tiny_bert(tmp_path / "m", pooling=pooling, normalize=normalize, prompts={"query": "query: "})
    fast = DenseEncoder(folder, device="cpu", backend="onnx")
    slow = _general(DenseEncoder(folder, device="cpu", backend="onnx"))
    assert fast._one_text_path() is not None
    for text in QUERIES:
        a, b = fast.encode(text), slow.encode(text)
        assert a.shape == b.shape and a.dtype == b.dtype == np.float32
        assert np.abs(a - b).max() <= 1e-6
        assert np.abs(fast.encode_query(text) - slow.encode_query(text)).max() <= 1e-6  # prompt kept in pooling
    for options in ({"truncate_dim": 8}, {"normalize_embeddings": True}, {"convert_to_tensor": True}):
        a, b = fast.encode(QUERIES[0], **options), slow.encode(QUERIES[0], **options)
        assert tuple(a.shape) == tuple(b.shape) and np.abs(np.asarray(a) - np.asarray(b)).max() <= 1e-6


def test_stacks_the_path_cannot_reproduce_take_the_general_loop(tmp_path: Path) -> None:
    dense = build_tiny_bert(tmp_path / "dense", dense_out=16)
    assert DenseEncoder(dense, device="cpu", backend="onnx")._one_text_path() is None  # a Dense layer
    plain = build_tiny_bert(tmp_path / "plain")
    assert DenseEncoder(plain, device="cpu")._one_text_path() is None  # torch weights
    weighted = build_tiny_bert(tmp_path / "weighted", pooling="weightedmean")
    assert DenseEncoder(weighted, device="cpu", backend="onnx")._one_text_path() is None


def test_a_prompt_excluded_from_pooling_and_a_long_text_take_the_general_loop(tmp_path: Path) -> None:
    folder = build_tiny_bert(tmp_path / "m", prompts={"query": "query: "})
    fast = DenseEncoder(folder, device="cpu", backend="onnx")
    slow = _general(DenseEncoder(folder, device="cpu", backend="onnx"))
    pooling = next(m for m in fast if isinstance(m, Pooling))
    pooling.include_prompt = False
    next(m for m in slow if isinstance(m, Pooling)).include_prompt = False
    assert np.abs(fast.encode_query(QUERIES[2]) - slow.encode_query(QUERIES[2])).max() <= 1e-6
    fast.max_seq_length = slow.max_seq_length = 120
    long = " ".join(["package"] * 90)  # past SMALL_BATCH_TOKENS: the main session, like the general loop
    assert fast._one_text_path().run(long) is None
    assert np.abs(fast.encode(long) - slow.encode(long)).max() <= 1e-6


def test_swapping_the_backend_plans_again(tmp_path: Path) -> None:
    folder = build_tiny_bert(tmp_path / "m")
    enc = DenseEncoder(folder, device="cpu", backend="onnx")
    first = enc._one_text_path()
    enc[1] = Pooling(32, "cls")  # a module replaced: the old plan must not be used
    assert enc._one_text_path() is not first
    ref = _general(DenseEncoder(folder, device="cpu", backend="onnx"))
    ref[1] = Pooling(32, "cls")
    assert np.abs(enc.encode(QUERIES[0]) - ref.encode(QUERIES[0])).max() <= 1e-6


def test_openvino_one_text_equals_the_general_loop(tmp_path: Path) -> None:
    folder = build_tiny_bert(tmp_path / "m")
    fast = DenseEncoder(folder, device="cpu", backend="openvino")
    slow = _general(DenseEncoder(folder, device="cpu", backend="openvino"))
    assert fast._one_text_path() is not None
    for text in QUERIES:
        assert np.abs(fast.encode(text) - slow.encode(text)).max() <= 1e-6
