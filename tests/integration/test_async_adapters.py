"""Each engine's async twin (``adapter.aio()``) against its real database, and the PostgreSQL pools.

- ``aquery`` answers exactly what ``query`` answers (dense, filtered, Matryoshka two-stage, hybrid)
  and refuses what ``query`` refuses, with the same error types;
- the twin is native where the driver has a usable async client (PostgreSQL, Weaviate, Milvus incl.
  Lite, a Qdrant server) and says so; Qdrant local mode falls back to a worker thread;
- PostgreSQL: every borrowed connection goes back to its pool after failing queries and after
  cancelled tasks (sync and async pools), and the async connections close when the event loop ends.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest

from adapters import connect
from adapters.base import Adapter, CollectionSpec, DenseField, SparseField
from adapters.pgvector import PgvectorAdapter
from adapters.testing import make_records
from adapters.testing.conformance import PAYLOAD
from sdk.core.errors import CollectionNotFoundError, DimensionMismatchError, InputError
from sdk.core.types import Eq, Fusion, HybridQuery

ENGINES = ["postgres", "weaviate", "milvus", "qdrant"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[tuple[str, Adapter]]:
    url = request.getfixturevalue(f"{request.param}_url")
    adapter = connect(url)
    try:
        yield request.param, adapter
    finally:
        adapter.close()


def _name() -> str:
    return f"rf_async_{uuid.uuid4().hex[:10]}"


def _queries(adapter: Adapter) -> list[HybridQuery]:
    rng = np.random.default_rng(3)
    caps = adapter.capabilities
    dense = [rng.standard_normal(32).astype(np.float32) for _ in range(3)]
    out = [HybridQuery(dense=dense[0], limit=7),
           HybridQuery(dense=dense[1], limit=5, filter=Eq("kind", "beta"))]
    if caps.sparse:
        rec = make_records(1, seed=11)[0]
        out.append(HybridQuery(dense=dense[2], sparse=rec.sparse["sparse"], limit=6))
    if caps.text_leg:
        out.append(HybridQuery(dense=dense[2], text="document alpha", limit=6, fusion=Fusion(k=caps.rrf_k or 60)))
    return out


def _plain(hits: list[Any]) -> list[tuple[str, float]]:
    return [(h.id, round(h.score, 4)) for h in hits]


def test_aquery_equals_query(engine: tuple[str, Adapter]) -> None:
    name_of, adapter = engine
    name = _name()
    spec = CollectionSpec(name, dense=(DenseField("dense", 32, matryoshka_dim=16),),
                          sparse=(SparseField("sparse"),) if adapter.capabilities.sparse else (), payload=PAYLOAD)
    adapter.ensure_collection(spec)
    try:
        adapter.upsert(name, make_records(sparse=adapter.capabilities.sparse))
        twin = adapter.aio()
        local_qdrant = name_of == "qdrant" and "hnsw" in adapter.capabilities.emulated
        assert twin.native is (not local_qdrant), f"{name_of}: {type(twin).__name__}"
        queries = _queries(adapter)

        async def run() -> list[list[Any]]:
            return list(await asyncio.gather(*(twin.aquery(name, q, expect=spec) for q in queries * 3)))

        answers = asyncio.run(run())
        for q, got in zip(queries * 3, answers, strict=True):
            want = adapter.query(name, q, expect=spec)
            assert got and _plain(got) == _plain(want)
            assert [h.scores_by_stage.keys() for h in got] == [h.scores_by_stage.keys() for h in want]
    finally:
        adapter.drop(name)


def test_aquery_refuses_what_query_refuses(engine: tuple[str, Adapter]) -> None:
    _, adapter = engine
    name = _name()
    spec = CollectionSpec(name, dense=(DenseField("dense", 32),))
    adapter.ensure_collection(spec)
    try:
        twin = adapter.aio()
        q = HybridQuery(dense=np.ones(32, dtype=np.float32), limit=3)
        other = CollectionSpec(name, dense=(DenseField("dense", 16),))

        async def run() -> None:
            with pytest.raises(CollectionNotFoundError):
                await twin.aquery(_name(), q)
            with pytest.raises(DimensionMismatchError):
                await twin.aquery(name, q, expect=other)
            with pytest.raises(InputError):
                await twin.aquery(name, HybridQuery(dense=np.ones(5, dtype=np.float32), limit=3))
            assert await twin.aquery(name, q) == []

        asyncio.run(run())
    finally:
        adapter.drop(name)


# ---- PostgreSQL pools ---------------------------------------------------------------------------------
@pytest.fixture
def broken_and_good(postgres_url: str) -> Iterator[tuple[PgvectorAdapter, str, str]]:
    """A good collection, and one whose table was dropped behind the adapter's back (its metadata row
    stays, so every query fails inside its transaction with UndefinedTable)."""
    adapter = PgvectorAdapter(postgres_url, pool_min_size=1, pool_max_size=4, pool_timeout=10)
    good, broken = _name(), _name()
    for n in (good, broken):
        adapter.ensure_collection(CollectionSpec(n, dense=(DenseField("dense", 32),)))
    adapter.upsert(good, make_records(sparse=False))
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{broken}"')
    try:
        yield adapter, good, broken
    finally:
        adapter.drop(good)
        adapter.drop(broken)
        adapter.close()


def test_sync_pool_gets_every_connection_back_after_errors(broken_and_good: tuple[PgvectorAdapter, str, str]) -> None:
    adapter, good, broken = broken_and_good
    q = HybridQuery(dense=np.ones(32, dtype=np.float32), limit=3)
    failures, answers = [], []

    def worker(i: int) -> None:
        for j in range(10):
            try:
                answers.append(adapter.query(broken if (i + j) % 2 else good, q))
            except CollectionNotFoundError as exc:
                failures.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert len(failures) == 40 and len(answers) == 40 and all(answers)
    stats = adapter.pool_stats()
    assert stats["pool_size"] <= 4 and stats["requests_waiting"] == 0
    assert stats["pool_available"] == stats["pool_size"], stats
    assert adapter.query(good, q)


def test_async_pool_gets_every_connection_back_after_errors_and_cancels(
        broken_and_good: tuple[PgvectorAdapter, str, str]) -> None:
    adapter, good, broken = broken_and_good
    twin = adapter.aio()
    q = HybridQuery(dense=np.ones(32, dtype=np.float32), limit=3)

    async def run() -> dict[str, int]:
        results = await asyncio.gather(*(twin.aquery(broken if i % 2 else good, q) for i in range(40)),
                                       return_exceptions=True)
        assert sum(isinstance(r, CollectionNotFoundError) for r in results) == 20
        assert all(r for r in results if not isinstance(r, BaseException))
        # Tasks cancelled while they wait for a connection or for the server's answer.
        tasks = [asyncio.ensure_future(twin.aquery(good, q)) for _ in range(20)]
        await asyncio.sleep(0.02)
        for t in tasks[::2]:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stats = twin.pool_stats()
        assert await twin.aquery(good, q)
        return stats

    stats = asyncio.run(run())
    assert stats["pool_size"] <= 4 and stats["requests_waiting"] == 0
    assert stats["pool_available"] == stats["pool_size"], stats


def _backends(url: str, app: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return int(conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                (app,)).fetchone()[0])


def test_async_connections_close_when_the_loop_ends(postgres_url: str) -> None:
    """No background task outlives ``asyncio.run`` (no hang at exit) and no connection stays open."""
    app = f"rf_loop_{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in postgres_url else "?"
    with PgvectorAdapter(f"{postgres_url}{sep}application_name={app}", pool_max_size=4) as adapter:
        name = _name()
        adapter.ensure_collection(CollectionSpec(name, dense=(DenseField("dense", 32),)))
        try:
            adapter.upsert(name, make_records(sparse=False))
            adapter.close()  # the sync pool's connections go; what follows opens only async ones
            q = HybridQuery(dense=np.ones(32, dtype=np.float32), limit=3)

            async def burst() -> int:
                await asyncio.gather(*(adapter.aio().aquery(name, q) for _ in range(12)))
                return adapter.aio().pool_stats()["pool_size"]

            for _ in range(2):
                opened = asyncio.run(burst())
                assert 1 <= opened <= 4
                deadline = time.monotonic() + 10
                while _backends(postgres_url, app) and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert _backends(postgres_url, app) == 0
        finally:
            adapter.drop(name)
