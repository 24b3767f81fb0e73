"""A real ``langchain_core.retrievers.BaseRetriever`` over ``sdk.Retriever`` (the ``langchain`` extra).

Imported only when asked for (``Retriever.as_langchain()`` or importing this module), so the SDK
works without LangChain. Subclassing ``BaseRetriever`` gives callbacks, tracing, ``with_config``
and composition with ``|`` in runnable chains for free; the async path goes through the
pipeline's ``asearch`` instead of LangChain's default executor hop.
"""

from __future__ import annotations

from typing import Any

from sdk.core.errors import MissingDependencyError

try:
    from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import Document as LCDocument
    from langchain_core.retrievers import BaseRetriever
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError(exc.name or "langchain-core", "langchain") from exc

from sdk.retrieval.retriever import Retriever, documents_of

__all__ = ["LangChainRetriever"]


class LangChainRetriever(BaseRetriever):
    """LangChain retriever backed by an ``sdk.Retriever``; documents carry id, score, stage scores and
    the ``search_id`` to give back with ``retriever.feedback(search_id, doc_id, signal)``."""

    retriever: Any

    def model_post_init(self, context: Any) -> None:
        if not isinstance(self.retriever, Retriever):
            raise TypeError(f"retriever must be an sdk.Retriever, got {type(self.retriever).__name__}")

    @staticmethod
    def _convert(hits: Any) -> list[LCDocument]:
        return [LCDocument(page_content=text, metadata=meta, id=doc_id) for text, meta, doc_id in documents_of(hits)]

    def feedback(self, search_id: str, doc_id: str, signal: str | float, value: float | None = None) -> Any:
        """Record a user signal on a returned document (``RetrievalPipeline.feedback``)."""
        return self.retriever.feedback(search_id, doc_id, signal, value)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[LCDocument]:
        return self._convert(self.retriever.hits(query))

    async def _aget_relevant_documents(self, query: str, *,
                                       run_manager: AsyncCallbackManagerForRetrieverRun) -> list[LCDocument]:
        r = self.retriever
        return self._convert(await r.pipeline.asearch(r.query_text(query), limit=r.k, filter=r.filter))
