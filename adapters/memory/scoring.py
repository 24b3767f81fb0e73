"""Exact scores and fusions in numpy: the reference every database adapter is compared against.

Scores follow the SDK rule "higher is better": cosine similarity, inner product, and negated
euclidean / manhattan / hamming / jaccard distance (``sdk.metrics.distance_to_score``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from adapters._common import rrf_fuse
from sdk.errors import InputError
from sdk.metrics import Similarity
from sdk.types import FusionMethod, SparseVector

__all__ = ["dense_scores", "fuse", "idf_weights", "sparse_scores"]


def dense_scores(similarity: Similarity, matrix: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Score every row of ``matrix`` against ``q`` in float64 (bits as 0/1 for hamming/jaccard)."""
    m = matrix.astype(np.float64, copy=False)
    v = q.astype(np.float64, copy=False)
    if similarity is Similarity.COSINE:
        norms = np.linalg.norm(m, axis=1) * np.linalg.norm(v)
        return np.divide(m @ v, norms, out=np.zeros(len(m)), where=norms > 0)
    if similarity is Similarity.DOT:
        return m @ v
    if similarity is Similarity.EUCLIDEAN:
        return -np.linalg.norm(m - v, axis=1)
    if similarity is Similarity.MANHATTAN:
        return -np.abs(m - v).sum(axis=1)
    if similarity is Similarity.HAMMING:
        return -(m != v).sum(axis=1).astype(np.float64)
    if similarity is Similarity.JACCARD:
        inter = np.logical_and(m > 0, v > 0).sum(axis=1)
        union = np.logical_or(m > 0, v > 0).sum(axis=1)
        return -(1.0 - np.divide(inter, union, out=np.ones(len(m)), where=union > 0))
    raise InputError(f"no exact scorer for {similarity}")


def idf_weights(docs: Sequence[SparseVector]) -> dict[int, float]:
    """Qdrant's IDF: ``ln((N - n + 0.5) / (n + 0.5) + 1)`` per index over the stored vectors."""
    n_docs = len(docs)
    df: dict[int, int] = {}
    for d in docs:
        for i in d.indices:
            df[i] = df.get(i, 0) + 1
    return {i: math.log((n_docs - n + 0.5) / (n + 0.5) + 1.0) for i, n in df.items()}


def sparse_scores(docs: Sequence[SparseVector], q: SparseVector, idf: Mapping[int, float] | None) -> np.ndarray:
    """Dot product of ``q`` (IDF-weighted when ``idf`` is given) with each stored sparse vector."""
    weights = {i: v * (idf.get(i, 0.0) if idf is not None else 1.0) for i, v in zip(q.indices, q.values, strict=True)}
    out = np.zeros(len(docs))
    for row, d in enumerate(docs):
        out[row] = sum(weights[i] * v for i, v in zip(d.indices, d.values, strict=True) if i in weights)
    return out


def _dbsf(scores: Sequence[float]) -> list[float]:
    if len(scores) == 1:
        return [0.5]
    mean = sum(scores) / len(scores)
    var = sum((s - mean) ** 2 for s in scores) / (len(scores) - 1)
    if var == 0:
        return [0.5] * len(scores)
    low, high = mean - 3 * var**0.5, mean + 3 * var**0.5
    return [(s - low) / (high - low) for s in scores]


def _atan_norm(scores: Sequence[float], similarity: str) -> list[float]:
    # Milvus WeightedRanker: IP -> 0.5 + atan(s)/pi, cosine -> (1 + s) / 2, distances -> 1 - 2 atan(d)/pi
    if similarity == "cosine":
        return [(1 + s) / 2 for s in scores]
    if similarity in ("dot", "sparse"):
        return [0.5 + math.atan(s) / math.pi for s in scores]
    return [1 - 2 * math.atan(-s) / math.pi for s in scores]


def fuse(
    legs: Mapping[str, list[tuple[str, float]]],
    method: FusionMethod,
    k: int,
    weights: Mapping[str, float],
    kinds: Mapping[str, str],
    limit: int,
) -> list[tuple[str, float]]:
    """Fuse per-leg rankings ``[(id, score), ...]`` (best first) with the given method."""
    if method is FusionMethod.RRF:
        return rrf_fuse({leg: [i for i, _ in hits] for leg, hits in legs.items()}, k, weights, limit)
    total: dict[str, float] = {}
    for leg, hits in legs.items():
        if not hits:
            continue
        raw = [s for _, s in hits]
        if method is FusionMethod.DBSF:
            norm = _dbsf(raw)
        elif method is FusionMethod.WEIGHTED:
            norm = _atan_norm(raw, kinds[leg])
        else:  # RELATIVE_SCORE: min-max per leg
            lo, hi = min(raw), max(raw)
            norm = [(s - lo) / (hi - lo) if hi > lo else 1.0 for s in raw]
        w = float(weights.get(leg, 1.0))
        for (doc, _), s in zip(hits, norm, strict=True):
            total[doc] = total.get(doc, 0.0) + w * s
    return sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
