"""Retrieval on top of encoders and stores: ``RetrievalPipeline`` (encode -> native hybrid query ->
rerank) and ``Retriever`` (LangChain-style), with client-side fusion only as a flagged fallback.

A store is anything that speaks ``sdk.core.store.VectorStore`` (every ``adapters`` adapter does) or a
URL, resolved by ``sdk.core.registry``; this package never imports ``adapters`` itself."""

from sdk.retrieval.pipeline import RetrievalPipeline, SearchResult
from sdk.retrieval.retriever import RetrievedDocument, Retriever

__all__ = ["RetrievalPipeline", "RetrievedDocument", "Retriever", "SearchResult"]
