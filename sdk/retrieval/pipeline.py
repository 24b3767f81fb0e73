"""``RetrievalPipeline``: encode once per encoder -> one native hybrid query -> cross-encoder rerank.

Everything a RAG backend needs sits behind this one object: ``add_documents`` encodes dense and
sparse vectors in the same pass and upserts them; ``search`` / ``search_batch`` / ``asearch``
return ``Hit`` lists carrying the score of every stage and the time every stage took.

What the store cannot do is refused when the pipeline is built (``CapabilityError``), not on the
first query: a sparse encoder on a store without user sparse vectors, a text leg on a store with
no BM25, a fusion the database has no native form of. The last one may instead run client-side
(``client_fusion=True``): each leg as a native query, fused here; ``pipeline.capabilities`` then
lists the method and carries ``"client_fusion"`` in ``emulated`` so nobody mistakes it for the
database's own fusion.

Fused scores (RRF above all) are ranks in disguise: compare them within one result list, never
against a threshold. Reranker scores are the cross-encoder's own scale.

Feedback (``feedback=`` a ``FeedbackStore``, a SQLite path or a ``sqlite://`` / ``postgresql://``
URL): every search is recorded as an impression on a background thread, and
``pipeline.feedback(result.search_id, doc_id, "click")`` records what the user did. Every result
carries a ``search_id`` with or without it. A slow or failing feedback store never slows or breaks
a search (records are dropped and logged instead; ``sdk.feedback``).

Equal-weight RRF helps when the legs are of comparable quality and fail on different queries; with
one much weaker leg it drags the stronger one down (bench/eval_table.py: pyfaq, SPLADE-tiny vs
MiniLM). Weight the stronger leg (``Fusion(weights={"dense": 2.0})``) or lower k in that case.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from sdk.core.errors import (
    CapabilityError,
    ConfigError,
    DimensionMismatchError,
    InputError,
    SchemaMismatchError,
)
from sdk.core.progress import progress_bar
from sdk.core.registry import connect
from sdk.core.spec import CollectionSpec, DenseField, SparseField
from sdk.core.store import VectorStore
from sdk.core.types import Document, EncodedBatch, Filter, Fusion, Hit, HybridQuery, SparseVector
from sdk.feedback import (
    Capture,
    FeedbackEvent,
    FeedbackStore,
    check_signal,
    new_search_id,
    open_feedback_store,
)
from sdk.retrieval.fusion import client_fuse, native_fusion_gap, with_client_fusion

__all__ = ["RetrievalPipeline", "SearchResult", "resolve_store"]


class SearchResult(list[Hit]):
    """The hits of one query, best first, plus how long each stage took (seconds).

    A list subclass so that code written for ``list[Hit]`` keeps working. ``timings`` keys:
    ``encode_dense``, ``encode_sparse`` (amortised per query in a batch), ``query``, ``rerank``,
    ``total``; ``fusion`` is ``"native"``, ``"client"`` or ``"none"`` (single leg). ``search_id``
    (32 hex characters, unique per search) is what ``RetrievalPipeline.feedback`` takes back.
    """

    def __init__(self, hits: Iterable[Hit] = (), timings: Mapping[str, float] | None = None,
                 fusion: str = "none", search_id: str | None = None) -> None:
        super().__init__(hits)
        self.timings: dict[str, float] = dict(timings or {})
        self.fusion = fusion
        self.search_id = search_id or new_search_id()


def resolve_store(store: VectorStore | str) -> tuple[VectorStore, bool]:
    """A store as given, or a URL connected through the adapter registry (then owned by the caller)."""
    if isinstance(store, str):
        return connect(store), True  # sdk.core.registry: imports that scheme's adapter and driver only now
    if isinstance(store, VectorStore):
        return store, False
    raise ConfigError(
        f"store must be an adapter (adapters.base.Adapter) or a database URL such as 'qdrant+local::memory:', "
        f"got {type(store).__name__}"
    )


def _as_document(item: Any) -> Document:
    if isinstance(item, Document):
        return item
    if isinstance(item, Mapping) and "id" in item and "text" in item:
        return Document(str(item["id"]), item["text"], dict(item.get("metadata") or {}))
    raise InputError(
        f"add_documents takes sdk.core.types.Document values or mappings with 'id' and 'text', got {type(item).__name__}"
    )


def _encoder_parts(encoder: str | None) -> dict[str, str]:
    """``"dense=A;sparse=B"`` (what ``collection_spec`` stores) as ``{"dense": "A", "sparse": "B"}``."""
    parts = (p.partition("=") for p in (encoder or "").split(";"))
    return {k: v for k, sep, v in parts if sep and k in ("dense", "sparse")}


def encoder_id(encoder: Any) -> str:
    """The encoder's fingerprint (``ModuleEncoder.fingerprint``: weights and everything that shapes
    its vectors); for an object without one (a test double), its model folder's name."""
    fingerprint = getattr(encoder, "fingerprint", None)
    if callable(fingerprint):
        return str(fingerprint())
    path = getattr(encoder, "model_path", None)
    return getattr(path, "name", None) or type(encoder).__name__


