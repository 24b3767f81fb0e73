"""Deciding between a database's native fusion and the client-side fallback, and running the fallback.

Native fusion is the rule: one round trip, the database ranks with its own candidate lists. The
fallback exists for settings a database has no native form of (Weaviate's rankedFusion constant is
fixed, k=59 in the SDK's 1-based convention; pgvector fuses only by RRF; Milvus' RRFRanker and
Qdrant's weighted RRF do not compute the SDK's ``sum w / (k + rank)``). It runs each leg as its own
native single-leg query and fuses the rankings here with ``sdk.core.fusion``, the formulas the
exact in-memory reference adapter uses too, so there is one implementation of every fusion formula.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sdk.core.capabilities import Capabilities
from sdk.core.errors import CapabilityError
from sdk.core.fusion import fuse
from sdk.core.spec import CollectionSpec
from sdk.core.store import AsyncVectorStore, VectorStore
from sdk.core.types import Fusion, FusionMethod, Hit, HybridQuery

__all__ = ["CLIENT_FUSION", "aclient_fuse", "client_fuse", "native_fusion_gap", "native_weights", "single_leg_queries",
           "with_client_fusion"]

CLIENT_FUSION = "client_fusion"  # the ``Capabilities.emulated`` flag set when the fallback is in use


def native_fusion_gap(caps: Capabilities, fusion: Fusion, legs: tuple[str, ...]) -> str | None:
    """Why ``caps`` cannot fuse ``legs`` natively with ``fusion`` (``None`` when it can)."""
    if len(legs) < 2:
        return None
    if fusion.method not in caps.fusions:
        have = ", ".join(sorted(f.value for f in caps.fusions)) or "none"
        return f"{caps.name} has no native {fusion.method.value} fusion (native: {have})"
    if fusion.method is FusionMethod.RRF and caps.rrf_k is not None and fusion.k != caps.rrf_k:
        return f"{caps.name}'s native RRF uses k={caps.rrf_k} and a query cannot set k={fusion.k}"
    if not native_weights(caps, fusion.method) and len({float(fusion.weights.get(leg, 1.0)) for leg in legs}) > 1:
        return f"{caps.name}'s native {fusion.method.value} takes no per-leg weights"
    return None


def native_weights(caps: Capabilities, method: FusionMethod) -> bool:
    """Whether ``caps``' native form of ``method`` honours per-leg weights."""
    if method is FusionMethod.RRF:
        return caps.rrf_weights
    if method is FusionMethod.DBSF:
        return caps.dbsf_weights
    return True


def with_client_fusion(caps: Capabilities, method: FusionMethod) -> Capabilities:
    """``caps`` as the pipeline presents it when it fuses client-side: the method is available and
    ``emulated`` carries ``"client_fusion"``, so callers can see it is not the database's own."""
    return replace(caps, fusions=caps.fusions | {method}, emulated=caps.emulated | {CLIENT_FUSION})


def _kind(leg: str, caps_similarity: str | None) -> str:
    # Milvus-style normalisation needs the score family: cosine in [-1, 1]; dot, sparse and BM25 unbounded.
    if leg == "dense":
        return caps_similarity or "cosine"
    return "sparse"


def client_fuse(adapter: VectorStore, collection: str, query: HybridQuery,
                dense_similarity: str | None = None, *, expect: CollectionSpec | None = None) -> list[Hit]:
    """Run each leg of ``query`` natively on its own, then fuse here (the documented fallback).

    Hits carry every leg's score in ``scores_by_stage`` besides ``"fused"``; legs are fetched with
    their candidate limits, exactly like a native hybrid query would. ``expect`` goes to every leg's
    query (the stored-spec guard).
    """
    single = single_leg_queries(query)
    results = {leg: adapter.query(collection, q, expect=expect) for leg, q in single.items()}
    return _fuse_legs(results, query, dense_similarity)


async def aclient_fuse(store: AsyncVectorStore, collection: str, query: HybridQuery,
                       dense_similarity: str | None = None, *, expect: CollectionSpec | None = None) -> list[Hit]:
    """``client_fuse`` on an async store: the single-leg queries run concurrently, the fusion is the same."""
    single = single_leg_queries(query)
    answers = await asyncio.gather(*(store.aquery(collection, q, expect=expect) for q in single.values()))
    return _fuse_legs(dict(zip(single, answers, strict=True)), query, dense_similarity)


def single_leg_queries(query: HybridQuery, *, min_legs: int = 2) -> dict[str, HybridQuery]:
    """Each leg of ``query`` as its own single-leg query, fetched as deep as the hybrid would fetch it
    (client-side fusion; the learning step's replay of each leg asks for ``min_legs=1``)."""
    single: dict[str, HybridQuery] = {}
    base: dict[str, Any] = {"filter": query.filter, "dense_field": query.dense_field,
                            "sparse_field": query.sparse_field, "fusion": query.fusion}
    if query.dense is not None:
        single["dense"] = HybridQuery(dense=query.dense, limit=query.candidates("dense"), **base)
    if query.sparse is not None:
        single["sparse"] = HybridQuery(sparse=query.sparse, limit=query.candidates("sparse"), **base)
    if query.text is not None:
        single["text"] = HybridQuery(text=query.text, limit=query.candidates("text"), **base)
    if len(single) < min_legs:
        raise CapabilityError("client-side fusion needs at least two legs; run a single-leg query natively")
    return single


def _fuse_legs(results: Mapping[str, list[Hit]], query: HybridQuery, dense_similarity: str | None) -> list[Hit]:
    """The legs' native answers fused with ``sdk.core.fusion`` (every leg's score kept per hit)."""
    by_id: dict[str, Hit] = {}
    stages: dict[str, dict[str, float]] = {}
    legs: dict[str, list[tuple[str, float]]] = {}
    for leg, hits in results.items():
        legs[leg] = [(h.id, h.score) for h in hits]
        for h in hits:
            by_id.setdefault(h.id, h)
            stages.setdefault(h.id, {})[leg] = h.score
    kinds: Mapping[str, str] = {leg: _kind(leg, dense_similarity) for leg in legs}
    f = query.fusion
    fused = fuse(legs, f.method, f.k, f.weights, kinds, query.limit)
    return [Hit(doc, score, by_id[doc].text, by_id[doc].metadata, {**stages[doc], "fused": score})
            for doc, score in fused]
