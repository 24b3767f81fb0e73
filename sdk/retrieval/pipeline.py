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
import sys
import threading
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
    SimilarityMismatchError,
)
from sdk.core.progress import progress_bar
from sdk.core.registry import connect
from sdk.core.similarity import Similarity
from sdk.core.spec import CollectionSpec, DenseField, SparseField
from sdk.core.store import AsyncVectorStore, VectorStore, async_store
from sdk.core.types import Document, EncodedBatch, Filter, Fusion, Hit, HybridQuery, SparseVector
from sdk.feedback import (
    Capture,
    FeedbackEvent,
    FeedbackStore,
    check_signal,
    new_search_id,
    open_feedback_store,
)
from sdk.feedback.registry import Registry, ServingState
from sdk.retrieval.fusion import aclient_fuse, client_fuse, native_fusion_gap, with_client_fusion
from sdk.retrieval.learned import LearnedSettings, ModelCache, Serving

__all__ = ["RetrievalPipeline", "SearchResult", "encode_documents", "resolve_store", "spec_encoder_id"]


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


def encode_documents(docs: Sequence[Document], dense_encoder: Any, sparse_encoder: Any, *, dense_field: str = "dense",
                     sparse_field: str = "sparse", batch_size: int = 32) -> EncodedBatch:
    """Dense and sparse vectors of ``docs`` (document prompts/routes), row-aligned: what a pipeline with
    these encoders and field names writes (workers of a distributed sync call it without a store)."""
    texts = [d.text for d in docs]
    dense: dict[str, np.ndarray] = {}
    sparse: dict[str, tuple[SparseVector, ...]] = {}
    if dense_encoder is not None:
        dense[dense_field] = np.asarray(dense_encoder.encode_document(texts, batch_size=batch_size))
    if sparse_encoder is not None:
        sparse[sparse_field] = tuple(sparse_encoder.encode_document(texts, batch_size=batch_size))
    return EncodedBatch(tuple(docs), dense, sparse)


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


def _as_document(item: Any, pos: int) -> Document:
    """``item`` as a ``Document``. A mapping's id is taken as given: a missing, empty or non-string id is
    refused, never turned into text (``None`` would become ``"None"`` and ``1`` equal ``"1"``, so
    documents would silently overwrite each other)."""
    if isinstance(item, Document):
        return item
    if isinstance(item, Mapping) and "text" in item:
        doc_id = item.get("id")
        if not isinstance(doc_id, str) or not doc_id:
            got = "no id" if doc_id is None else f"the id {doc_id!r} ({type(doc_id).__name__})"
            raise InputError(
                f"add_documents: document {pos} has {got}; every document needs its own non-empty string id "
                "(a re-run overwrites the document with that id instead of adding a copy). Give it one, e.g. "
                "{'id': 'faq-42', 'text': ...}; for numbers, pass str(n) yourself"
            )
        metadata = item.get("metadata")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InputError(f"add_documents: document {pos} ({doc_id!r}) has metadata of type "
                             f"{type(metadata).__name__}; pass a dict")
        return Document(doc_id, item["text"], dict(metadata or {}))
    raise InputError(
        f"add_documents takes sdk.core.types.Document values or mappings with 'id' and 'text', got "
        f"{type(item).__name__} at position {pos}"
    )


def _unique(docs: list[Document]) -> None:
    """Refuse two documents with one id in one call: the second would overwrite the first."""
    seen: dict[str, int] = {}
    for pos, doc in enumerate(docs):
        first = seen.setdefault(doc.id, pos)
        if first != pos:
            shown = repr(doc.id) if len(doc.id) <= 60 else f"{doc.id[:60]!r}..."
            raise InputError(
                f"add_documents: documents {first} and {pos} both have the id {shown}; ids must be unique "
                "within one call (the second would overwrite the first). Give each document its own id"
            )


def _encoder_parts(encoder: str | None) -> dict[str, str]:
    """``"dense=A;sparse=B"`` (what ``collection_spec`` stores) as ``{"dense": "A", "sparse": "B"}``."""
    parts = (p.partition("=") for p in (encoder or "").split(";"))
    return {k: v for k, sep, v in parts if sep and k in ("dense", "sparse")}


