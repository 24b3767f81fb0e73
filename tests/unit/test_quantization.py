"""Quantization: calibration is reused, one query quantizes like a batch row, codes round-trip."""

from __future__ import annotations

import numpy as np
import pytest

from sdk.core.errors import DimensionMismatchError, InputError
from sdk.quantization import (
    Calibration,
    calibration_ranges,
    dequantize_embeddings,
    quantize_embeddings,
    search_quantized,
    unpack_binary,
)

rng = np.random.default_rng(0)
EMB = rng.normal(size=(500, 64)).astype(np.float32)


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_single_query_equals_its_row_in_a_large_batch(precision: str) -> None:
    ranges = calibration_ranges(EMB[:300])
    batch = quantize_embeddings(EMB, precision, ranges=ranges)
    for i in (0, 17, 499):
        single = quantize_embeddings(EMB[i], precision, ranges=ranges)
        assert single.shape == (64,)
        np.testing.assert_array_equal(single, batch[i])


def test_values_outside_the_range_saturate_instead_of_wrapping() -> None:
    ranges = np.array([[-1.0] * 4, [1.0] * 4], dtype=np.float32)
    q = quantize_embeddings(np.array([[-5.0, 5.0, 0.0, 0.999]], dtype=np.float32), "int8", ranges=ranges)
    assert q.tolist() == [[-128, 127, -1, 126]]
    u = quantize_embeddings(np.array([[-5.0, 5.0]], dtype=np.float32), "uint8", ranges=ranges[:, :2])
    assert u.tolist() == [[0, 255]]


def test_scalar_quantization_needs_explicit_ranges() -> None:
    with pytest.raises(InputError, match="calibration"):
        quantize_embeddings(EMB, "int8")
    with pytest.raises(DimensionMismatchError, match="64 dims"):
        quantize_embeddings(EMB, "int8", ranges=calibration_ranges(EMB[:, :32]))
    with pytest.raises(InputError, match="unknown precision"):
        quantize_embeddings(EMB, "int2")


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_dequantize_is_within_one_bucket(precision: str) -> None:
    ranges = calibration_ranges(EMB)
    back = dequantize_embeddings(quantize_embeddings(EMB, precision, ranges=ranges), precision, ranges=ranges)
    step = (ranges[1] - ranges[0]) / 255
    assert np.all(np.abs(back - EMB) <= step * 1.01)


def test_binary_packing_and_unpacking() -> None:
    x = np.array([[1.0, -1.0, 0.5, 0.0, -0.2, 3.0, 1.0, 1.0, -1.0, 2.0]], dtype=np.float32)
    u = quantize_embeddings(x, "ubinary")
    b = quantize_embeddings(x, "binary")
    assert u.dtype == np.uint8 and b.dtype == np.int8 and u.shape == (1, 2)
    assert u.tolist() == [[0b10100111, 0b01000000]]
    np.testing.assert_array_equal(b.astype(np.int16) + 128, u.astype(np.int16))
    bits = (x > 0).astype(np.uint8)
    np.testing.assert_array_equal(unpack_binary(u, "ubinary", dim=10), bits)
    np.testing.assert_array_equal(unpack_binary(b, "binary", dim=10), bits)


def test_calibration_save_and_load(tmp_path) -> None:
    cal = Calibration.from_embeddings(EMB, normalized=True)
    cal.save(tmp_path)
    again = Calibration.load(tmp_path)
    assert again is not None and again.normalized and again.dim == 64
    np.testing.assert_array_equal(again.ranges, cal.ranges)
    assert Calibration.load(tmp_path / "nothing") is None
    with pytest.raises(InputError):
        Calibration(np.zeros((3, 4)))


@pytest.mark.parametrize("precision", ["int8", "uint8", "binary", "ubinary"])
def test_search_quantized_recovers_float_neighbours(precision: str) -> None:
    corpus = EMB / np.linalg.norm(EMB, axis=1, keepdims=True)
    queries = corpus[:20] + 0.05 * rng.normal(size=(20, 64)).astype(np.float32)
    ranges = calibration_ranges(corpus)
    codes = quantize_embeddings(corpus, precision, ranges=ranges)
    results = search_quantized(queries, codes, precision, ranges=ranges, top_k=5, oversampling=8, dim=64)
    assert [r[0]["corpus_id"] for r in results] == list(range(20))
    assert all(len(r) == 5 for r in results)
