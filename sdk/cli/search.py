"""``sdk search "QUERY" --store URL --collection NAME``: look at what a sync (or a pipeline) stored.

The encoders default to the models that built the collection's live version when ``sdk sync``
recorded them in its ledger, else to the packaged defaults, so a search after a sync needs no
model flags; the collection's stored encoder fingerprint is checked either way.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from sdk.core.errors import InputError

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "search", help="search a collection (hybrid where the store allows, reranked if asked)",
        description="Run the store's native hybrid query with the encoders the sync recorded, then rerank locally "
                    "when --reranker is given.",
        epilog="examples:\n"
               "  sdk search \"how do I pin a version?\" --store qdrant+local:./kb --collection notes\n"
               "  sdk search \"pin a version\" --store postgresql://app@db/sdk --collection docs --reranker ./my-ce --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("query", help="the query text")
    p.add_argument("--store", required=True, help="database URL, e.g. qdrant+local:./sdk_data")
    p.add_argument("--collection", required=True, help="collection or alias to search")
    p.add_argument("--limit", type=int, default=5, help="hits to show (default: 5)")
    p.add_argument("--reranker", default=None, help="cross-encoder folder or hub id to rerank with")
    p.add_argument("--dense-model", default=None, help="dense model (default: the one the sync recorded)")
    lexical = p.add_mutually_exclusive_group()
    lexical.add_argument("--sparse-model", default=None, help="SPLADE model (default: the one the sync recorded)")
    lexical.add_argument("--no-sparse", action="store_true", help="query the dense leg only")
    p.add_argument("--ledger", default=None, help="the sync ledger, when not in the default place")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    p.add_argument("--feedback", default=None, help="feedback store (SQLite path or URL): record this search and "
                   "serve what sdk learn promoted for the collection")
    p.add_argument("--backend", default=None, choices=["torch", "onnx", "openvino", "auto"],
                   help="what runs the encoders (default: what the sync that built the collection used)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run)


def _recorded_models(args: argparse.Namespace) -> dict[str, Any]:
    """The models the sync ledger recorded for the live version (empty when there is none)."""
    from sdk.sync.ledger import Ledger, ledger_dir, ledger_key

    key = ledger_key(args.store, args.collection)
    if args.ledger is None and not (ledger_dir() / f"{key}.sqlite").is_file():
        return {}
    try:
        with Ledger.open(args.ledger, key=key) as book:
            return dict((book.get("live") or {}).get("models") or {})
    except Exception:  # noqa: BLE001 - no readable ledger: fall back to the defaults
        return {}


def run(args: argparse.Namespace) -> int:
    from sdk.core.registry import connect
    from sdk.encoders.cross_encoder import CrossEncoder
    from sdk.retrieval.pipeline import RetrievalPipeline
    from sdk.sync import load_encoders

    if args.limit < 1:
        raise InputError(f"--limit must be >= 1, got {args.limit}")
    recorded = _recorded_models(args)
    adapter = connect(args.store)
    try:
        spec = adapter.describe(args.collection)
        dense_model = args.dense_model or recorded.get("dense")
        if args.no_sparse or not spec.sparse:
            sparse_model: Any = False
        else:
            sparse_model = args.sparse_model or recorded.get("sparse")
        backends = ({"dense": args.backend, "sparse": args.backend} if args.backend else
                    {"dense": recorded.get("dense_backend") if not args.dense_model else None,
                     "sparse": recorded.get("sparse_backend") if not args.sparse_model else None})
        dense, sparse, _ = load_encoders(adapter, dense_model, sparse_model, args.device, backends)
        reranker = CrossEncoder(args.reranker, device=args.device) if args.reranker else None
        pipeline = RetrievalPipeline(dense, sparse, store=adapter, collection=args.collection, reranker=reranker,
                                     limit=args.limit, feedback=args.feedback, refresh_seconds=0,
                                     device=args.device)
        try:
            result = pipeline.search(args.query, limit=args.limit)
        finally:
            pipeline.close()
    finally:
        adapter.close()
    hits = [{"id": h.id, "score": h.score, "text": h.text, "metadata": dict(h.metadata),
             "scores": dict(h.scores_by_stage)} for h in result]
    if args.json:
        print(json.dumps({"query": args.query, "collection": spec.name, "search_id": result.search_id,
                          "hits": hits, "timings": result.timings}, default=str))
        return 0
    print(f"{len(hits)} hits for {args.query!r} in {args.collection} ({spec.name}), "
          f"{1000 * result.timings.get('total', 0.0):.0f} ms, search id {result.search_id}")
    for rank, hit in enumerate(hits, start=1):
        text = " ".join((hit["text"] or "").split())
        print(f"{rank:>2}. {hit['score']:.4f}  {hit['id']}\n    {text[:160]}{'...' if len(text) > 160 else ''}")
    return 0
