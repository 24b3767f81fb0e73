"""pgvector's mapping table: storage -> column type, similarity -> operator / opclass / score kind.

One table instead of conditionals spread over the SQL builders, so a metric cannot be indexed
with one operator family and searched with another (pgvector then silently scans without the
index, or orders by the wrong distance).
"""

from __future__ import annotations

from dataclasses import dataclass

from sdk.core.errors import CapabilityError
from sdk.core.similarity import DistanceKind, Similarity

__all__ = [
    "HNSW_MAX_DIM",
    "SPARSE_DIM",
    "ColumnType",
    "MetricOps",
    "column_type",
    "metric_ops",
]

# pgvector 0.8 stores sparse vectors with a fixed dimension that both operands of ``<#>`` must
# share. The SDK's SparseField has no vocabulary size, so every sparse column uses pgvector's
# maximum; the dimension costs 4 bytes per value and changes no score.
SPARSE_DIM = 1_000_000_000

# Largest widths pgvector 0.8 can put in an HNSW / IVFFlat index, per storage type.
HNSW_MAX_DIM = {"vector": 2_000, "halfvec": 4_000, "bit": 64_000}


@dataclass(frozen=True)
class ColumnType:
    """The SQL type that stores one storage (``name`` is also the opclass prefix)."""

    name: str  # vector | halfvec | bit

    def sql(self, dim: int) -> str:
        """Type with its width, e.g. ``vector(384)``; ``dim`` is an int from a validated spec."""
        return f"{self.name}({int(dim)})"


_COLUMN_TYPES = {
    "float32": ColumnType("vector"),
    # int8 values are integers in [-128, 127]: float32 stores them exactly, and every float metric
    # applies; pgvector has no 1-byte vector type, so this saves no space but loses nothing.
    "int8": ColumnType("vector"),
    "float16": ColumnType("halfvec"),
    "binary": ColumnType("bit"),
}


@dataclass(frozen=True)
class MetricOps:
    """How one similarity is computed on one column type."""

    operator: str  # SQL operator, e.g. ``<=>``
    opclass_suffix: str  # e.g. ``cosine_ops`` -> ``vector_cosine_ops``
    kind: DistanceKind  # what the operator returns, for ``sdk.core.similarity.distance_to_score``

    @property
    def sql_operator(self) -> str:
        """The operator as text for a statement with bound parameters (``%`` doubled, as psycopg wants)."""
        return self.operator.replace("%", "%%")

    def opclass(self, column: ColumnType) -> str:
        return f"{column.name}_{self.opclass_suffix}"


_FLOAT_OPS = {
    Similarity.COSINE: MetricOps("<=>", "cosine_ops", DistanceKind.COSINE_DISTANCE),
    Similarity.DOT: MetricOps("<#>", "ip_ops", DistanceKind.NEG_SIMILARITY),
    Similarity.EUCLIDEAN: MetricOps("<->", "l2_ops", DistanceKind.DISTANCE),
    Similarity.MANHATTAN: MetricOps("<+>", "l1_ops", DistanceKind.DISTANCE),
}
_BIT_OPS = {
    Similarity.HAMMING: MetricOps("<~>", "hamming_ops", DistanceKind.DISTANCE),
    # ``<%>`` is the Jaccard distance 1 - J; like every distance its score is ``-d``.
    Similarity.JACCARD: MetricOps("<%>", "jaccard_ops", DistanceKind.DISTANCE),
}
# Binary-quantized first pass over a float column: hamming over ``binary_quantize(col)``.
BINARY_QUANTIZED_OPS = _BIT_OPS[Similarity.HAMMING]
# Sparse vectors are compared by inner product; ``<#>`` returns its negation.
SPARSE_OPS = MetricOps("<#>", "ip_ops", DistanceKind.NEG_SIMILARITY)

SUPPORTED_METRICS: dict[str, frozenset[Similarity]] = {
    "float32": frozenset(_FLOAT_OPS),
    "float16": frozenset(_FLOAT_OPS),
    "int8": frozenset(_FLOAT_OPS),
    "binary": frozenset(_BIT_OPS),
}


def column_type(storage: str) -> ColumnType:
    """Column type for a storage; unknown storage types are a capability gap, not a guess."""
    try:
        return _COLUMN_TYPES[storage]
    except KeyError:
        raise CapabilityError(
            f"pgvector has no storage for storage {storage!r}; use one of {sorted(_COLUMN_TYPES)}"
        ) from None


def metric_ops(storage: str, similarity: Similarity) -> MetricOps:
    """Operator family for a storage and similarity, or ``CapabilityError`` naming what exists."""
    table = _BIT_OPS if storage == "binary" else _FLOAT_OPS
    try:
        return table[similarity]
    except KeyError:
        have = ", ".join(s.value for s in table)
        raise CapabilityError(
            f"pgvector cannot compare {storage} vectors with {similarity.value}; supported: {have}"
        ) from None