def spec_encoder_id(dense_encoder: Any, sparse_encoder: Any) -> str:
    """``"dense=A;sparse=B"``: what a collection built by these encoders stores as ``CollectionSpec.encoder``."""
    names = [f"dense={encoder_id(dense_encoder)}" if dense_encoder is not None else "",
             f"sparse={encoder_id(sparse_encoder)}" if sparse_encoder is not None else ""]
    return ";".join(n for n in names if n)


def encoder_id(encoder: Any) -> str:
    """The encoder's fingerprint (``ModuleEncoder.fingerprint``: weights and everything that shapes
    its vectors). Another torch module (a sentence-transformers model) is fingerprinted the same way,
    from its weights, modules, similarity and prompts. Anything else (a test double, a remote
    embedding API) is known only by its class name: give it a ``fingerprint()`` method to be told
    apart from another object of its class."""
    fingerprint = getattr(encoder, "fingerprint", None)
    if callable(fingerprint):
        return str(fingerprint())
    torch = sys.modules.get("torch")  # an nn.Module means torch is loaded already; never import it here
    if torch is not None and isinstance(encoder, torch.nn.Module):
        from sdk.encoders.fingerprint import encoder_fingerprint

        prompts = getattr(encoder, "prompts", None)
        return encoder_fingerprint(encoder, similarity=str(_similarity(encoder).value),
                                   prompts=dict(prompts) if isinstance(prompts, Mapping) else None)
    return type(encoder).__name__


