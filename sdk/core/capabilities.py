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

from sdk.core.errors import CapabilityError
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "similarities", {k: _frozen(Similarity.parse(s) for s in v)
                                                  for k, v in dict(self.similarities).items()})
        object.__setattr__(self, "fusions", _frozen(FusionMethod(f) for f in self.fusions))
        for key in ("quantization", "index_kinds", "emulated"):
            object.__setattr__(self, key, _frozen(getattr(self, key)))

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
