"""What a database (as connected) can do natively: ``Capabilities``, checked before any call reaches it.

The retrieval pipeline reads it when it is built, so an unsupported request fails early with
``CapabilityError`` instead of deep inside a driver; the conformance suite reads it to know which
features an adapter claims (a claimed feature must work, an unclaimed one must be refused).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sdk.core.errors import CapabilityError, ConfigError
from sdk.core.similarity import Similarity
from sdk.core.spec import CollectionSpec
from sdk.core.types import FusionMethod

__all__ = ["Capabilities"]


def _frozen(items: Iterable[Any]) -> frozenset[Any]:
    return frozenset(items)


@dataclass(frozen=True)
class Capabilities:
    """What one database (as connected) can do natively; checked before any call reaches it.

    ``similarities`` maps each storage type (``DenseField.storage``) to the similarities the
    database computes for it.
    ``emulated`` names features the engine accepts but only emulates (Qdrant local mode ignores
    quantization and HNSW settings), so tests and users know which claims need a server.
    ``rrf_k`` is the only RRF constant a database's native fusion uses when a query cannot set it
    (``None``: any k); ``rrf_weights`` / ``dbsf_weights`` say whether native RRF / DBSF take
    per-leg weights (the weighted and relative-score methods always do);
    ``leg_candidates`` whether a native hybrid honours ``HybridQuery.candidate_limits`` per leg.
    The retrieval pipeline reads these to choose native fusion or its documented client-side fallback.

    The input limits are what the database would refuse only while writing, after earlier batches
    of the same upsert were committed; ``adapters.validate`` checks every record (and every query
    and filter value) against them before the first write, so a bad record writes nothing:
    ``max_id_bytes`` the longest document id in UTF-8 bytes (``None``: no limit; Milvus keeps ids
    in a VARCHAR column); ``max_sparse_index`` the largest sparse index (uint32 engines reserve
    the last value; pgvector's ``sparsevec`` has a fixed dimension); ``max_sparse_nnz`` the most
    non-zero entries of one sparse vector (``None``: no limit; pgvector: 16,000); ``sparse_negative``
    whether sparse weights may be negative (Milvus refuses them);
    ``text_allows_nul`` whether strings (ids, text, metadata keys and values, filter values) may
    hold U+0000 (PostgreSQL ``text`` and ``jsonb`` cannot); ``max_int`` the largest integer magnitude
    in metadata and filters, which must lie in ``[-max_int - 1, max_int]`` (``None``: any size;
    int64 engines: ``2**63 - 1``); ``max_limit`` the most hits one query may ask for (``None``: no
    limit; Milvus: 16,384). Strings with lone surrogates are refused everywhere: no
    database stores text that is not valid Unicode. ``reserved_names`` are names the adapter keeps
    its own bookkeeping under (pgvector's metadata tables, Milvus Lite's alias registry): no
    collection may take one.
    """

    name: str
    similarities: Mapping[str, frozenset[Similarity]]
    sparse: bool = False
    sparse_idf: bool = False
    fusions: frozenset[FusionMethod] = frozenset()
    text_leg: bool = False
    aliases: bool = False
    matryoshka: bool = False
    quantization: frozenset[str] = frozenset()
    index_kinds: frozenset[str] = frozenset({"auto", "flat"})
    emulated: frozenset[str] = frozenset()
    max_payload_bytes: int = 65_536
    max_text_bytes: int = 65_535
    rrf_k: int | None = None
    rrf_weights: bool = True
    dbsf_weights: bool = True
    leg_candidates: bool = True
    max_id_bytes: int | None = None
    max_sparse_index: int = 2**32 - 2
    max_sparse_nnz: int | None = None
    sparse_negative: bool = True
    text_allows_nul: bool = True
    max_int: int | None = 2**63 - 1
    max_limit: int | None = None
    reserved_names: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "similarities", {k: _frozen(Similarity.parse(s) for s in v)
                                                  for k, v in dict(self.similarities).items()})
        object.__setattr__(self, "fusions", _frozen(FusionMethod(f) for f in self.fusions))
        for key in ("quantization", "index_kinds", "emulated", "reserved_names"):
            object.__setattr__(self, key, _frozen(getattr(self, key)))
        for key in ("max_payload_bytes", "max_text_bytes", "max_sparse_index", "max_id_bytes", "max_sparse_nnz",
                    "max_int", "max_limit"):
            value = getattr(self, key)
            if value is None and key in ("max_id_bytes", "max_sparse_nnz", "max_int", "max_limit"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"Capabilities.{key} must be a positive integer, got {value!r}")

    @property
    def min_int(self) -> int | None:
        """The smallest integer metadata and filters may hold (``-max_int - 1``; ``None``: any)."""
        return None if self.max_int is None else -self.max_int - 1

    @property
    def storage_types(self) -> frozenset[str]:
        """The storage types (``DenseField.storage``) this database keeps dense vectors in."""
        return frozenset(self.similarities)

    @property
    def metrics(self) -> Mapping[str, frozenset[Similarity]]:
        """Deprecated name of ``similarities``."""
        warnings.warn("Capabilities.metrics is deprecated; read .similarities", DeprecationWarning, stacklevel=2)
        return self.similarities

    @property
    def precisions(self) -> frozenset[str]:
        """Deprecated name of ``storage_types``."""
        warnings.warn("Capabilities.precisions is deprecated; read .storage_types", DeprecationWarning, stacklevel=2)
        return self.storage_types

    def supports(self, storage: str, similarity: Similarity | str) -> bool:
        """Whether a ``storage`` field can be searched with ``similarity`` here."""
        return Similarity.parse(similarity) in self.similarities.get(storage, frozenset())

    def check_spec(self, spec: CollectionSpec) -> None:
        """Raise ``CapabilityError`` naming the first thing in ``spec`` this database cannot store."""
        if spec.name in self.reserved_names:
            raise CapabilityError(
                f"{spec.name!r} is the name {self.name} keeps its own bookkeeping under; choose another collection name"
            )
        for f in spec.dense:
            if not self.supports(f.storage, f.similarity):
                have = {p: sorted(s.value for s in m) for p, m in sorted(self.similarities.items())}
                raise CapabilityError(
                    f"{self.name} cannot store {f.storage} vectors compared with {f.similarity.value} "
                    f"(field {f.name!r}); it supports {have}. Choose another similarity/storage or database"
                )
            if f.matryoshka_dim and not self.matryoshka:
                raise CapabilityError(f"{self.name} has no Matryoshka multi-stage search (field {f.name!r})")
            if f.index.quantization and f.index.quantization not in self.quantization:
                raise CapabilityError(
                    f"{self.name} has no {f.index.quantization} index quantization (field {f.name!r}); "
                    f"supported: {sorted(self.quantization) or 'none'}"
                )
            if f.index.kind not in self.index_kinds:
                raise CapabilityError(
                    f"{self.name} has no {f.index.kind} index (field {f.name!r}); "
                    f"supported: {sorted(self.index_kinds)}"
                )
        if spec.sparse and not self.sparse:
            raise CapabilityError(f"{self.name} does not store user-supplied sparse vectors")
        for s in spec.sparse:
            if s.idf and not self.sparse_idf:
                raise CapabilityError(f"{self.name} has no IDF modifier for sparse field {s.name!r}; set idf=False")

    def check_fusion(self, method: FusionMethod) -> None:
        if method not in self.fusions:
            raise CapabilityError(
                f"{self.name} has no native {method.value} fusion; supported: "
                f"{sorted(f.value for f in self.fusions) or 'none'}"
            )