def _similarity(encoder: Any) -> Similarity:
    """How a dense encoder's vectors are compared (``similarity_fn_name``; cosine when it says nothing)."""
    return Similarity.parse(getattr(encoder, "similarity_fn_name", None) or Similarity.COSINE)


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
    With a feedback store, ``learned`` (default on) serves what the feedback loop promoted for
    this collection (fitted fusion, fine-tuned reranker and encoders: ``sdk learn``/``sdk promote``)
    and follows later promotions and rollbacks within ``refresh_seconds``, without a restart.
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
        learned: bool | None = None,
        refresh_seconds: float = 5.0,
        device: str | None = None,
    ) -> None:
        if dense_encoder is None and sparse_encoder is None and not text_leg:
            raise ConfigError("RetrievalPipeline needs a dense_encoder, a sparse_encoder or text_leg=True")
        for name, value in (("limit", limit), ("rerank_top", rerank_top), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if learned and feedback is None:
            raise ConfigError("learned=True follows what the feedback loop promoted, which lives in the feedback "
                              "store: pass feedback= as well")
        self.feedback_store: FeedbackStore | None = None
        self._owns_feedback = False
        self._capture: Capture | None = None
        self._learned: LearnedSettings | None = None
        self._models = ModelCache(device)
        # (target, id(dense), id(sparse)) -> (stored spec the encoders were checked against, dense, sparse):
        # what each query passes as ``expect`` (the encoders are kept so their ids stay unique).
        self._checked: dict[tuple[str, int, int], tuple[CollectionSpec, Any, Any]] = {}
        self._checked_lock = threading.Lock()
        self.adapter, self._owns_store = resolve_store(store)
        try:
            self._configure(dense_encoder, sparse_encoder, collection, reranker, text_leg, fusion, client_fusion)
            if feedback is not None:
                self._open_feedback(feedback)
                if learned is not False:
                    self._follow_learned(refresh_seconds)
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
        self.collection = collection
        self.client_fusion = bool(client_fusion)
        legs = tuple(leg for leg, on in (("dense", dense is not None), ("sparse", sparse is not None),
                                         ("text", text_leg)) if on)
        fusion = fusion if fusion is not None else Fusion(k=caps.rrf_k or 60)
        if not isinstance(fusion, Fusion):
            raise ConfigError(f"fusion must be an sdk.core.types.Fusion, got {type(fusion).__name__}")
        self._base = Serving(dense, sparse, reranker, fusion, legs, "none", caps, collection)
        self._serving = self._snapshot(dense, sparse, reranker, fusion, legs, collection, learned=False)

    def _snapshot(self, dense: Any, sparse: Any, reranker: Any, fusion: Fusion, legs: tuple[str, ...],
                  target: str, *, learned: bool, version: int = 0, candidate_id: str | None = None) -> Serving:
        caps = self.adapter.capabilities
        gap = native_fusion_gap(caps, fusion, legs)
        if gap is not None and not self.client_fusion and not learned:
            raise CapabilityError(f"{gap}. Change the fusion setting, or pass client_fusion=True to fuse "
                                  "client-side (each leg queried natively, fused in this process)")
        mode = "none" if len(legs) < 2 else ("client" if gap else "native")
        return Serving(dense, sparse, reranker, fusion, legs, mode,
                       with_client_fusion(caps, fusion.method) if gap else caps, target, version, candidate_id)

    # The snapshot's parts, read-only: a search reads ``self._serving`` once and uses that.
    @property
    def dense_encoder(self) -> Any:
        return self._serving.dense

    @property
    def sparse_encoder(self) -> Any:
        return self._serving.sparse

    @property
    def reranker(self) -> Any:
        return self._serving.reranker

    @property
    def fusion(self) -> Fusion:
        return self._serving.fusion

    @property
    def legs(self) -> tuple[str, ...]:
        return self._serving.legs

    @property
    def fusion_mode(self) -> str:
        return self._serving.fusion_mode

    @property
    def capabilities(self) -> Any:
        return self._serving.capabilities

    @property
    def text_leg(self) -> bool:
        return self._serving.text_leg

    @property
    def target(self) -> str:
        """The collection queried: the pipeline's ``collection``, or the version a promoted encoder serves."""
        return self._serving.target

    @property
    def serving_version(self) -> int:
        """The registry's serving version this pipeline applies (0: its own settings)."""
        return self._serving.version

    # ---- following the feedback loop's promotions ---------------------------------------------
    def _follow_learned(self, refresh_seconds: float) -> None:
        if isinstance(refresh_seconds, bool) or not isinstance(refresh_seconds, (int, float)) or refresh_seconds < 0:
            raise ConfigError(f"refresh_seconds must be >= 0 (0: read once, never poll), got {refresh_seconds!r}")
        registry = Registry(self.feedback_store)  # type: ignore[arg-type]
        self._learned = LearnedSettings(registry, self.collection, self._apply_state, float(refresh_seconds))
        self._learned.load_now()
        self._learned.start()

    def _apply_state(self, state: ServingState) -> None:
        self._serving = self.serving_for(state)

    def serving_for(self, state: ServingState) -> Serving:
        """The snapshot a registry serving state gives this pipeline (models loaded now), not swapped in.

        Without ``state.physical`` the snapshot queries the pipeline's collection (following its
        alias); an encoder promotion names the version its vectors live in, so the new encoder and
        its collection arrive together, before the promotion moves the alias for everyone else."""
        base = self._base
        legs = base.legs
        if state.legs is not None:
            legs = tuple(leg for leg in base.legs if leg in state.legs) or base.legs
        dense = self._models.load("dense", state.dense) if state.dense and base.dense is not None else base.dense
        sparse = self._models.load("sparse", state.sparse) if state.sparse and base.sparse is not None \
            else base.sparse
        reranker = self._models.load("cross", state.reranker) if state.reranker else base.reranker
        fusion = Fusion(**state.fusion) if state.fusion else base.fusion
        target = state.physical or self.collection
        return self._snapshot(dense if "dense" in legs else None, sparse if "sparse" in legs else None, reranker,
                              fusion, legs, target, learned=True, version=state.version,
                              candidate_id=state.candidate_id)

    def refresh_learned(self) -> bool:
        """Apply a newer promotion or rollback now instead of at the next poll; ``True`` when it switched."""
        return self._learned.refresh() if self._learned is not None else False

    def _open_feedback(self, feedback: FeedbackStore | str) -> None:
        store = open_feedback_store(feedback)
        self.feedback_store, self._owns_feedback = store, store is not feedback
        adapter = self.adapter
        self._capture = Capture(store, collection=self.collection, store_name=self.adapter.capabilities.name,
                                fingerprint=encoder_id, resolve_physical=lambda: adapter.describe(self.target).name)

    def _check_existing(self) -> None:
        """Refuse an existing collection whose vectors the encoders cannot be compared with, before any query."""
        if self.adapter.exists(self.target):
            self._expected(self._serving)

    def _expected(self, s: Serving) -> CollectionSpec | None:
        """The stored spec of ``s.target`` once ``s``'s encoders were checked against it; every query of
        ``s`` passes it as ``expect``, so a collection rebuilt (or an alias moved) since by another
        model, width or similarity is refused at query time too. ``None`` for a text-only pipeline."""
        if s.dense is None and s.sparse is None:
            return None
        key = (s.target, id(s.dense), id(s.sparse))
        found = self._checked.get(key)
        if found is not None:
            return found[0]
        stored = self.adapter.describe(s.target)
        self._check_fits(stored, s.dense, s.sparse)
        with self._checked_lock:
            while len(self._checked) >= 16:  # old serving snapshots (promotions, rollbacks)
                self._checked.pop(next(iter(self._checked)))
            self._checked[key] = (stored, s.dense, s.sparse)
        return stored

    def _check_fits(self, stored: CollectionSpec, dense: Any, sparse: Any) -> None:
        """Refuse a collection built for other vectors: another width or similarity, or (same width) another
        model, named by the encoder fingerprints it stores."""
        name = stored.name if stored.name == self.collection else f"{self.collection} ({stored.name})"
        if dense is not None:
            field = stored.dense_field(self.dense_field)
            dim = int(dense.get_sentence_embedding_dimension())
            if field.dim != dim:
                raise DimensionMismatchError(
                    f"collection {name!r} stores {field.dim}-d vectors in {self.dense_field!r} but the "
                    f"dense encoder makes {dim}-d ones; use the encoder that built it or another collection"
                )
            sim = _similarity(dense)
            if field.similarity is not sim:
                raise SimilarityMismatchError(
                    f"collection {name!r} compares {self.dense_field!r} vectors by {field.similarity.value} but the "
                    f"dense encoder's similarity is {sim.value}; use the encoder (and similarity_fn_name) that "
                    "built it, or re-index (sdk sync builds a new version and switches the alias)"
                )
        if sparse is not None:
            stored.sparse_field(self.sparse_field)
        built_by = _encoder_parts(stored.encoder)
        for leg, encoder in (("dense", dense), ("sparse", sparse)):
            if encoder is None or stored.encoder is None:
                continue  # a collection written without fingerprints (by hand): nothing to compare
            mine = encoder_id(encoder)
            theirs = built_by.get(leg, stored.encoder if not built_by else None)
            if theirs != mine:
                raise SchemaMismatchError(
                    f"collection {name!r} was built by another {leg} encoder ({theirs or 'none for this leg'}) "
                    f"than this pipeline's ({mine}); their vectors are not comparable. Use the encoder that built "
                    "it, or re-index (sdk sync builds a new version and switches the alias)"
                )

    def collection_spec(self) -> CollectionSpec:
        """The ``CollectionSpec`` the pipeline creates: one field per configured encoder."""
        dense = ()
        if self.dense_encoder is not None:
            dim = int(self.dense_encoder.get_sentence_embedding_dimension())
            dense = (DenseField(self.dense_field, dim, _similarity(self.dense_encoder)),)
        sparse = (SparseField(self.sparse_field),) if self.sparse_encoder is not None else ()
        if not dense and not sparse:
            raise ConfigError("a text-only pipeline cannot create a collection: the store needs a vector field")
        return CollectionSpec(self.target, dense, sparse, self.payload,
                              spec_encoder_id(self.dense_encoder, self.sparse_encoder))

    # ---- writing ----------------------------------------------------------------------------
    def encode_documents(self, docs: Sequence[Document]) -> EncodedBatch:
        """Dense and sparse vectors of ``docs`` (document prompts/routes), row-aligned."""
        return encode_documents(docs, self.dense_encoder, self.sparse_encoder, dense_field=self.dense_field,
                                sparse_field=self.sparse_field, batch_size=self.batch_size)

    def add_documents(self, docs: Iterable[Document | Mapping[str, Any]], *, chunk_size: int = 256,
                      progress: bool | None = None) -> int:
        """Encode and upsert documents (creating the collection on first use); returns how many.

        Documents are processed ``chunk_size`` at a time so memory stays flat for any corpus; each
        chunk is encoded by every encoder once and written in one upsert. Every document needs its
        own string id (``Document.id`` or a mapping's ``"id"``): a missing, non-string or repeated id
        raises ``InputError`` before anything is created or written.
        """
        items = [_as_document(d, i) for i, d in enumerate(docs)]
        _unique(items)
        spec = self.collection_spec()
        self.adapter.ensure_collection(spec)
        chunks = [items[i:i + chunk_size] for i in range(0, len(items), chunk_size)]
        bar = progress_bar(len(items), "indexing", progress)
        written = 0
        try:
            for chunk in chunks:
                batch = self.encode_documents(chunk)
                written += self.adapter.upsert(spec.name, batch.records(), expect=spec)
                bar.update(len(chunk))
        finally:
            bar.close()
        return written

    def drop(self) -> bool:
        """Drop the pipeline's collection (``False`` when it did not exist)."""
        return bool(self.adapter.drop(self.collection))

    # ---- reading ----------------------------------------------------------------------------
    def _encode_queries(self, texts: list[str], s: Serving) -> tuple[list[Any], list[Any], dict[str, float]]:
        n = len(texts)
        dense: list[Any] = [None] * n
        sparse: list[Any] = [None] * n
        t: dict[str, float] = {}
        if s.dense is not None:
            t0 = time.perf_counter()
            dense = list(np.asarray(s.dense.encode_query(texts, batch_size=self.batch_size)))
            t["encode_dense"] = (time.perf_counter() - t0) / max(n, 1)
        if s.sparse is not None:
            t0 = time.perf_counter()
            sparse = list(s.sparse.encode_query(texts, batch_size=self.batch_size))
            t["encode_sparse"] = (time.perf_counter() - t0) / max(n, 1)
        return dense, sparse, t

    def build_query(self, text: str, dense: Any = None, sparse: SparseVector | None = None, *,
                    limit: int | None = None, filter: Filter | None = None,
                    serving: Serving | None = None) -> HybridQuery:
        """The ``HybridQuery`` the pipeline sends for already-encoded legs (fetching ``rerank_top``
        candidates when a reranker follows)."""
        s = serving or self._serving
        want = limit or self.limit
        fetch = max(want, self.rerank_top) if s.reranker is not None else want
        return HybridQuery(
            dense=np.asarray(dense, dtype=np.float32) if dense is not None and s.dense is not None else None,
            sparse=sparse if s.sparse is not None else None, text=text if s.text_leg else None,
            dense_field=self.dense_field, sparse_field=self.sparse_field,
            filter=filter if filter is not None else self.filter,
            fusion=s.fusion, candidate_limits=self.candidate_limits, limit=fetch,
        )

    def search_encoded(self, text: str, dense: Any = None, sparse: SparseVector | None = None, *,
                       limit: int | None = None, filter: Filter | None = None,
                       timings: Mapping[str, float] | None = None, serving: Serving | None = None) -> SearchResult:
        """Query with vectors already encoded (benchmarks, caches); reranks with ``text``.

        ``serving`` is the snapshot the vectors were encoded under (``search`` passes it so a
        promotion landing between encoding and querying cannot mix them); default: the current one."""
        s = serving or self._serving
        t = dict(timings or {})
        query = self.build_query(text, dense, sparse, limit=limit, filter=filter, serving=s)
        t0 = time.perf_counter()
        expect = self._expected(s)
        if s.fusion_mode == "client":
            sim = getattr(getattr(s.dense, "similarity_fn_name", None), "value", None)
            hits = client_fuse(self.adapter, s.target, query, sim, expect=expect)
        else:
            hits = self.adapter.query(s.target, query, expect=expect)
        t["query"] = time.perf_counter() - t0
        return self._finish(text, hits, query, t, limit, s)

    def _finish(self, text: str, hits: list[Hit], query: HybridQuery, t: dict[str, float], limit: int | None,
                s: Serving) -> SearchResult:
        """What follows the store's answer, for ``search`` and ``asearch`` alike: rerank, cut to the
        limit, record the impression."""
        if s.reranker is not None:
            t0 = time.perf_counter()
            hits = self._rerank(text, hits, s.reranker)
            t["rerank"] = time.perf_counter() - t0
        t["total"] = sum(v for k, v in t.items() if k != "total")
        result = SearchResult(hits[: limit or self.limit], t, s.fusion_mode, new_search_id())
        if self._capture is not None:
            self._capture.record(result.search_id, text, result, timings=t, encoders={
                "dense": s.dense, "sparse": s.sparse, "reranker": s.reranker,
            }, config={
                "legs": list(s.legs), "fusion": s.fusion_mode, "fusion_method": s.fusion.method.value,
                "fusion_k": s.fusion.k, "fusion_weights": dict(s.fusion.weights),
                "limit": limit or self.limit, "fetched": query.limit, "filter": query.filter,
                "serving_version": s.version, "candidate_id": s.candidate_id,
            })
        return result

    def _rerank(self, text: str, hits: list[Hit], reranker: Any = None) -> list[Hit]:
        """Cross-encoder scores for the first ``rerank_top`` hits; they are re-sorted, the rest keep
        their place after them. Ties keep the fused order (stable sort)."""
        reranker = reranker if reranker is not None else self.reranker
        head, tail = hits[: self.rerank_top], hits[self.rerank_top:]
        if not head:
            return hits
        scores = np.asarray(reranker.predict([(text, h.text or "") for h in head], batch_size=self.batch_size),
                            dtype=np.float64).reshape(-1)
        order = sorted(range(len(head)), key=lambda i: -scores[i])
        out = [Hit(head[i].id, float(scores[i]), head[i].text, head[i].metadata,
                   {**head[i].scores_by_stage, "rerank": float(scores[i])}) for i in order]
        return out + tail

    def search(self, query: str, *, limit: int | None = None, filter: Filter | None = None) -> SearchResult:
        """Encode ``query`` once per encoder, run ONE native (hybrid) query, rerank the top hits."""
        if not isinstance(query, str) or not query.strip():
            raise InputError("search takes a non-empty query string")
        s = self._serving
        dense, sparse, t = self._encode_queries([query], s)
        return self.search_encoded(query, dense[0], sparse[0], limit=limit, filter=filter, timings=t, serving=s)

    def search_batch(self, queries: Sequence[str], *, limit: int | None = None, filter: Filter | None = None,
                     serving: Serving | None = None) -> list[SearchResult]:
        """Many queries: each encoder runs once over the whole batch, then one native query each
        (``serving``: another snapshot to run them under, e.g. a candidate the gate compares)."""
        texts = list(queries)
        if any(not isinstance(q, str) or not q.strip() for q in texts):
            raise InputError("search_batch takes a list of non-empty query strings")
        s = serving or self._serving
        dense, sparse, t = self._encode_queries(texts, s)
        return [self.search_encoded(q, d, sv, limit=limit, filter=filter, timings=t, serving=s)
                for q, d, sv in zip(texts, dense, sparse, strict=True)]

    async def asearch(self, query: str, *, limit: int | None = None, filter: Filter | None = None) -> SearchResult:
        """``search`` without blocking the event loop; the result equals ``search``'s.

        When the store's async twin is native (``sdk.core.store.async_store``: the driver's own
        async client), encoding runs in a worker thread (CPU/GPU work), the database round trip is
        awaited on the loop, and a reranker runs in a worker thread: concurrent searches do not
        each hold a thread while the database answers. Otherwise the whole search runs in a worker
        thread. Same snapshot, query, hits, reranking and feedback record as ``search`` either way.
        """
        twin = self._native_twin()
        if twin is None:
            return await asyncio.to_thread(self.search, query, limit=limit, filter=filter)
        if not isinstance(query, str) or not query.strip():
            raise InputError("search takes a non-empty query string")
        s = self._serving
        dense, sparse, t, expect = await asyncio.to_thread(self._prepare, [query], s)
        return await self._asearch_encoded(twin, query, dense[0], sparse[0], limit, filter, t, s, expect)

    async def asearch_batch(self, queries: Sequence[str], *, limit: int | None = None,
                            filter: Filter | None = None) -> list[SearchResult]:
        """``search_batch`` without blocking the event loop: the batch is encoded once in a worker
        thread, then its queries are awaited concurrently on a native async store (else the whole
        batch runs in a worker thread)."""
        twin = self._native_twin()
        if twin is None:
            return await asyncio.to_thread(self.search_batch, queries, limit=limit, filter=filter)
        texts = list(queries)
        if any(not isinstance(q, str) or not q.strip() for q in texts):
            raise InputError("search_batch takes a list of non-empty query strings")
        s = self._serving
        dense, sparse, t, expect = await asyncio.to_thread(self._prepare, texts, s)
        return list(await asyncio.gather(*(
            self._asearch_encoded(twin, q, d, sv, limit, filter, t, s, expect)
            for q, d, sv in zip(texts, dense, sparse, strict=True))))

    def _native_twin(self) -> AsyncVectorStore | None:
        """The store's async twin when it awaits the driver natively (not a worker thread per call)."""
        twin = async_store(self.adapter)
        return twin if twin is not None and twin.native else None

    def _prepare(self, texts: list[str], s: Serving) -> tuple[list[Any], list[Any], dict[str, float], Any]:
        """Worker-thread part of an async search: encode, and the spec each query is checked against."""
        dense, sparse, t = self._encode_queries(texts, s)
        return dense, sparse, t, self._expected(s)

    async def _asearch_encoded(self, twin: AsyncVectorStore, text: str, dense: Any, sparse: Any,
                               limit: int | None, filter: Filter | None, timings: Mapping[str, float],
                               s: Serving, expect: CollectionSpec | None) -> SearchResult:
        """``search_encoded`` with the store's round trip awaited on ``twin``."""
        t = dict(timings)
        query = self.build_query(text, dense, sparse, limit=limit, filter=filter, serving=s)
        t0 = time.perf_counter()
        if s.fusion_mode == "client":
            sim = getattr(getattr(s.dense, "similarity_fn_name", None), "value", None)
            hits = await aclient_fuse(twin, s.target, query, sim, expect=expect)
        else:
            hits = await twin.aquery(s.target, query, expect=expect)
        t["query"] = time.perf_counter() - t0
        if s.reranker is not None:
            return await asyncio.to_thread(self._finish, text, hits, query, t, limit, s)
        return self._finish(text, hits, query, t, limit, s)

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
        learned, self._learned = getattr(self, "_learned", None), None
        if learned is not None:
            learned.close()
        store, self.feedback_store, self._capture = getattr(self, "feedback_store", None), None, None
        if store is not None:
            if self._owns_feedback:
                store.close()
            else:
                store.flush(timeout=30.0)
        if getattr(self, "_owns_store", False):
            self._owns_store = False
            self.adapter.close()

    async def aclose(self) -> None:
        """``close`` from async code: first the async database client of the running loop (when the
        pipeline opened the store), then everything ``close`` releases, in a worker thread."""
        twin = async_store(self.adapter) if getattr(self, "_owns_store", False) else None
        if twin is not None:
            await twin.aclose()
        await asyncio.to_thread(self.close)

    def __enter__(self) -> RetrievalPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"RetrievalPipeline(legs={self.legs}, store={self.capabilities.name!r}, "
                f"collection={self.collection!r}, fusion={self.fusion_mode}, reranker={self.reranker is not None})")
