"""Similarity functions and the one place that turns database distances into scores.

Every score the SDK returns follows one rule: higher is better. Databases report
distances with their own conventions (pgvector's ``<#>`` is the *negative* inner
product, Milvus' L2 is squared, Qdrant's EUCLID is plain), so each adapter names its
convention and ``distance_to_score`` applies it here instead of in four copies.
"""

from __future__ import annotations

import enum

from sdk.core.errors import InputError

__all__ = ["DistanceKind", "Similarity", "distance_to_score"]


class Similarity(str, enum.Enum):
    """How two vectors are compared. Values match sentence-transformers' ``similarity_fn_name``."""

    COSINE = "cosine"
    DOT = "dot"
    EUCLIDEAN = "euclidean"
    MANHATTAN = "manhattan"
    HAMMING = "hamming"
    JACCARD = "jaccard"

    @classmethod
    def parse(cls, value: str | Similarity) -> Similarity:
        """Accept the enum or its name, with the aliases sentence-transformers accepts."""
        if isinstance(value, Similarity):
            return value
        aliases = {"cos_sim": "cosine", "dot_score": "dot", "dot_product": "dot", "ip": "dot",
                   "l2": "euclidean", "euclid": "euclidean", "l1": "manhattan"}
        key = str(value).strip().lower()
        key = aliases.get(key, key)
        try:
            return cls(key)
        except ValueError:
            names = ", ".join(s.value for s in cls)
            raise InputError(f"unknown similarity {value!r}; use one of: {names}") from None


class DistanceKind(str, enum.Enum):
    """What a database puts in its score field, so it can be mapped to 'higher is better'."""

    SIMILARITY = "similarity"  # already higher-is-better (cosine similarity, inner product)
    NEG_SIMILARITY = "neg_similarity"  # pgvector <#>: negative inner product
    COSINE_DISTANCE = "cosine_distance"  # 1 - cosine
    DISTANCE = "distance"  # euclidean / manhattan / hamming distance
    SQUARED_DISTANCE = "squared_distance"  # Milvus L2, Weaviate l2-squared


def distance_to_score(value: float, kind: DistanceKind) -> float:
    """Map a raw database value to the SDK's score, where higher always means closer.

    Distances become their negation (euclidean: ``-d``), so rankings are preserved and
    scores agree with ``sdk.util`` (``euclidean_sim`` is ``-distance`` there too).
    """
    if kind is DistanceKind.SIMILARITY:
        return float(value)
    if kind is DistanceKind.NEG_SIMILARITY:
        return -float(value)
    if kind is DistanceKind.COSINE_DISTANCE:
        return 1.0 - float(value)
    if kind is DistanceKind.DISTANCE:
        return -float(value)
    if kind is DistanceKind.SQUARED_DISTANCE:
        return -float(max(value, 0.0)) ** 0.5
    raise InputError(f"unknown distance kind {kind!r}")
