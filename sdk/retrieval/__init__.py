"""Retrieval on top of the adapters: ``RetrievalPipeline`` (encode -> native hybrid query -> rerank)
and ``Retriever`` (LangChain-style), with client-side fusion only as a flagged fallback."""

from sdk.retrieval.pipeline import RetrievalPipeline, SearchResult
from sdk.retrieval.retriever import RetrievedDocument, Retriever

__all__ = ["RetrievalPipeline", "RetrievedDocument", "Retriever", "SearchResult"]
