"""The stored-spec guard read beside the search (``Adapter._overlap_guard``) refuses what the read-first
guard refused, and returns the same hits.

The overlap is what server adapters do (issue 18: the read was a round trip before every query); here
it is switched on for the in-memory reference, so the logic is tested exactly and without a server,
on the sync path (a worker thread reads) and on the async twin's path (a task reads). The same
scenarios on real servers: tests/integration/test_guard_overlap.py.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from adapters.aio import AsyncAdapter
from adapters.base import CollectionSpec, DenseField, QueryPlan
from adapters.memory import MemoryAdapter
from sdk.core.errors import CollectionNotFoundError, DimensionMismatchError, SchemaMismatchError
from sdk.core.similarity import Similarity
from sdk.core.types import Hit, HybridQuery, Record

DIM = 8


class Overlapping(MemoryAdapter):
    """The reference with the server adapters' overlap; records which thread read the spec."""

    def __init__(self) -> None:
        super().__init__()
        self.readers: list[int] = []

    def _overlap_guard(self) -> bool:
        return True

    def _read_spec(self, name: str) -> CollectionSpec | None:
        self.readers.append(threading.get_ident())
        return super()._read_spec(name)

    def _async_twin(self) -> AsyncAdapter:
        return _Twin(self)


class _Twin(AsyncAdapter):
    """A native-style twin whose 'client' is the sync reference: ``aquery`` takes the overlapped path."""

    async def _aopen(self) -> Any:
        return object()

    async def _aclose_client(self, client: Any) -> None:
        return None

    async def _aread_spec(self, client: Any, name: str) -> CollectionSpec | None:
        await asyncio.sleep(0)
        return self.sync._read_spec(name)

    async def _asearch(self, client: Any, spec: CollectionSpec, name: str, plan: QueryPlan) -> list[Hit]:
        return self.sync._search(spec, name, plan)


def spec(name: str, encoder: str = "dense=model-a", dim: int = DIM) -> CollectionSpec:
    return CollectionSpec(name, (DenseField("dense", dim, Similarity.COSINE),), (), (), encoder)


def fill(store: Overlapping, s: CollectionSpec, prefix: str) -> None:
    rng = np.random.default_rng(len(prefix))
    store.ensure_collection(s)
    store.upsert(s.name, [Record(f"{prefix}{i}", {"dense": rng.normal(size=s.dense[0].dim).astype(np.float32)},
                                 text=f"doc {i}") for i in range(6)])


def query(dim: int = DIM) -> HybridQuery:
    return HybridQuery(dense=np.ones(dim, dtype=np.float32), limit=3)


def both(store: Overlapping, name: str, expect: CollectionSpec) -> tuple[list[str], list[str]]:
    """Hit ids from ``query`` and from the async twin's ``aquery``."""
    sync = [h.id for h in store.query(name, query(), expect=expect)]
    hits = asyncio.run(store.aio().aquery(name, query(), expect=expect))
    return sync, [h.id for h in hits]


def test_the_hits_are_the_read_first_guards_and_the_read_runs_beside_the_search() -> None:
    store = Overlapping()
    fill(store, spec("kb"), "a")
    expect = store.describe("kb")
    wanted = [h.id for h in MemoryAdapter.query(store, "kb", query(), expect=expect)]  # no overlap: read first
    store.readers.clear()
    assert both(store, "kb", expect) == (wanted, wanted)
    assert store.readers[0] != threading.get_ident()  # a guard thread read the spec while the search ran


@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_collection_rebuilt_for_other_vectors_is_refused(path: str) -> None:
    store = Overlapping()
    fill(store, spec("kb"), "a")
    expect = store.describe("kb")
    run = (lambda: store.query("kb", query(), expect=expect)) if path == "sync" else \
        (lambda: asyncio.run(store.aio().aquery("kb", query(), expect=expect)))
    store.drop("kb")
    fill(store, spec("kb", encoder="dense=model-b"), "b")  # same width, another model: garbage hits
    with pytest.raises(SchemaMismatchError, match="encoder"):
        run()
    store.drop("kb")
    fill(store, spec("kb", dim=DIM * 2), "c")  # another width: the search itself fails, the guard says why
    with pytest.raises(DimensionMismatchError):
        run()
    store.drop("kb")
    with pytest.raises(CollectionNotFoundError):
        run()


def test_an_alias_moved_to_another_version_of_the_schema_is_searched_where_it_points_now() -> None:
    store = Overlapping()
    fill(store, spec("kb_v1"), "old")
    store.switch_alias("kb", "kb_v1")
    expect = store.describe("kb")
    assert expect.name == "kb_v1"
    fill(store, spec("kb_v2"), "new")
    store.switch_alias("kb", "kb_v2")  # the search first runs on kb_v1 (still there), then again on kb_v2
    sync, aio = both(store, "kb", expect)
    assert sync == aio and sync and all(i.startswith("new") for i in sync)
    store.drop("kb_v1")
    assert both(store, "kb", expect) == (sync, sync)  # the first search fails on the dropped kb_v1: no matter
