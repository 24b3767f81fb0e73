"""Neutral value types that cross every boundary: encoders, adapters, pipeline, CLI.

No driver type appears here; each adapter translates these into its own client's
objects. All are small frozen dataclasses validated on construction.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sdk.core.errors import InputError

__all__ = [
    "And",
    "Document",
    "EncodedBatch",
    "Eq",
    "Filter",
    "Fusion",
    "FusionMethod",
    "Hit",
    "HybridQuery",
    "In",
    "Not",
    "Or",
    "Range",
    "Record",
    "SparseVector",
]


@dataclass(frozen=True)
class SparseVector:
    """A sparse vector as sorted, unique ``indices`` with their non-zero ``values``."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        idx = tuple(int(i) for i in self.indices)
        val = tuple(float(v) for v in self.values)
        if len(idx) != len(val):
            raise InputError(
                f"SparseVector has {len(idx)} indices but {len(val)} values; pass one value per index"
            )
        if any(i < 0 for i in idx):
            raise InputError("SparseVector indices must be >= 0")
        if len(set(idx)) != len(idx):
            raise InputError("SparseVector indices must be unique; sum duplicate entries first")
        if any(not math.isfinite(v) for v in val):
            raise InputError("SparseVector values must be finite (found NaN or inf)")
        order = sorted(range(len(idx)), key=idx.__getitem__)
        object.__setattr__(self, "indices", tuple(idx[i] for i in order))
        object.__setattr__(self, "values", tuple(val[i] for i in order))

    @classmethod
    def from_dense(cls, dense: Sequence[float] | np.ndarray) -> SparseVector:
        """Keep the non-zero entries of a dense array."""
        arr = np.asarray(dense, dtype=np.float32).ravel()
        nz = np.flatnonzero(arr)
        return cls(tuple(nz.tolist()), tuple(arr[nz].tolist()))

    def to_dense(self, dim: int) -> np.ndarray:
        """Expand to a dense float32 array of width ``dim``."""
        if self.indices and self.indices[-1] >= dim:
            raise InputError(f"SparseVector index {self.indices[-1]} does not fit dimension {dim}")
        out = np.zeros(dim, dtype=np.float32)
        out[list(self.indices)] = self.values
        return out

    def dot(self, other: SparseVector) -> float:
        """Inner product over shared indices."""
        mine = dict(zip(self.indices, self.values, strict=True))
        return float(sum(mine[i] * v for i, v in zip(other.indices, other.values, strict=True) if i in mine))

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class Document:
    """A text to index. ``id`` is the caller's stable key; adapters derive storage ids from it."""

    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise InputError(f"Document.id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.text, str):
            raise InputError(f"Document.text must be a string, got {type(self.text).__name__}")


@dataclass(frozen=True)
class Record:
    """What an adapter stores: a document id, its vectors by field name, text and payload."""

    id: str
    vectors: Mapping[str, np.ndarray] = field(default_factory=dict)
    sparse: Mapping[str, SparseVector] = field(default_factory=dict)
    text: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise InputError(f"Record.id must be a non-empty string, got {self.id!r}")
        for name, vec in self.vectors.items():
            arr = np.asarray(vec)
            if arr.ndim != 1:
                raise InputError(f"vector {name!r} of record {self.id!r} must be 1-D, got {arr.shape}")
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise InputError(f"vector {name!r} of record {self.id!r} holds NaN or inf")


@dataclass(frozen=True)
class EncodedBatch:
    """Documents with the vectors their encoders produced, row-aligned."""

    documents: tuple[Document, ...]
    dense: Mapping[str, np.ndarray] = field(default_factory=dict)
    sparse: Mapping[str, tuple[SparseVector, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.documents)
        for name, arr in self.dense.items():
            if len(arr) != n:
                raise InputError(f"dense field {name!r} has {len(arr)} rows for {n} documents")
        for name, vecs in self.sparse.items():
            if len(vecs) != n:
                raise InputError(f"sparse field {name!r} has {len(vecs)} rows for {n} documents")

    def records(self) -> list[Record]:
        """One ``Record`` per document."""
        return [
            Record(
                id=doc.id,
                vectors={k: v[i] for k, v in self.dense.items()},
                sparse={k: v[i] for k, v in self.sparse.items()},
                text=doc.text,
                metadata=dict(doc.metadata),
            )
            for i, doc in enumerate(self.documents)
        ]


@dataclass(frozen=True)
class Hit:
    """One search result. ``scores_by_stage`` keeps every stage's score (dense, sparse, fused, rerank)."""

    id: str
    score: float
    text: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    scores_by_stage: Mapping[str, float] = field(default_factory=dict)


# ---- filters ---------------------------------------------------------------------------

Scalar = str | int | float | bool


@dataclass(frozen=True)
class Eq:
    """``field == value``."""

    field: str
    value: Scalar


@dataclass(frozen=True)
class In:
    """``field`` is one of ``values``."""

    field: str
    values: tuple[Scalar, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        if not self.values:
            raise InputError(f"In({self.field!r}) needs at least one value")


@dataclass(frozen=True)
class Range:
    """``gte <= field <= lte`` (and strict ``gt`` / ``lt``); unset bounds are open."""

    field: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    def __post_init__(self) -> None:
        if all(b is None for b in (self.gt, self.gte, self.lt, self.lte)):
            raise InputError(f"Range({self.field!r}) needs at least one bound (gt, gte, lt, lte)")


@dataclass(frozen=True)
class And:
    """All sub-filters hold."""

    filters: tuple[Filter, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "filters", tuple(self.filters))


@dataclass(frozen=True)
class Or:
    """At least one sub-filter holds."""

    filters: tuple[Filter, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "filters", tuple(self.filters))


@dataclass(frozen=True)
class Not:
    """The sub-filter does not hold."""

    filter: Filter


Filter = Eq | In | Range | And | Or | Not


# ---- hybrid queries --------------------------------------------------------------------


class FusionMethod(str, enum.Enum):
    """How the legs of a hybrid query are merged."""

    RRF = "rrf"  # reciprocal rank fusion: sum of w / (k + rank)
    WEIGHTED = "weighted"  # weighted sum of (normalised) scores
    RELATIVE_SCORE = "relative_score"  # min-max normalised scores (Weaviate relativeScoreFusion)
    DBSF = "dbsf"  # distribution-based score fusion (Qdrant)


@dataclass(frozen=True)
class Fusion:
    """The fusion setting of a hybrid query: method, RRF ``k`` and one weight per leg."""

    method: FusionMethod = FusionMethod.RRF
    k: int = 60
    weights: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", FusionMethod(self.method))
        if self.k < 1:
            raise InputError(f"Fusion.k must be >= 1, got {self.k}")
        if any(w < 0 for w in self.weights.values()):
            raise InputError("Fusion weights must be >= 0")


@dataclass(frozen=True)
class HybridQuery:
    """A query with up to three legs (dense vector, sparse vector, text) fused into one ranking."""

    dense: np.ndarray | None = None
    sparse: SparseVector | None = None
    text: str | None = None
    dense_field: str = "dense"
    sparse_field: str = "sparse"
    filter: Filter | None = None
    fusion: Fusion = field(default_factory=Fusion)
    candidate_limits: Mapping[str, int] = field(default_factory=dict)
    limit: int = 10

    def __post_init__(self) -> None:
        if self.dense is None and self.sparse is None and self.text is None:
            raise InputError("HybridQuery needs at least one of dense, sparse or text")
        if self.limit < 1:
            raise InputError(f"HybridQuery.limit must be >= 1, got {self.limit}")
        if self.dense is not None:
            arr = np.asarray(self.dense)
            if arr.ndim != 1:
                raise InputError(f"HybridQuery.dense must be one 1-D vector, got shape {arr.shape}")
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise InputError("HybridQuery.dense holds NaN or inf")

    def candidates(self, leg: str) -> int:
        """Per-leg candidate limit (defaults to 4x the final limit, at least 50)."""
        return int(self.candidate_limits.get(leg, max(4 * self.limit, 50)))
