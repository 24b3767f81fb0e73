"""``Retriever``: the LangChain retriever surface (``invoke`` / ``ainvoke`` / ``batch``) without LangChain.

A RAG backend that does not use LangChain gets the same calls and the same document shape
(``page_content`` + ``metadata``, with the hit's id, score, per-stage scores and the search's
``search_id`` in the metadata: hand it back to ``Retriever.feedback`` / ``RetrievalPipeline.feedback``).
``as_langchain()`` wraps it in a real ``langchain_core.retrievers.BaseRetriever`` (the
``langchain`` extra) for use inside LangChain runnable chains.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sdk.core.errors import ConfigError, InputError
from sdk.core.types import And, Filter, Hit

__all__ = ["RetrievedDocument", "Retriever", "documents_of", "hit_metadata"]


@dataclass(frozen=True)
class RetrievedDocument:
    """A retrieved text in LangChain's shape: ``page_content`` and ``metadata``."""

    page_content: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None


def hit_metadata(hit: Hit, search_id: str | None = None) -> dict[str, Any]:
    """The document's own metadata plus ``id``, ``score`` and ``scores_by_stage`` of the hit, and the
    ``search_id`` of the search that returned it (when given).

    The SDK's keys win over a user key of the same name, so a caller always finds the score where
    LangChain users look for it.
    """
    out = {**dict(hit.metadata), "id": hit.id, "score": hit.score, "scores_by_stage": dict(hit.scores_by_stage)}
    if search_id is not None:
        out["search_id"] = search_id
    return out


def documents_of(hits: Sequence[Hit]) -> list[tuple[str, dict[str, Any], str]]:
    """``(text, metadata, id)`` per hit, the metadata carrying the result's ``search_id`` when it has one."""
    search_id = getattr(hits, "search_id", None)
    return [(h.text or "", hit_metadata(h, search_id), h.id) for h in hits]


def _is_k(k: Any) -> bool:
    return isinstance(k, int) and not isinstance(k, bool) and k >= 1


class Retriever:
    """Retrieve documents for a query string from a ``RetrievalPipeline``.

    ``k`` overrides the pipeline's limit and ``filter`` its filter for this retriever only, so one
    pipeline can back several retrievers (per tenant, per source). Each call may pass its own
    ``k=`` (``invoke(query, k=1)``, as LangChain retrievers take it) and ``filter=``, which narrows
    the retriever's filter (both must hold) and never widens it, so a per-tenant filter stays.
    """

    def __init__(self, pipeline: Any, *, k: int | None = None, filter: Filter | None = None) -> None:
        if not callable(getattr(pipeline, "search", None)):
            raise ConfigError(f"Retriever needs a RetrievalPipeline, got {type(pipeline).__name__}")
        if k is not None and not _is_k(k):
            raise ConfigError(f"k must be a positive integer or None, got {k!r}")
        self.pipeline, self.k, self.filter = pipeline, k, filter

    def call_options(self, overrides: Mapping[str, Any]) -> tuple[int | None, Filter | None]:
        """``(k, filter)`` for one call: the call's ``k`` else the retriever's; the call's ``filter``
        joined to the retriever's with ``And``. Unknown keywords are refused rather than ignored."""
        unknown = sorted(set(overrides) - {"k", "filter"})
        if unknown:
            raise InputError(f"a retriever call takes only k= and filter= keywords, got {unknown}; "
                             "set other options on the RetrievalPipeline")
        k = overrides.get("k")
        if k is not None and not _is_k(k):
            raise InputError(f"k must be a positive integer, got {k!r}")
        extra = overrides.get("filter")
        filter = extra if self.filter is None else self.filter if extra is None else And((self.filter, extra))
        return (k or self.k), filter

    @staticmethod
    def _documents(hits: Sequence[Hit]) -> list[RetrievedDocument]:
        return [RetrievedDocument(text, meta, doc_id) for text, meta, doc_id in documents_of(hits)]

    @staticmethod
    def query_text(input: Any) -> str:
        # LangChain passes the query string; a mapping with "query"/"input" is accepted for chains.
        if isinstance(input, Mapping):
            input = input.get("query", input.get("input"))
        if not isinstance(input, str) or not input.strip():
            raise InputError("a retriever is invoked with a non-empty query string")
        return input

    def hits(self, query: str, **options: Any) -> list[Hit]:
        """The raw ``Hit`` list (with stage scores and the pipeline's timings); ``k=`` / ``filter=``
        as in ``call_options``."""
        k, filter = self.call_options(options)
        return self.pipeline.search(self.query_text(query), limit=k, filter=filter)

    async def ahits(self, query: str, **options: Any) -> list[Hit]:
        """``hits`` without blocking the event loop (the pipeline's ``asearch``)."""
        k, filter = self.call_options(options)
        return await self.pipeline.asearch(self.query_text(query), limit=k, filter=filter)

    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> list[RetrievedDocument]:
        """Documents for one query, best first; ``k=`` / ``filter=`` apply to this call only."""
        return self._documents(self.hits(input, **kwargs))

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> list[RetrievedDocument]:
        """``invoke`` without blocking the event loop (the pipeline's ``asearch``)."""
        return self._documents(await self.ahits(input, **kwargs))

    def batch(self, inputs: Sequence[Any], config: Any = None, **kwargs: Any) -> list[list[RetrievedDocument]]:
        """Documents for many queries; encoders run once over the whole batch."""
        k, filter = self.call_options(kwargs)
        results = self.pipeline.search_batch([self.query_text(q) for q in inputs], limit=k, filter=filter)
        return [self._documents(r) for r in results]

    async def abatch(self, inputs: Sequence[Any], config: Any = None,
                     **kwargs: Any) -> list[list[RetrievedDocument]]:
        """``batch`` in a worker thread."""
        return await asyncio.to_thread(self.batch, inputs, **kwargs)

    def feedback(self, search_id: str, doc_id: str, signal: str | float, value: float | None = None) -> Any:
        """``RetrievalPipeline.feedback``: ``search_id`` and ``doc_id`` are in each document's metadata."""
        return self.pipeline.feedback(search_id, doc_id, signal, value)

    def as_langchain(self, **kwargs: Any) -> Any:
        """This retriever as a ``langchain_core`` ``BaseRetriever`` (needs the ``langchain`` extra)."""
        from sdk.retrieval.langchain import LangChainRetriever

        return LangChainRetriever(retriever=self, **kwargs)
