"""The async path without a database: ``adapters.steps``, ``RetryPolicy.acall``, ``adapters.aio`` and the
pipeline's native ``asearch`` route, on the exact memory adapter.

``_NativeMemory`` gives the memory adapter a twin that behaves like a native one (a client per event
loop, awaited calls), so the machinery every engine's twin shares is exercised here; the engines'
own twins are checked against their databases in tests/integration/test_async_adapters.py.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from adapters.aio import AsyncAdapter, ThreadedAsyncAdapter
from adapters.memory import MemoryAdapter
from adapters.retry import RetryPolicy
from adapters.steps import arun_steps, run_steps
from sdk.core.errors import AdapterError, CollectionNotFoundError, InputError, SDKError, TransientAdapterError
from sdk.core.spec import CollectionSpec, DenseField
from sdk.core.store import AsyncVectorStore, async_store
from sdk.core.types import HybridQuery
from sdk.retrieval import RetrievalPipeline
from tests.unit.retrieval_fakes import FakeDense, FakeReranker, FakeSparse, fake_documents

QUERIES = ["python tuple", "install debian package", "search vector database", "unicode encoding strings"]


class _Client:
    def __init__(self) -> None:
        self.closed = False
        self.loop = asyncio.get_running_loop()


class _NativeTwin(AsyncAdapter):
    """A twin shaped like the engines' ones: an async 'client' per loop, awaited calls."""

    def __init__(self, sync: Any) -> None:
        super().__init__(sync)
        self.opened: list[_Client] = []

    async def _aopen(self) -> _Client:
        await asyncio.sleep(0.01)  # lets concurrent first calls pile up on the slot's lock
        client = _Client()
        self.opened.append(client)
        return client

    async def _aclose_client(self, client: Any) -> None:
        client.closed = True

    async def _aread_spec(self, client: Any, name: str) -> CollectionSpec | None:
        assert client.loop is asyncio.get_running_loop() and not client.closed
        await asyncio.sleep(0)
        return self.sync._read_spec(name)

    async def _asearch(self, client: Any, spec: CollectionSpec, name: str, plan: Any) -> Any:
        assert client.loop is asyncio.get_running_loop() and not client.closed
        await asyncio.sleep(0)
        return self.sync._search(spec, name, plan)


class _NativeMemory(MemoryAdapter):
    def _async_twin(self) -> AsyncAdapter:
        return _NativeTwin(self)


@pytest.fixture
def store() -> _NativeMemory:
    return _NativeMemory()


@pytest.fixture
def pipe(store: _NativeMemory) -> RetrievalPipeline:
    p = RetrievalPipeline(FakeDense(), FakeSparse(), store=store, collection="docs", limit=5,
                          candidate_limits={"dense": 20, "sparse": 20})
    p.add_documents(fake_documents())
    return p


# ---- steps ---------------------------------------------------------------------------------------------
def _steps() -> Any:
    first = yield lambda c: c.get("a")
    try:
        yield lambda c: c.fail()
    except KeyError:
        first += "!"
    return first


class _Sync:
    def get(self, key: str) -> str:
        return key.upper()

    def fail(self) -> None:
        raise KeyError("gone")


class _Async:
    async def get(self, key: str) -> str:
        return key.upper()

    async def fail(self) -> None:
        raise KeyError("gone")


def test_steps_run_the_same_on_a_sync_and_an_async_client() -> None:
    """One generator, two drivers: results are passed back and a failing step is thrown into it."""
    assert run_steps(_steps(), _Sync()) == "A!"
    assert asyncio.run(arun_steps(_steps(), _Async())) == "A!"


def test_a_step_error_the_generator_does_not_catch_propagates() -> None:
    def steps() -> Any:
        yield lambda c: c.fail()
        return "never"

    with pytest.raises(KeyError):
        run_steps(steps(), _Sync())
    with pytest.raises(KeyError):
        asyncio.run(arun_steps(steps(), _Async()))


