"""LangChain on top of the SDK (the ``langchain`` extra): a retriever, document conversion, embeddings.

Imported only when asked for (``Retriever.as_langchain()``, ``sdk.ForgeEmbeddings`` or importing this
module), so the SDK works without LangChain.

- ``LangChainRetriever`` is a real ``langchain_core.retrievers.BaseRetriever`` over ``sdk.Retriever``:
  callbacks, tracing, ``with_config`` and ``|`` composition come for free; ``invoke(query, k=1)``
  and ``filter=`` apply per call; the async path goes through the pipeline's ``asearch``.
  ``add_documents`` takes LangChain ``Document`` values and returns their ids, like a LangChain
  vector store.
- ``from_langchain`` turns LangChain documents into ``sdk.Document`` values for
  ``RetrievalPipeline.add_documents``. A document without an id gets ``content_id``: ``"lc-"`` and
  the first 32 hex digits of the SHA-256 of its text and metadata. The id is deterministic, unlike
  the random uuid4 of LangChain's own vector stores, so adding the same documents twice overwrites
  them instead of storing duplicates (the SDK's storage ids are derived from document ids).
- ``ForgeEmbeddings`` is a ``langchain_core.embeddings.Embeddings`` over a ``DenseEncoder``, so any
  LangChain vector store can use the SDK's local models with their query and document prompts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sdk.core.errors import ConfigError, InputError, MissingDependencyError
from sdk.core.types import Document

try:
    from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import Document as LCDocument
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError(exc.name or "langchain-core", "langchain") from exc

from sdk.retrieval.retriever import Retriever, documents_of

__all__ = ["ForgeEmbeddings", "LangChainRetriever", "content_id", "from_langchain"]

# Keywords LangChain's BaseRetriever.invoke forwards that are its own business, not a search option.
_RUNNABLE_KWARGS = frozenset({"verbose"})


def content_id(text: str, metadata: Mapping[str, Any] | None = None) -> str:
    """The id given to a LangChain document that has none: ``"lc-"`` + 32 hex digits of the SHA-256
    of its text and metadata (keys sorted), so the same document always gets the same id."""
    canonical = json.dumps([text, dict(metadata or {})], sort_keys=True, ensure_ascii=False, default=repr)
    return "lc-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def from_langchain(documents: Iterable[Any], ids: Sequence[str] | None = None) -> list[Document]:
    """``sdk.Document`` values from LangChain documents (anything with ``page_content`` and
    ``metadata``, and optionally ``id``).

    The id is ``ids[i]`` when ``ids`` is given, else the document's own ``id``, else
    ``content_id(text, metadata)`` (an empty id counts as none, as in LangChain's vector stores).
    The whole input is checked before anything is returned, so a bad document writes nothing.
    """
    docs = list(documents)
    if ids is not None:
        ids = list(ids)
        if len(ids) != len(docs):
            raise InputError(f"ids has {len(ids)} entries for {len(docs)} documents; pass one id per document")
    out: list[Document] = []
    for i, doc in enumerate(docs):
        text, metadata = getattr(doc, "page_content", None), getattr(doc, "metadata", None)
        if not isinstance(text, str) or not isinstance(metadata, Mapping):
            raise InputError(
                f"documents[{i}] is {type(doc).__name__}, not a LangChain Document (page_content: str, "
                "metadata: dict); build langchain_core.documents.Document(page_content=..., metadata=...)"
            )
        doc_id = ids[i] if ids is not None else getattr(doc, "id", None)
        if doc_id is not None and not isinstance(doc_id, str):
            raise InputError(f"documents[{i}] has id {doc_id!r} ({type(doc_id).__name__}); ids must be strings")
        out.append(Document(doc_id or content_id(text, metadata), text, dict(metadata)))
    return out


class LangChainRetriever(BaseRetriever):
    """LangChain retriever backed by an ``sdk.Retriever``; documents carry id, score, stage scores and
    the ``search_id`` to give back with ``retriever.feedback(search_id, doc_id, signal)``.

    ``k`` (when set) overrides the wrapped retriever's ``k``; ``invoke(query, k=..., filter=...)``
    overrides both for one call (``Retriever.call_options``).
    """

    retriever: Any
    k: int | None = None

    def model_post_init(self, context: Any) -> None:
        if not isinstance(self.retriever, Retriever):
            raise TypeError(f"retriever must be an sdk.Retriever, got {type(self.retriever).__name__}")
        if self.k is not None and (isinstance(self.k, bool) or self.k < 1):
            raise ConfigError(f"k must be a positive integer or None, got {self.k!r}")

    def _options(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        options = {"k": self.k} if self.k is not None else {}
        options.update((key, value) for key, value in kwargs.items() if key not in _RUNNABLE_KWARGS)
        return options

    @staticmethod
    def _convert(hits: Any) -> list[LCDocument]:
        return [LCDocument(page_content=text, metadata=meta, id=doc_id) for text, meta, doc_id in documents_of(hits)]

    def feedback(self, search_id: str, doc_id: str, signal: str | float, value: float | None = None) -> Any:
        """Record a user signal on a returned document (``RetrievalPipeline.feedback``)."""
        return self.retriever.feedback(search_id, doc_id, signal, value)

    def add_documents(self, documents: Iterable[Any], *, ids: Sequence[str] | None = None,
                      **kwargs: Any) -> list[str]:
        """Index LangChain documents through the pipeline (ids as in ``from_langchain``); returns the
        ids in input order. ``kwargs`` go to ``RetrievalPipeline.add_documents`` (``chunk_size``, ...)."""
        docs = from_langchain(documents, ids)
        self.retriever.pipeline.add_documents(docs, **kwargs)
        return [d.id for d in docs]

    async def aadd_documents(self, documents: Iterable[Any], *, ids: Sequence[str] | None = None,
                             **kwargs: Any) -> list[str]:
        """``add_documents`` in a worker thread, so encoding does not block the event loop."""
        return await asyncio.to_thread(self.add_documents, list(documents), ids=ids, **kwargs)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **kwargs: Any) -> list[LCDocument]:
        return self._convert(self.retriever.hits(query, **self._options(kwargs)))

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun,
                                       **kwargs: Any) -> list[LCDocument]:
        return self._convert(await self.retriever.ahits(query, **self._options(kwargs)))


class ForgeEmbeddings(Embeddings):
    """LangChain ``Embeddings`` over a ``DenseEncoder``: documents are encoded with the model's
    document prompt (``encode_document``), queries with its query prompt (``encode_query``), as the
    SDK's own pipeline does, so vectors stored through LangChain match the SDK's.

    Pass a loaded ``encoder`` or let one be built from ``model_name_or_path`` (default: the packaged
    all-MiniLM-L6-v2) with ``device`` and any other ``DenseEncoder`` keyword (``truncate_dim``, ...).
    Vectors come out as the model defines them (a model with a ``Normalize`` module gives unit
    vectors); ``normalize=True`` L2-normalizes every vector on top, for stores that compare by dot.
    """

    def __init__(self, encoder: Any = None, *, model_name_or_path: str | Path | None = None,
                 batch_size: int = 32, normalize: bool = False, device: str | None = None,
                 **encoder_kwargs: Any) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if encoder is None:
            from sdk.encoders.dense import DenseEncoder

            encoder = DenseEncoder(model_name_or_path, device=device, **encoder_kwargs)
        elif model_name_or_path is not None or encoder_kwargs:
            raise ConfigError("pass either a loaded encoder or model_name_or_path (and DenseEncoder options), "
                              "not both")
        from sdk.encoders.sparse import SparseEncoder

        needed = ("encode_query", "encode_document", "get_sentence_embedding_dimension")
        if isinstance(encoder, SparseEncoder) or not all(callable(getattr(encoder, n, None)) for n in needed):
            raise ConfigError(f"ForgeEmbeddings needs a DenseEncoder, got {type(encoder).__name__}; "
                              "LangChain embeddings are dense float vectors")
        self.encoder, self.batch_size, self.normalize = encoder, batch_size, bool(normalize)

    def _vectors(self, encode: Any, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        out = encode(texts, batch_size=self.batch_size, normalize_embeddings=self.normalize)
        return np.asarray(out, dtype=np.float32).reshape(len(texts), -1).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, with the document prompt."""
        if isinstance(texts, str):
            raise InputError("embed_documents takes a list of strings, got one string; use embed_query for a query "
                             "or wrap it in a list")
        return self._vectors(self.encoder.encode_document, list(texts))

    def embed_query(self, text: str) -> list[float]:
        """The query's vector, with the query prompt."""
        if not isinstance(text, str):
            raise InputError(f"embed_query takes one string, got {type(text).__name__}; use embed_documents "
                             "for a list")
        return self._vectors(self.encoder.encode_query, [text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """``embed_documents`` in a worker thread, so encoding does not block the event loop."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """``embed_query`` in a worker thread."""
        return await asyncio.to_thread(self.embed_query, text)
