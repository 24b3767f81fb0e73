"""Hybrid search with local reranking against a real database.

    SDK_STORE=postgresql://postgres@127.0.0.1:5432/sdk python examples/hybrid_rerank.py
    SDK_STORE='weaviate://127.0.0.1:8080?grpc=50051' python examples/hybrid_rerank.py
    SDK_STORE=milvus+lite:./kb.db SDK_RERANKER=./my-reranker python examples/hybrid_rerank.py

``SDK_STORE`` is any URL of docs/CONNECTING.md (default: embedded Qdrant in a temporary folder).
The store fuses the dense and keyword legs natively (Weaviate's keyword leg is its own BM25, so
no sparse encoder there), then the cross-encoder ``SDK_RERANKER`` (a folder or hub id; default
``cross-encoder/ms-marco-MiniLM-L6-v2`` from the hub) rescores the top 20 on this machine. Every
hit keeps each stage's score.
"""

from __future__ import annotations

import os
import tempfile
import uuid

from sdk import CrossEncoder, DenseEncoder, RetrievalPipeline, SparseEncoder, connect

try:  # run as a script or imported by the tests
    from rag_quickstart import load_sample
except ImportError:  # pragma: no cover
    from examples.rag_quickstart import load_sample

QUERY = "why does Python use indentation for grouping statements?"
DEFAULT_RERANKER = "cross-encoder/ms-marco-MiniLM-L6-v2"


def main(store_url: str | None = None, reranker: str | None = None) -> list[str]:
    with tempfile.TemporaryDirectory() as folder:
        store = connect(store_url or os.environ.get("SDK_STORE") or f"qdrant+local:{folder}/kb")
        collection = f"example_{uuid.uuid4().hex[:8]}"
        keyword = {"sparse_encoder": SparseEncoder()} if store.capabilities.sparse else {"text_leg": True}
        pipeline = RetrievalPipeline(DenseEncoder(), **keyword, store=store, collection=collection,
                                     reranker=CrossEncoder(reranker or os.environ.get("SDK_RERANKER") or DEFAULT_RERANKER),
                                     rerank_top=20, limit=5)
        try:
            pipeline.add_documents(load_sample())
            hits = pipeline.search(QUERY)
            for hit in hits:
                stages = ", ".join(f"{k} {v:.3f}" for k, v in hit.scores_by_stage.items())
                print(f"{hit.id}  {stages}  {(hit.text or '')[:70]!r}")
        finally:
            store.drop(collection)
            pipeline.close()
            store.close()
    return [h.id for h in hits]


if __name__ == "__main__":
    main()