# ---- RetryPolicy.acall -----------------------------------------------------------------------------------
def test_acall_retries_transient_failures_like_call() -> None:
    policy = RetryPolicy(attempts=3, budget_s=5, initial_wait_s=0.001, max_wait_s=0.002)
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("connection reset by peer")
        return "ok"

    assert asyncio.run(policy.acall(flaky, lambda e: TransientAdapterError(str(e)))) == "ok"
    assert len(calls) == 3


def test_acall_translates_a_permanent_failure_once() -> None:
    policy = RetryPolicy(attempts=3, budget_s=5, initial_wait_s=0.001)
    calls = []

    async def broken() -> None:
        calls.append(1)
        raise ValueError("syntax error")

    with pytest.raises(AdapterError, match="syntax") as info:
        asyncio.run(policy.acall(broken, lambda e: AdapterError(f"querying failed: {e}")))
    assert len(calls) == 1 and isinstance(info.value.__cause__, ValueError)


# ---- the twin ----------------------------------------------------------------------------------------------
def test_every_adapter_has_a_twin_and_the_fallback_says_it_is_a_thread() -> None:
    plain = MemoryAdapter()
    twin = plain.aio()
    assert twin is plain.aio() and isinstance(twin, ThreadedAsyncAdapter) and twin.native is False
    assert isinstance(twin, AsyncVectorStore) and async_store(plain) is twin
    assert async_store(object()) is None


def test_threaded_twin_answers_like_query(pipe: RetrievalPipeline) -> None:
    plain = MemoryAdapter()
    spec = pipe.adapter.describe("docs")
    plain.ensure_collection(spec)
    plain.upsert("docs", pipe.encode_documents(fake_documents()).records())
    q = pipe.build_query(QUERIES[0], FakeDense().encode_query(QUERIES[0]), FakeSparse().encode_query(QUERIES[0]))
    assert asyncio.run(plain.aio().aquery("docs", q)) == plain.query("docs", q)


def test_native_twin_checks_like_query(store: _NativeMemory, pipe: RetrievalPipeline) -> None:
    """Same guard and validation as Adapter.query: missing collection, other spec, bad input."""
    q = HybridQuery(dense=FakeDense().encode_query("x"), limit=3)
    twin = store.aio()

    async def run() -> None:
        with pytest.raises(CollectionNotFoundError):
            await twin.aquery("nope", q)
        other = CollectionSpec("docs", dense=(DenseField("dense", 7),))
        with pytest.raises(SDKError, match="different schema"):
            await twin.aquery("docs", q, expect=other)
        with pytest.raises(InputError):
            await twin.aquery("docs", HybridQuery(dense=[1.0, 2.0], limit=3))
        assert await twin.aquery("docs", q) == store.query("docs", q)

    asyncio.run(run())


def test_one_client_per_loop_opened_once_and_closed_with_the_loop(store: _NativeMemory,
                                                                 pipe: RetrievalPipeline) -> None:
    twin = store.aio()
    q = HybridQuery(dense=FakeDense().encode_query("python"), limit=3)

    async def burst() -> None:
        await asyncio.gather(*(twin.aquery("docs", q) for _ in range(20)))

    asyncio.run(burst())
    asyncio.run(burst())
    assert len(twin.opened) == 2, "20 concurrent first calls open one client per loop"
    assert all(c.closed for c in twin.opened), "asyncio.run's shutdown closes the loop's client"


def test_aclose_and_adapter_close_release_the_client(store: _NativeMemory, pipe: RetrievalPipeline) -> None:
    twin = store.aio()
    q = HybridQuery(dense=FakeDense().encode_query("python"), limit=3)

    async def run() -> None:
        await twin.aquery("docs", q)
        await twin.aclose()
        assert twin.opened[-1].closed
        await twin.aquery("docs", q)  # reopens
        assert len(twin.opened) == 2 and not twin.opened[-1].closed

    asyncio.run(run())

    # A loop running in another thread: Adapter.close() asks that loop to close its client.
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        asyncio.run_coroutine_threadsafe(twin.aquery("docs", q), loop).result(10)
        client = twin.opened[-1]
        store.close()
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0.05), loop).result(10)
        assert client.closed and "_aio_twin" not in store.__dict__
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(10)
        loop.close()