class RetrievalPipeline:
    """Dense / sparse / BM25-text legs fused natively by the store, then optional reranking.

    ``store`` is an adapter or a URL (``sdk.connect``); a URL's connection belongs to the
    pipeline and ``close()`` releases it. ``text_leg=True`` sends the query text to the store's
    own BM25 (Weaviate, whose native hybrid picks its own per-leg candidate counts:
    ``Capabilities.leg_candidates``); ``fusion`` defaults to RRF with the store's fixed k when it has one, else
    k=60. ``rerank_top`` hits are fetched and reranked when a ``reranker`` (a 1-label
    ``CrossEncoder``) is given; ``limit`` hits are returned. An existing collection whose fields
    or encoder fingerprint do not fit the encoders is refused at construction unless
    ``check_collection=False`` (``sdk sync`` re-indexes such a collection into a new version).
    ``feedback`` turns on impression and feedback capture (see the module docstring); a URL or
    path opens a store the pipeline owns and ``close()`` closes, a given store is only flushed.
    """

    def __init__(
        self,
        dense_encoder: Any = None,
        sparse_encoder: Any = None,
        *,
        store: Any,
        collection: str,
        reranker: Any = None,
        rerank_top: int = 50,
        limit: int = 10,
        text_leg: bool = False,
        fusion: Fusion | None = None,
        candidate_limits: Mapping[str, int] | None = None,
        filter: Filter | None = None,
        client_fusion: bool = False,
        payload: Sequence[Any] = (),
        dense_field: str = "dense",
        sparse_field: str = "sparse",
        batch_size: int = 32,
        check_collection: bool = True,
        feedback: FeedbackStore | str | None = None,
    ) -> None:
        if dense_encoder is None and sparse_encoder is None and not text_leg:
            raise ConfigError("RetrievalPipeline needs a dense_encoder, a sparse_encoder or text_leg=True")
        for name, value in (("limit", limit), ("rerank_top", rerank_top), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        self.feedback_store: FeedbackStore | None = None
        self._owns_feedback = False
        self._capture: Capture | None = None
        self.adapter, self._owns_store = resolve_store(store)
        try:
            self._configure(dense_encoder, sparse_encoder, collection, reranker, text_leg, fusion, client_fusion)
            if feedback is not None:
                self._open_feedback(feedback)
        except BaseException:
            self.close()
            raise
        self.rerank_top, self.limit, self.batch_size = rerank_top, limit, batch_size
        self.candidate_limits = dict(candidate_limits or {})
        self.filter = filter
        self.payload = tuple(payload)
        self.dense_field, self.sparse_field = dense_field, sparse_field
        if check_collection:
            self._check_existing()

    # ---- construction-time checks -----------------------------------------------------------
    def _configure(self, dense: Any, sparse: Any, collection: str, reranker: Any, text_leg: bool,
                   fusion: Fusion | None, client_fusion: bool) -> None:
        caps = self.adapter.capabilities
        if sparse is not None and not caps.sparse:
            hint = " Its keyword leg is its own BM25 over the stored text: pass sparse_encoder=None, text_leg=True" \
                if caps.text_leg else ""
            raise CapabilityError(f"{caps.name} stores no user-supplied sparse vectors.{hint}")
        if text_leg and not caps.text_leg:
            raise CapabilityError(
                f"{caps.name} has no native BM25 text leg; drop text_leg=True"
                + (" and use a sparse_encoder (SPLADE) for the lexical side" if caps.sparse else "")
            )
        if reranker is not None:
            if not callable(getattr(reranker, "predict", None)):
                raise ConfigError(f"reranker must be a CrossEncoder (with predict), got {type(reranker).__name__}")
            if getattr(reranker, "num_labels", 1) != 1:
                raise ConfigError(f"reranker must be a 1-label relevance model, this one has {reranker.num_labels}")
        self.dense_encoder, self.sparse_encoder, self.reranker = dense, sparse, reranker
        self.collection, self.text_leg = collection, bool(text_leg)
        self.legs = tuple(leg for leg, on in (("dense", dense is not None), ("sparse", sparse is not None),
                                               ("text", text_leg)) if on)
        self.fusion = fusion if fusion is not None else Fusion(k=caps.rrf_k or 60)
        if not isinstance(self.fusion, Fusion):
            raise ConfigError(f"fusion must be an sdk.core.types.Fusion, got {type(self.fusion).__name__}")
        gap = native_fusion_gap(caps, self.fusion, self.legs)
        if gap is not None and not client_fusion:
            raise CapabilityError(f"{gap}. Change the fusion setting, or pass client_fusion=True to fuse "
                                  "client-side (each leg queried natively, fused in this process)")
        self.fusion_mode = "none" if len(self.legs) < 2 else ("client" if gap else "native")
        self.capabilities = with_client_fusion(caps, self.fusion.method) if gap else caps

    def _open_feedback(self, feedback: FeedbackStore | str) -> None:
        store = open_feedback_store(feedback)
        self.feedback_store, self._owns_feedback = store, store is not feedback
        adapter, collection = self.adapter, self.collection
        self._capture = Capture(store, collection=collection, store_name=self.adapter.capabilities.name,
                                fingerprint=encoder_id, resolve_physical=lambda: adapter.describe(collection).name)

    def _check_existing(self) -> None:
        """Refuse an existing collection whose fields do not fit the encoders, before any query."""
        if not self.adapter.exists(self.collection):
            return
        spec = self.adapter.describe(self.collection)
        if self.dense_encoder is not None:
            field = spec.dense_field(self.dense_field)
            dim = int(self.dense_encoder.get_sentence_embedding_dimension())
            if field.dim != dim:
                raise DimensionMismatchError(
                    f"collection {self.collection!r} stores {field.dim}-d vectors in {self.dense_field!r} but the "
                    f"dense encoder makes {dim}-d ones; use the encoder that built it or another collection"
                )
        if self.sparse_encoder is not None:
            spec.sparse_field(self.sparse_field)
        stored = _encoder_parts(spec.encoder)
        for leg, encoder in (("dense", self.dense_encoder), ("sparse", self.sparse_encoder)):
            if encoder is not None and leg in stored and stored[leg] != encoder_id(encoder):
                raise SchemaMismatchError(
                    f"collection {self.collection!r} was built by another {leg} encoder ({stored[leg]}) than this "
                    f"pipeline's ({encoder_id(encoder)}); their vectors are not comparable. Use the encoder that "
                    "built it, or re-index (sdk sync builds a new version and switches the alias)"
                )

    def collection_spec(self) -> CollectionSpec:
        """The ``CollectionSpec`` the pipeline creates: one field per configured encoder."""
        dense = ()
        if self.dense_encoder is not None:
            dim = int(self.dense_encoder.get_sentence_embedding_dimension())
            sim = getattr(self.dense_encoder, "similarity_fn_name", "cosine")
            dense = (DenseField(self.dense_field, dim, sim),)
        sparse = (SparseField(self.sparse_field),) if self.sparse_encoder is not None else ()
        names = [f"dense={encoder_id(self.dense_encoder)}" if self.dense_encoder is not None else "",
                 f"sparse={encoder_id(self.sparse_encoder)}" if self.sparse_encoder is not None else ""]
        if not dense and not sparse:
            raise ConfigError("a text-only pipeline cannot create a collection: the store needs a vector field")
        return CollectionSpec(self.collection, dense, sparse, self.payload, ";".join(n for n in names if n))

    # ---- writing ----------------------------------------------------------------------------
    def encode_documents(self, docs: Sequence[Document]) -> EncodedBatch:
        """Dense and sparse vectors of ``docs`` (document prompts/routes), row-aligned."""
        texts = [d.text for d in docs]
        dense: dict[str, np.ndarray] = {}
        sparse: dict[str, tuple[SparseVector, ...]] = {}
        if self.dense_encoder is not None:
            dense[self.dense_field] = np.asarray(self.dense_encoder.encode_document(texts, batch_size=self.batch_size))
        if self.sparse_encoder is not None:
            sparse[self.sparse_field] = tuple(self.sparse_encoder.encode_document(texts, batch_size=self.batch_size))
        return EncodedBatch(tuple(docs), dense, sparse)

    def add_documents(self, docs: Iterable[Document | Mapping[str, Any]], *, chunk_size: int = 256,
                      progress: bool | None = None) -> int:
        """Encode and upsert documents (creating the collection on first use); returns how many.

        Documents are processed ``chunk_size`` at a time so memory stays flat for any corpus; each
        chunk is encoded by every encoder once and written in one upsert.
        """
        spec = self.collection_spec()
        self.adapter.ensure_collection(spec)
        items = [_as_document(d) for d in docs]
        chunks = [items[i:i + chunk_size] for i in range(0, len(items), chunk_size)]
        bar = progress_bar(len(items), "indexing", progress)
        written = 0
        try:
            for chunk in chunks:
                batch = self.encode_documents(chunk)
                written += self.adapter.upsert(self.collection, batch.records(), expect=spec)
                bar.update(len(chunk))
        finally:
            bar.close()
        return written

    def drop(self) -> bool:
        """Drop the pipeline's collection (``False`` when it did not exist)."""
        return bool(self.adapter.drop(self.collection))

    # ---- reading ----------------------------------------------------------------------------
    def _encode_queries(self, texts: list[str]) -> tuple[list[Any], list[Any], dict[str, float]]:
        n = len(texts)
        dense: list[Any] = [None] * n
        sparse: list[Any] = [None] * n
        t: dict[str, float] = {}
        if self.dense_encoder is not None:
            t0 = time.perf_counter()
            dense = list(np.asarray(self.dense_encoder.encode_query(texts, batch_size=self.batch_size)))
            t["encode_dense"] = (time.perf_counter() - t0) / max(n, 1)
        if self.sparse_encoder is not None:
            t0 = time.perf_counter()
            sparse = list(self.sparse_encoder.encode_query(texts, batch_size=self.batch_size))
            t["encode_sparse"] = (time.perf_counter() - t0) / max(n, 1)
        return dense, sparse, t

    def build_query(self, text: str, dense: Any = None, sparse: SparseVector | None = None, *,
                    limit: int | None = None, filter: Filter | None = None) -> HybridQuery:
        """The ``HybridQuery`` the pipeline sends for already-encoded legs (fetching ``rerank_top``
        candidates when a reranker follows)."""
        want = limit or self.limit
        fetch = max(want, self.rerank_top) if self.reranker is not None else want
        return HybridQuery(
            dense=np.asarray(dense, dtype=np.float32) if dense is not None else None,
            sparse=sparse, text=text if self.text_leg else None, dense_field=self.dense_field,
            sparse_field=self.sparse_field, filter=filter if filter is not None else self.filter,
            fusion=self.fusion, candidate_limits=self.candidate_limits, limit=fetch,
        )

    def search_encoded(self, text: str, dense: Any = None, sparse: SparseVector | None = None, *,
                       limit: int | None = None, filter: Filter | None = None,
                       timings: Mapping[str, float] | None = None) -> SearchResult:
        """Query with vectors already encoded (benchmarks, caches); reranks with ``text``."""
        t = dict(timings or {})
        query = self.build_query(text, dense, sparse, limit=limit, filter=filter)
        t0 = time.perf_counter()
        if self.fusion_mode == "client":
            sim = getattr(getattr(self.dense_encoder, "similarity_fn_name", None), "value", None)
            hits = client_fuse(self.adapter, self.collection, query, sim)
        else:
            hits = self.adapter.query(self.collection, query)
        t["query"] = time.perf_counter() - t0
        if self.reranker is not None:
            t0 = time.perf_counter()
            hits = self._rerank(text, hits)
            t["rerank"] = time.perf_counter() - t0
        t["total"] = sum(v for k, v in t.items() if k != "total")
        result = SearchResult(hits[: limit or self.limit], t, self.fusion_mode, new_search_id())
        if self._capture is not None:
            self._capture.record(result.search_id, text, result, timings=t, encoders={
                "dense": self.dense_encoder, "sparse": self.sparse_encoder, "reranker": self.reranker,
            }, config={
                "legs": list(self.legs), "fusion": self.fusion_mode, "fusion_method": self.fusion.method.value,
                "fusion_k": self.fusion.k, "fusion_weights": dict(self.fusion.weights),
                "limit": limit or self.limit, "fetched": query.limit, "filter": query.filter,
            })
        return result

    def _rerank(self, text: str, hits: list[Hit]) -> list[Hit]:
        """Cross-encoder scores for the first ``rerank_top`` hits; they are re-sorted, the rest keep
        their place after them. Ties keep the fused order (stable sort)."""
        head, tail = hits[: self.rerank_top], hits[self.rerank_top:]
        if not head:
            return hits
        scores = np.asarray(self.reranker.predict([(text, h.text or "") for h in head], batch_size=self.batch_size),
                            dtype=np.float64).reshape(-1)
        order = sorted(range(len(head)), key=lambda i: -scores[i])
        out = [Hit(head[i].id, float(scores[i]), head[i].text, head[i].metadata,
                   {**head[i].scores_by_stage, "rerank": float(scores[i])}) for i in order]
        return out + tail

    def search(self, query: str, *, limit: int | None = None, filter: Filter | None = None) -> SearchResult:
        """Encode ``query`` once per encoder, run ONE native (hybrid) query, rerank the top hits."""
        if not isinstance(query, str) or not query.strip():
            raise InputError("search takes a non-empty query string")
        dense, sparse, t = self._encode_queries([query])
        return self.search_encoded(query, dense[0], sparse[0], limit=limit, filter=filter, timings=t)

    def search_batch(self, queries: Sequence[str], *, limit: int | None = None,
                     filter: Filter | None = None) -> list[SearchResult]:
        """Many queries: each encoder runs once over the whole batch, then one native query each."""
        texts = list(queries)
        if any(not isinstance(q, str) or not q.strip() for q in texts):
            raise InputError("search_batch takes a list of non-empty query strings")
        dense, sparse, t = self._encode_queries(texts)
        return [self.search_encoded(q, d, s, limit=limit, filter=filter, timings=t)
                for q, d, s in zip(texts, dense, sparse, strict=True)]

    async def asearch(self, query: str, *, limit: int | None = None, filter: Filter | None = None) -> SearchResult:
        """``search`` without blocking the event loop.

        Encoding is CPU/GPU work and the adapters speak their drivers' synchronous clients, so the
        whole search runs in a worker thread; results are identical to ``search``.
        """
        return await asyncio.to_thread(self.search, query, limit=limit, filter=filter)

    async def asearch_batch(self, queries: Sequence[str], *, limit: int | None = None,
                            filter: Filter | None = None) -> list[SearchResult]:
        """``search_batch`` in a worker thread."""
        return await asyncio.to_thread(self.search_batch, queries, limit=limit, filter=filter)

    # ---- feedback ---------------------------------------------------------------------------
    def feedback(self, search_id: str, doc_id: str, signal: str | float, value: float | None = None) -> FeedbackEvent:
        """Record what the user did with a result: ``click``, ``used`` (a RAG answer cited it),
        ``thumbs_up``, ``thumbs_down``, or a rating (``"rating", 4`` or just ``4``; 0 to 5).

        ``search_id`` is ``SearchResult.search_id`` (LangChain documents carry it in their metadata).
        Bad input raises ``InputError`` here; the write itself happens on the store's writer thread
        and never raises. A ``search_id`` the store has no impression of is not refused (its
        impression may still be queued, or come from another process): the event is stored with
        ``known_search=False`` so that turning feedback into labels can leave it out.
        """
        event = check_signal(search_id, doc_id, signal, value)
        if self.feedback_store is None:
            raise ConfigError("this pipeline records no feedback; build it with feedback='sqlite:///feedback.db' "
                              "(or a FeedbackStore / postgresql:// URL)")
        self.feedback_store.submit(event)
        return event

    # ---- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Write queued feedback (closing a feedback store the pipeline opened) and release the
        store connection when the pipeline opened it from a URL."""
        store, self.feedback_store, self._capture = getattr(self, "feedback_store", None), None, None
        if store is not None:
            if self._owns_feedback:
                store.close()
            else:
                store.flush(timeout=30.0)
        if getattr(self, "_owns_store", False):
            self._owns_store = False
            self.adapter.close()

    def __enter__(self) -> RetrievalPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"RetrievalPipeline(legs={self.legs}, store={self.capabilities.name!r}, "
                f"collection={self.collection!r}, fusion={self.fusion_mode}, reranker={self.reranker is not None})")
