"""The in-process reference adapter: exact numpy search over everything the protocol can express.

It claims every capability so the conformance suite can compare any database's answer with an
exact one: all metrics, float16 / int8 / binary stored without loss, sparse dot (with Qdrant's
IDF formula), Matryoshka two-stage search, RRF / DBSF / weighted / relative-score fusion, aliases.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np

from adapters.base import Adapter
from adapters.blas import one_blas_thread
from adapters.filters import PythonFilter
from adapters.ids import CursorPages
from adapters.memory.scoring import dense_scores, idf_weights, sparse_scores
from adapters.validate import DenseLeg, PreparedRecord, QueryPlan
from sdk.core.capabilities import Capabilities
from sdk.core.errors import CollectionNotFoundError, ConfigError, InputError
from sdk.core.fusion import fuse
from sdk.core.similarity import Similarity
from sdk.core.spec import CollectionSpec
from sdk.core.types import Filter, FusionMethod, Hit

__all__ = ["MEMORY_CAPABILITIES", "MemoryAdapter"]

_FLOAT = frozenset({Similarity.COSINE, Similarity.DOT, Similarity.EUCLIDEAN, Similarity.MANHATTAN})
MEMORY_CAPABILITIES = Capabilities(
    name="memory",
    similarities={"float32": _FLOAT, "float16": _FLOAT, "int8": _FLOAT,
             "binary": frozenset({Similarity.HAMMING, Similarity.JACCARD})},
    sparse=True,
    sparse_idf=True,
    fusions=frozenset(FusionMethod),
    aliases=True,
    matryoshka=True,
    quantization=frozenset({"int8", "binary", "pq"}),
    index_kinds=frozenset({"auto", "flat", "hnsw", "ivf_flat"}),
    max_payload_bytes=65_536,
)


class _Collection:
    def __init__(self, spec: CollectionSpec) -> None:
        self.spec = spec
        self.records: dict[str, PreparedRecord] = {}


class MemoryAdapter(Adapter):
    """Exact search in process memory. Index settings and quantization are accepted and do not
    change results: quantized databases rescore with the original vectors, which is this answer."""

    def __init__(self) -> None:
        self._collections: dict[str, _Collection] = {}
        self._aliases: dict[str, str] = {}
        self._lock = threading.RLock()

    @classmethod
    def from_url(cls, url: str) -> MemoryAdapter:
        """``memory://``: a new, empty store (each connect is its own; nothing is shared or kept)."""
        if url.split(":", 1)[-1].strip("/"):
            raise ConfigError(f"the memory store takes no host or path: use 'memory://', got {url!r}")
        return cls()

    @property
    def capabilities(self) -> Capabilities:
        return MEMORY_CAPABILITIES

    def _resolve(self, name: str) -> _Collection:
        coll = self._collections.get(self._aliases.get(name, name))
        if coll is None:
            raise CollectionNotFoundError(f"collection or alias {name!r} does not exist")
        return coll

    def _read_spec(self, name: str) -> CollectionSpec | None:
        coll = self._collections.get(self._aliases.get(name, name))
        return coll.spec if coll else None

    def _create(self, spec: CollectionSpec) -> None:
        with self._lock:
            if spec.name in self._aliases:
                raise InputError(f"{spec.name!r} is already an alias; choose another collection name")
            self._collections[spec.name] = _Collection(spec)

    def _upsert_batch(self, spec: CollectionSpec, name: str, batch: list[PreparedRecord]) -> None:
        with self._lock:
            coll = self._resolve(name)
            for rec in batch:
                coll.records[rec.pid] = rec

    def _get(self, spec: CollectionSpec, name: str, pids: list[str]) -> list[PreparedRecord]:
        coll = self._resolve(name)
        return [coll.records[p] for p in pids if p in coll.records]

    def _delete(self, spec: CollectionSpec, name: str, pids: list[str]) -> None:
        with self._lock:
            coll = self._resolve(name)
            for p in pids:
                coll.records.pop(p, None)

    def _scan_ids(self, spec: CollectionSpec, name: str, batch_size: int) -> CursorPages[int]:
        with self._lock:  # a snapshot: writes during the scan neither break nor shift the pages
            doc_ids = [r.doc_id for r in self._resolve(name).records.values()]

        def page(start: int | None) -> tuple[list[str], int | None]:
            end = (start or 0) + batch_size
            return doc_ids[start or 0:end], (end if end < len(doc_ids) else None)

        return CursorPages(page)

    def _matching(self, spec: CollectionSpec, name: str, filter: Filter | None) -> list[PreparedRecord]:
        recs = list(self._resolve(name).records.values())
        if filter is None:
            return recs
        pred = PythonFilter(spec).translate(filter)
        return [r for r in recs if pred(r.metadata)]

    def _count(self, spec: CollectionSpec, name: str, filter: Filter | None) -> int:
        return len(self._matching(spec, name, filter))

    def _search(self, spec: CollectionSpec, name: str, plan: QueryPlan) -> list[Hit]:
        with one_blas_thread():  # adapters.blas: a spinning BLAS pool slows the encoder beside it
            return self._search_all(spec, name, plan)

    def _search_all(self, spec: CollectionSpec, name: str, plan: QueryPlan) -> list[Hit]:
        all_recs = list(self._resolve(name).records.values())
        recs = self._matching(spec, name, plan.filter)
        by_pid = {r.pid: r for r in recs}
        legs: dict[str, list[tuple[str, float]]] = {}
        kinds: dict[str, str] = {}
        if plan.dense is not None and recs:
            legs["dense"] = self._dense_leg(plan.dense, recs)
            kinds["dense"] = plan.dense.field.similarity.value
        if plan.sparse is not None and recs:
            sf = plan.sparse.field
            idf = idf_weights([r.sparse[sf.name] for r in all_recs]) if sf.idf else None
            qidx = set(plan.sparse.vector.indices)
            hit = [r for r in recs if qidx.intersection(r.sparse[sf.name].indices)]  # engines skip no-overlap docs
            scores = sparse_scores([r.sparse[sf.name] for r in hit], plan.sparse.vector, idf)
            legs["sparse"] = _top(hit, scores, plan.sparse.candidates)
            kinds["sparse"] = "sparse"
        if not legs:
            return []
        if plan.hybrid:
            f = plan.fusion
            fused = fuse(legs, f.method, f.k, f.weights, kinds, plan.limit)
            return [_hit(by_pid[pid], s, {"fused": s}) for pid, s in fused]
        (leg, ranked), = legs.items()
        return [_hit(by_pid[pid], s, {leg: s}) for pid, s in ranked[: plan.limit]]

    @staticmethod
    def _dense_leg(leg: DenseLeg, recs: list[PreparedRecord]) -> list[tuple[str, float]]:
        f = leg.field
        if leg.prefix is not None and f.prefix_name:
            pre = np.stack([r.dense[f.prefix_name] for r in recs])
            first = _top(recs, dense_scores(f.similarity, pre, leg.prefix), leg.prefix_candidates)
            keep = {pid for pid, _ in first}
            recs = [r for r in recs if r.pid in keep]
        full = np.stack([r.dense[f.name] for r in recs])
        return _top(recs, dense_scores(f.similarity, full, leg.vector), leg.candidates)

    def _drop(self, name: str) -> bool:
        with self._lock:
            existed = self._collections.pop(name, None) is not None
            self._aliases = {a: t for a, t in self._aliases.items() if t != name}
            return existed

    def _create_alias(self, alias: str, collection: str) -> None:
        with self._lock:
            if alias in self._aliases or alias in self._collections:
                raise InputError(f"alias {alias!r} already exists; use switch_alias to re-point it")
            self._aliases[alias] = collection

    def _switch_alias(self, alias: str, collection: str) -> None:
        with self._lock:
            if alias in self._collections:
                raise InputError(f"{alias!r} is a collection, not an alias")
            self._aliases[alias] = collection

    def _delete_alias(self, alias: str) -> bool:
        with self._lock:
            return self._aliases.pop(alias, None) is not None

    def aliases(self) -> Mapping[str, str]:
        """Current alias -> collection map (for inspection and tests)."""
        return dict(self._aliases)

    def _list_names(self) -> list[str]:
        with self._lock:
            return list(self._collections)

    def _list_aliases(self) -> dict[str, str]:
        return self.aliases()


def _top(recs: list[PreparedRecord], scores: np.ndarray, n: int) -> list[tuple[str, float]]:
    order = sorted(range(len(recs)), key=lambda i: (-scores[i], recs[i].doc_id))[:n]
    return [(recs[i].pid, float(scores[i])) for i in order]


def _hit(rec: PreparedRecord, score: float, stages: dict[str, float]) -> Hit:
    return Hit(rec.doc_id, float(score), rec.text or None, dict(rec.metadata), stages)
