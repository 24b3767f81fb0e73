"""``sdk eval``: index a BEIR dataset into a fresh collection, run its queries, print the metrics.

    sdk eval --dataset ../shared/data/pyfaq --store qdrant+local::memory: --mode hybrid
    sdk eval --dataset DIR --store postgresql://postgres@127.0.0.1:5432/sdk --reranker ./my-ce --json

The collection gets a unique name and is dropped afterwards (``--keep`` keeps it and prints its
name), so an evaluation never touches a user's collection. On a store without user sparse
vectors but with a BM25 text leg (Weaviate), ``sparse`` means that BM25 and ``hybrid`` fuses it
with the dense leg; the output says so.

``--evaluator ir`` and ``--evaluator rerank`` score a model folder directly, without a database,
with the same evaluators training uses (``sdk.evaluation``):

    sdk eval --evaluator ir --dataset DIR --mode dense --dense-model ./my-model --json
    sdk eval --evaluator rerank --dataset DIR --reranker ./my-ce --rerank-top 50

``ir`` evaluates the dense model, the sparse model or both (``--mode``); ``rerank`` reranks the
top ``--rerank-top`` hits of the dense (``--mode sparse``: sparse) model and also reports the
first stage's figures (``base_*``). ``--max-corpus`` keeps the relevant documents plus others up
to that many.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

from sdk.core.errors import CapabilityError, InputError

__all__ = ["register", "run"]

MODES = ("dense", "sparse", "hybrid")
EVALUATORS = ("pipeline", "ir", "rerank")
RETRIEVE = 100  # hits per query: Recall@100 needs them


def register(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate retrieval on a BEIR dataset against a database (or a model directly)")
    p.add_argument("--dataset", required=True, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    p.add_argument("--store", default=None,
                   help="database URL, e.g. qdrant+local::memory: or postgresql://... (needed by --evaluator pipeline)")
    p.add_argument("--evaluator", default="pipeline", choices=EVALUATORS,
                   help="pipeline: index into --store and search it (default); ir / rerank: score the models "
                        "directly, no database")
    p.add_argument("--split", default="test", help="qrels split to evaluate (default: test)")
    p.add_argument("--mode", default="hybrid", choices=MODES, help="which legs to query (default: hybrid)")
    p.add_argument("--reranker", default=None, help="cross-encoder folder to rerank with")
    p.add_argument("--rerank-top", type=int, default=100, help="hits the reranker rescores (default: 100)")
    p.add_argument("--dense-model", default=None, help="dense model folder or hub id (default: all-MiniLM-L6-v2)")
    p.add_argument("--sparse-model", default=None, help="SPLADE folder or hub id (default: packaged SPLADE-tiny)")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    p.add_argument("--max-queries", type=int, default=None, help="evaluate only the first N queries")
    p.add_argument("--max-corpus", type=int, default=None,
                   help="ir / rerank: keep the relevant documents plus others up to N documents")
    p.add_argument("--batch-size", type=int, default=32, help="encoder batch size")
    p.add_argument("--client-fusion", action="store_true",
                   help="allow client-side fusion when the store has no native form of the fusion")
    p.add_argument("--keep", action="store_true", help="keep the collection instead of dropping it")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run)


def _encoders(args: argparse.Namespace, caps: Any) -> tuple[Any, Any, bool]:
    """(dense, sparse, text_leg) to query with, for the mode on this store."""
    from sdk.encoders.dense import DenseEncoder
    from sdk.encoders.sparse import SparseEncoder

    lexical = args.mode in ("sparse", "hybrid")
    text_leg = lexical and not caps.sparse and caps.text_leg
    if lexical and not caps.sparse and not caps.text_leg:
        raise CapabilityError(f"{caps.name} has neither sparse vectors nor a BM25 leg; use --mode dense")
    dense = DenseEncoder(args.dense_model, device=args.device) if args.mode != "sparse" or text_leg else None
    sparse = SparseEncoder(args.sparse_model, device=args.device) if lexical and caps.sparse else None
    return dense, sparse, text_leg


def run(args: argparse.Namespace) -> int:
    from sdk.encoders.cross_encoder import CrossEncoder
    from sdk.evaluation import RetrievalEvaluator, index_dataset, load_beir
    from sdk.retrieval.pipeline import RetrievalPipeline, resolve_store

    if args.rerank_top < 1:
        raise InputError(f"--rerank-top must be >= 1, got {args.rerank_top}")
    if args.evaluator != "pipeline":
        return _run_model_evaluator(args)
    if not args.store:
        raise InputError("--store is required (or use --evaluator ir / rerank to evaluate a model without a database)")
    dataset = load_beir(args.dataset, args.split)
    if not dataset.queries:
        raise InputError(f"{args.dataset} has no queries with judgements in split {args.split!r}")
    adapter, _ = resolve_store(args.store)
    collection = f"eval_{args.mode}_{uuid.uuid4().hex[:10]}"
    try:
        caps = adapter.capabilities
        dense, sparse, text_leg = _encoders(args, caps)
        reranker = CrossEncoder(args.reranker, device=args.device) if args.reranker else None
        common = {"store": adapter, "collection": collection, "batch_size": args.batch_size}
        # Weaviate's BM25-only "sparse" mode still needs a vector field to create the collection.
        indexer = RetrievalPipeline(dense, sparse, **common)
        t0 = time.perf_counter()
        n_docs = index_dataset(indexer, dataset)
        index_s = time.perf_counter() - t0
        query_dense = None if args.mode == "sparse" else dense
        searcher = RetrievalPipeline(query_dense, sparse, text_leg=text_leg, reranker=reranker,
                                     rerank_top=args.rerank_top, limit=RETRIEVE,
                                     client_fusion=args.client_fusion, **common)
        result = RetrievalEvaluator(dataset, limit=RETRIEVE, max_queries=args.max_queries)(searcher)
        report = {
            "dataset": args.dataset, "split": args.split, "store": caps.name, "collection": collection,
            "mode": args.mode, "legs": list(searcher.legs), "fusion": searcher.fusion_mode,
            "reranker": args.reranker, "rerank_top": args.rerank_top if reranker is not None else None,
            "documents": n_docs, "index_s": round(index_s, 2), "queries": result.queries,
            "ndcg@10": result.metrics["ndcg@10"], "mrr@10": result.metrics["mrr@10"],
            "recall@100": result.metrics["recall@100"], "map@100": result.metrics["map@100"],
            "latency_p50_ms": result.latency["p50_ms"], "latency_p95_ms": result.latency["p95_ms"],
            "kept": bool(args.keep),
        }
    finally:
        if not args.keep:
            adapter.drop(collection)
        adapter.close()
    _print(report, args.json)
    return 0


def _run_model_evaluator(args: argparse.Namespace) -> int:
    """``--evaluator ir`` / ``rerank``: the training-time evaluators on a BEIR split, no database."""
    from sdk.encoders.cross_encoder import CrossEncoder
    from sdk.encoders.dense import DenseEncoder
    from sdk.encoders.sparse import SparseEncoder
    from sdk.evaluation import ir_evaluator_from_beir, reranking_evaluator_from_beir

    subset = {"max_corpus": args.max_corpus, "max_queries": args.max_queries}
    t0 = time.perf_counter()
    metrics: dict[str, float] = {}
    primary: dict[str, str] = {}
    if args.evaluator == "ir":
        legs = ("dense", "sparse") if args.mode == "hybrid" else (args.mode,)
        for leg in legs:
            model = (DenseEncoder(args.dense_model, device=args.device) if leg == "dense"
                     else SparseEncoder(args.sparse_model, device=args.device))
            evaluator = ir_evaluator_from_beir(args.dataset, args.split, name=leg, batch_size=args.batch_size,
                                               write_csv=False, **subset)
            metrics.update(evaluator(model))
            primary[leg] = str(evaluator.primary_metric)
    else:
        if not args.reranker:
            raise InputError("--evaluator rerank needs --reranker (a cross-encoder folder or hub id)")
        leg = "sparse" if args.mode == "sparse" else "dense"
        retriever = (SparseEncoder(args.sparse_model, device=args.device) if leg == "sparse"
                     else DenseEncoder(args.dense_model, device=args.device))
        evaluator = reranking_evaluator_from_beir(args.dataset, args.split, retriever, top_k=args.rerank_top, name="",
                                                  encode_batch_size=args.batch_size, write_csv=False, **subset)
        metrics = evaluator(CrossEncoder(args.reranker, device=args.device))
        primary[leg] = str(evaluator.primary_metric)
    report = {
        "dataset": args.dataset, "split": args.split, "evaluator": args.evaluator, "mode": args.mode,
        "reranker": args.reranker if args.evaluator == "rerank" else None,
        "rerank_top": args.rerank_top if args.evaluator == "rerank" else None,
        "queries": len(evaluator.query_ids) if args.evaluator == "ir" else len(evaluator.samples),
        "documents": len(evaluator.corpus) if args.evaluator == "ir" else None,
        "primary_metrics": primary, "metrics": metrics, "seconds": round(time.perf_counter() - t0, 2),
    }
    if args.json:
        print(json.dumps(report))
        return 0
    what = f"reranking the {leg} top {args.rerank_top} with {args.reranker}" if args.evaluator == "rerank" \
        else f"{' + '.join(primary)} model{'s' if len(primary) > 1 else ''}"
    print(f"{args.dataset} ({args.split}): {report['queries']} queries, {what}, {report['seconds']} s")
    for key, value in metrics.items():
        mark = " *" if key in primary.values() else ""
        print(f"  {key:<28} {value:.4f}{mark}")
    return 0


def _print(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report))
        return
    legs = " + ".join("BM25 text" if leg == "text" else leg for leg in report["legs"])
    print(f"{report['dataset']} ({report['split']}): {report['documents']} documents indexed into "
          f"{report['store']} in {report['index_s']} s")
    rerank = f", reranked top {report['rerank_top']} with {report['reranker']}" if report["reranker"] else ""
    print(f"mode {report['mode']} ({legs}; fusion {report['fusion']}){rerank}; {report['queries']} queries")
    for key in ("ndcg@10", "mrr@10", "recall@100", "map@100"):
        print(f"  {key:<11} {report[key]:.4f}")
    print(f"  latency     p50 {report['latency_p50_ms']:.1f} ms, p95 {report['latency_p95_ms']:.1f} ms")
    print(f"collection {report['collection']} " + ("kept" if report["kept"] else "dropped (--keep keeps it)"))
