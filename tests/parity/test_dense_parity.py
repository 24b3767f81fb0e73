"""Parity with sentence-transformers on the real all-MiniLM-L6-v2, in the same process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sdk.encoders.dense import DenseEncoder
from sdk.quantization import calibration_ranges
from tests.data_helpers import real_texts

pytestmark = pytest.mark.slow
ATOL = 1e-5


@pytest.fixture(scope="module")
def st_model(minilm_path: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path), device="cpu")


@pytest.fixture(scope="module")
def texts(shared_data: Path) -> list[str]:
    return real_texts(shared_data, 1000)


@pytest.fixture(scope="module")
def reference(st_model, texts) -> np.ndarray:
    return st_model.encode(texts, batch_size=32)


@pytest.fixture(scope="module")
def ours(minilm: DenseEncoder, texts) -> np.ndarray:
    return minilm.encode(texts, batch_size=32)


def test_sentence_embeddings_match_on_1000_real_texts(texts, reference, ours) -> None:
    assert len(texts) == 1000 and ours.shape == reference.shape == (1000, 384)
    assert np.abs(ours - reference).max() <= ATOL


def test_settings_match(minilm: DenseEncoder, st_model) -> None:
    assert minilm.max_seq_length == st_model.max_seq_length == 256
    assert minilm.get_sentence_embedding_dimension() == st_model.get_sentence_embedding_dimension()
    assert minilm.similarity_fn_name.value == st_model.similarity_fn_name


def test_token_embeddings_match(minilm: DenseEncoder, st_model, texts) -> None:
    subset = texts[::10]
    ref = st_model.encode(subset, output_value="token_embeddings")
    got = minilm.encode(subset, output_value="token_embeddings")
    assert [tuple(r.shape) for r in ref] == [tuple(g.shape) for g in got]
    assert max(float(np.abs(r.cpu().numpy() - g.numpy()).max()) for r, g in zip(ref, got, strict=True)) <= ATOL


def test_prompts_match(minilm: DenseEncoder, st_model, texts) -> None:
    subset = texts[:200]
    ref = st_model.encode(subset, prompt="Represent this sentence for searching: ")
    got = minilm.encode(subset, prompt="Represent this sentence for searching: ")
    assert np.abs(ref - got).max() <= ATOL


@pytest.mark.parametrize("dim", [64, 128, 256])
def test_truncate_dim_matches(minilm: DenseEncoder, st_model, texts, dim: int) -> None:
    subset = texts[:300]
    for normalize in (False, True):
        ref = st_model.encode(subset, truncate_dim=dim, normalize_embeddings=normalize)
        got = minilm.encode(subset, truncate_dim=dim, normalize_embeddings=normalize)
        assert got.shape == (300, dim) and np.abs(ref - got).max() <= ATOL


@pytest.mark.parametrize("precision", ["int8", "uint8", "binary", "ubinary"])
def test_each_precision_matches(minilm: DenseEncoder, st_model, texts, reference, ours, precision: str) -> None:
    # sentence-transformers calibrates on the batch it encodes; give ours the same ranges explicitly.
    ranges = calibration_ranges(reference)
    ref = st_model.encode(texts, precision=precision)
    got = minilm.encode(texts, precision=precision, calibration=ranges)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    mismatch = got.astype(np.int16) != ref.astype(np.int16)
    if precision in ("binary", "ubinary"):
        # a bit may differ only where the float sits within ATOL of zero
        bits = np.unpackbits((got ^ ref).view(np.uint8), axis=1)[:, :384]
        assert np.all(np.abs(reference[bits.astype(bool)]) <= ATOL)
        return
    # floats agree to ATOL (batch composition differs), so a code may move by one bucket only where
    # the float lies within ATOL of a bucket boundary
    steps = (ranges[1] - ranges[0]) / 255
    position = (reference - ranges[0]) / steps
    near_boundary = np.abs(position - np.round(position)) <= ATOL / steps
    assert np.abs(got.astype(np.int16) - ref.astype(np.int16)).max() <= 1
    assert np.all(near_boundary[mismatch]), f"{int((mismatch & ~near_boundary).sum())} codes differ away from a boundary"
    assert mismatch.mean() < 1e-3


def test_saved_folder_loads_in_sentence_transformers(minilm: DenseEncoder, texts, reference, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    minilm.save(tmp_path / "saved")
    assert not (tmp_path / "saved" / "pytorch_model.bin").exists()
    st_loaded = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    assert np.abs(st_loaded.encode(texts[:300]) - reference[:300]).max() <= ATOL
    ours_loaded = DenseEncoder(tmp_path / "saved", device="cpu")
    assert np.abs(ours_loaded.encode(texts[:300]) - reference[:300]).max() <= ATOL


def test_tiny_models_match_sentence_transformers(tiny_bert_dir: Path, tiny_mpnet_dir: Path, texts) -> None:
    from sentence_transformers import SentenceTransformer

    for folder in (tiny_bert_dir, tiny_mpnet_dir):
        st = SentenceTransformer(str(folder), device="cpu")
        ours = DenseEncoder(folder, device="cpu")
        assert np.abs(st.encode(texts[:200]) - ours.encode(texts[:200])).max() <= ATOL
        assert st.similarity_fn_name == ours.similarity_fn_name.value
    st = SentenceTransformer(str(tiny_bert_dir), device="cpu")
    ours = DenseEncoder(tiny_bert_dir, device="cpu")
    np.testing.assert_allclose(st.encode_query(texts[:20]), ours.encode_query(texts[:20]), atol=ATOL)
    np.testing.assert_allclose(st.encode_document(texts[:20]), ours.encode_document(texts[:20]), atol=ATOL)
