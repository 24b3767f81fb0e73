"""Every fusion formula in one place: RRF, weighted (Milvus-style), relative score and DBSF.

Two callers need them and must agree to the last digit: the exact in-memory reference adapter
(``adapters.memory``), which the conformance suite compares every database against, and the
retrieval pipeline's client-side fallback (``sdk.retrieval.fusion``) for settings a database has
no native form of. Scores are "higher is better" throughout; ties break deterministically.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from sdk.core.types import FusionMethod

__all__ = ["dbsf_normalise", "fuse", "relative_normalise", "rrf_fuse", "weighted_normalise"]


def rrf_fuse(
    rankings: Mapping[str, Sequence[str]],
    k: int = 60,
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: ``score(d) = sum_leg w_leg / (k + rank_leg(d))`` with ranks from 1.

    Ties are broken by the best single-leg rank, then by id, so the result is deterministic.
    """
    weights = weights or {}
    scores: dict[str, float] = {}
    best: dict[str, int] = {}
    for leg, ids in rankings.items():
        w = float(weights.get(leg, 1.0))
        for rank, doc in enumerate(ids, start=1):
            scores[doc] = scores.get(doc, 0.0) + w / (k + rank)
            best[doc] = min(best.get(doc, rank), rank)
    ordered = sorted(scores.items(), key=lambda kv: (-kv[1], best[kv[0]], kv[0]))
    return ordered[:limit] if limit is not None else ordered


def dbsf_normalise(scores: Sequence[float]) -> list[float]:
    """Distribution-based score fusion (Qdrant's DBSF): mean +- 3 sigma mapped onto [0, 1]."""
    if len(scores) == 1:
        return [0.5]
    mean = sum(scores) / len(scores)
    var = sum((s - mean) ** 2 for s in scores) / (len(scores) - 1)
    if var == 0:
        return [0.5] * len(scores)
    low, high = mean - 3 * var**0.5, mean + 3 * var**0.5
    return [(s - low) / (high - low) for s in scores]


def weighted_normalise(scores: Sequence[float], kind: str) -> list[float]:
    """Milvus WeightedRanker: IP -> 0.5 + atan(s)/pi, cosine -> (1 + s)/2, distances -> 1 - 2 atan(d)/pi.

    ``kind`` is the score family of the leg: ``"cosine"``, ``"dot"``/``"sparse"`` (unbounded inner
    products) or anything else for negated distances.
    """
    if kind == "cosine":
        return [(1 + s) / 2 for s in scores]
    if kind in ("dot", "sparse"):
        return [0.5 + math.atan(s) / math.pi for s in scores]
    return [1 - 2 * math.atan(-s) / math.pi for s in scores]


def relative_normalise(scores: Sequence[float]) -> list[float]:
    """Weaviate's relativeScoreFusion: min-max per leg (a leg of equal scores maps to 1)."""
    lo, hi = min(scores), max(scores)
    return [(s - lo) / (hi - lo) if hi > lo else 1.0 for s in scores]


def fuse(
    legs: Mapping[str, list[tuple[str, float]]],
    method: FusionMethod,
    k: int,
    weights: Mapping[str, float],
    kinds: Mapping[str, str],
    limit: int,
) -> list[tuple[str, float]]:
    """Fuse per-leg rankings ``[(id, score), ...]`` (best first) with ``method``.

    ``kinds`` gives each leg's score family for the weighted method (see ``weighted_normalise``).
    """
    if method is FusionMethod.RRF:
        return rrf_fuse({leg: [i for i, _ in hits] for leg, hits in legs.items()}, k, weights, limit)
    total: dict[str, float] = {}
    for leg, hits in legs.items():
        if not hits:
            continue
        raw = [s for _, s in hits]
        if method is FusionMethod.DBSF:
            norm = dbsf_normalise(raw)
        elif method is FusionMethod.WEIGHTED:
            norm = weighted_normalise(raw, kinds[leg])
        else:  # RELATIVE_SCORE
            norm = relative_normalise(raw)
        w = float(weights.get(leg, 1.0))
        for (doc, _), s in zip(hits, norm, strict=True):
            total[doc] = total.get(doc, 0.0) + w * s
    return sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