# ---- the pipeline's native route ---------------------------------------------------------------------------
def test_asearch_on_a_native_twin_equals_search(store: _NativeMemory, pipe: RetrievalPipeline) -> None:
    reranked = RetrievalPipeline(FakeDense(), FakeSparse(), store=store, collection="docs", limit=5,
                                 reranker=FakeReranker(), rerank_top=10,
                                 candidate_limits={"dense": 20, "sparse": 20})
    for p in (pipe, reranked):
        want = [p.search(q) for q in QUERIES]

        async def run(p: RetrievalPipeline = p) -> tuple[list[Any], list[Any]]:
            one = await asyncio.gather(*(p.asearch(q) for q in QUERIES))
            return list(one), await p.asearch_batch(QUERIES)

        single, batch = asyncio.run(run())
        for w, a, b in zip(want, single, batch, strict=True):
            assert a == w and b == w
            assert a.fusion == w.fusion and set(a.timings) == set(w.timings) and a.search_id != w.search_id
    assert len(store.aio().opened) >= 1, "asearch went through the native twin"


def test_asearch_with_client_fusion_on_a_native_twin(store: _NativeMemory, pipe: RetrievalPipeline) -> None:
    from dataclasses import replace

    from adapters.memory import MEMORY_CAPABILITIES
    from sdk.core.types import Fusion, FusionMethod

    class Narrow(_NativeMemory):
        @property
        def capabilities(self) -> Any:
            return replace(MEMORY_CAPABILITIES, fusions=frozenset({FusionMethod.RRF}))

    narrow = Narrow()
    spec = store.describe("docs")
    narrow.ensure_collection(spec)
    narrow.upsert("docs", pipe.encode_documents(fake_documents()).records())
    p = RetrievalPipeline(FakeDense(), FakeSparse(), store=narrow, collection="docs", limit=5,
                          fusion=Fusion(FusionMethod.DBSF), client_fusion=True,
                          candidate_limits={"dense": 20, "sparse": 20})
    assert p.fusion_mode == "client"
    want = [p.search(q) for q in QUERIES]
    got = asyncio.run(p.asearch_batch(QUERIES))
    assert got == want


def test_asearch_refuses_an_empty_query_like_search(pipe: RetrievalPipeline) -> None:
    with pytest.raises(InputError):
        asyncio.run(pipe.asearch("  "))
    with pytest.raises(InputError):
        asyncio.run(pipe.asearch_batch(["ok", ""]))


def test_qdrant_twin_follows_the_sync_clients_settings() -> None:
    """A server client's twin is an AsyncQdrantClient built with the same URL and key (nothing is sent
    until a query); local mode has no such twin and falls back to a worker thread."""
    from qdrant_client import AsyncQdrantClient, QdrantClient

    from adapters.qdrant import QdrantAdapter
    from adapters.qdrant._async import AsyncQdrantAdapter

    local = QdrantAdapter(location=":memory:")
    assert isinstance(local.aio(), ThreadedAsyncAdapter)
    server = QdrantAdapter(QdrantClient(url="https://127.0.0.1:6399", api_key="k3y", timeout=7,
                                        check_compatibility=False))
    twin = server.aio()
    assert isinstance(twin, AsyncQdrantAdapter) and twin.native

    async def build() -> AsyncQdrantClient:
        client = await twin._aopen()
        await client.close()
        return client

    options = asyncio.run(build())._init_options
    assert (options["url"], options["api_key"], options["timeout"]) == ("https://127.0.0.1:6399", "k3y", 7)
    assert options["location"] is None and options["path"] is None
