"""Exact scores in numpy: the reference every database adapter is compared against.

Fusion formulas live in ``sdk.core.fusion`` (shared with the pipeline's client-side fallback).

Scores follow the SDK rule "higher is better": cosine similarity, inner product, and negated
euclidean / manhattan / hamming / jaccard distance (``sdk.core.similarity.distance_to_score``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from sdk.core.errors import InputError
from sdk.core.similarity import Similarity
from sdk.core.types import SparseVector

__all__ = ["dense_scores", "idf_weights", "sparse_scores"]


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
