"""The async twin of an adapter: ``Adapter.query`` with the database round trips awaited.

``adapter.aio()`` returns one ``AsyncAdapter`` per adapter (``sdk.core.store.AsyncVectorStore``).
Its ``aquery`` follows the same path as ``Adapter.query``: name check, the stored-spec guard
(``adapters.guard``), ``adapters.validate.prepare_query``, the retry policy and the adapter's own
error translation; only the driver calls differ, and those are the sync adapter's own step
generators (``adapters.steps``) driven by the driver's async client, so request building and
result mapping exist once per database.

An async driver client belongs to the event loop it was opened on (httpx, ``grpc.aio``, psycopg's
``AsyncConnection``). The twin therefore opens one client per running loop, on first use in that
loop, and closes it when that loop shuts down (``asyncio.run`` and ``asyncio.Runner`` finalise
async generators, and a sentinel generator does the closing) or on ``await twin.aclose()``.

``ThreadedAsyncAdapter`` is the fallback where a database has no usable async client (the
in-memory reference, Qdrant local mode, a psycopg connection the caller passed in): each call runs
the sync adapter in a worker thread, and ``native`` is ``False`` so callers can tell.
"""

from __future__ import annotations

import abc
import asyncio
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from adapters.guard import research_spec, stored_spec
from adapters.retry import NO_RETRY
from adapters.steps import arun_steps
from adapters.validate import QueryPlan, prepare_query
from sdk.core.capabilities import Capabilities
from sdk.core.errors import SDKError
from sdk.core.spec import CollectionSpec, check_name
from sdk.core.types import Hit, HybridQuery

if TYPE_CHECKING:
    from adapters.base import Adapter

__all__ = ["AsyncAdapter", "ThreadedAsyncAdapter"]

T = TypeVar("T")


@dataclass
class _LoopSlot:
    """The driver client of one event loop, and the sentinel that closes it when the loop shuts down."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    client: Any = None
    sentinel: Any = None


class AsyncAdapter(abc.ABC):
    """Async twin of ``sync`` (an ``adapters.base.Adapter``): ``aquery`` and ``aclose``.

    Subclasses provide ``_aopen`` / ``_aclose_client`` (the driver's async client for the running
    loop) and may override ``_aread_spec`` / ``_asearch``, which by default drive the sync
    adapter's ``_read_spec_steps`` / ``_search_steps`` with that client.
    """

    native = True  # the driver's own async client answers; False: a worker thread per call

    def __init__(self, sync: Adapter) -> None:
        self.sync = sync
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopSlot] = weakref.WeakKeyDictionary()
        self._slots_lock = threading.Lock()

    @property
    def capabilities(self) -> Capabilities:
        return self.sync.capabilities

    # ---- what subclasses provide ---------------------------------------------------------
    @abc.abstractmethod
    async def _aopen(self) -> Any:
        """Open the driver's async client (or pool) for the running loop."""

    @abc.abstractmethod
    async def _aclose_client(self, client: Any) -> None:
        """Close a client ``_aopen`` returned."""

    async def _aread_spec(self, client: Any, name: str) -> CollectionSpec | None:
        return await arun_steps(self.sync._read_spec_steps(name), client)  # type: ignore[attr-defined]

    async def _asearch(self, client: Any, spec: CollectionSpec, name: str, plan: QueryPlan) -> list[Hit]:
        return await arun_steps(self.sync._search_steps(spec, name, plan), client)  # type: ignore[attr-defined]

    # ---- shared machinery ----------------------------------------------------------------
    async def _client(self) -> Any:
        """The running loop's client, opened on first use (one opener at a time per loop)."""
        loop = asyncio.get_running_loop()
        with self._slots_lock:
            slot = self._slots.get(loop)
            if slot is None:
                slot = self._slots[loop] = _LoopSlot()
        if slot.client is not None:
            return slot.client
        async with slot.lock:
            if slot.client is None:
                slot.client = await self._aopen()
                slot.sentinel = self._close_at_shutdown(slot)
                await slot.sentinel.__anext__()
            return slot.client

    async def _close_at_shutdown(self, slot: _LoopSlot) -> AsyncIterator[None]:
        # The loop finalises live async generators when it shuts down: the client closes with it.
        try:
            yield
        finally:
            client, slot.client = slot.client, None
            if client is not None:
                await self._aclose_client(client)

    async def _acall(self, what: str, fn: Callable[[], Awaitable[T]], *, retry: bool = True) -> T:
        """``Adapter._call`` for a coroutine: retry policy and the adapter's error translation."""
        policy = self.sync.retry_policy if retry else NO_RETRY
        return await policy.acall(fn, lambda exc: self.sync._translate(exc, what))

    async def _aspec_of(self, client: Any, collection: str, expect: CollectionSpec | None) -> CollectionSpec:
        check_name(collection, "collection name")
        stored = await self._acall(f"reading the spec of {collection!r}", lambda: self._aread_spec(client, collection))
        return stored_spec(stored, collection, expect)

    # ---- public protocol (sdk.core.store.AsyncVectorStore) -------------------------------
    async def aquery(self, collection: str, query: HybridQuery, *,
                     expect: CollectionSpec | None = None) -> list[Hit]:
        """``Adapter.query``, awaited: same checks, same plan, same hits (the guard's read beside the
        search where ``Adapter._overlap_guard`` allows, as there)."""
        client = await self._acall("connecting", self._client)
        if expect is not None and self.sync._overlap_guard():
            return await self._aquery_overlapped(client, collection, query, expect)
        spec = await self._aspec_of(client, collection, expect)
        plan = prepare_query(spec, self.capabilities, query)
        return await self._acall(f"querying {collection!r}", lambda: self._asearch(client, spec, collection, plan))

    async def _aquery_overlapped(self, client: Any, collection: str, query: HybridQuery,
                                 expect: CollectionSpec) -> list[Hit]:
        """``Adapter._query_overlapped`` awaited: the spec read runs as a task beside the search."""
        check_name(collection, "collection name")
        read = asyncio.ensure_future(self._acall(f"reading the spec of {collection!r}",
                                                 lambda: self._aread_spec(client, collection)))
        hits: list[Hit] = []
        failure: SDKError | None = None
        try:
            plan = prepare_query(expect, self.capabilities, query)
            hits = await self._acall(f"querying {collection!r}", lambda: self._asearch(client, expect, collection, plan))
        except SDKError as exc:
            failure = exc
        except BaseException:  # cancelled (or worse): the read is of no use to anyone now
            read.cancel()
            raise
        moved = research_spec(await read, collection, expect)
        if moved is not None:
            plan = prepare_query(moved, self.capabilities, query)
            return await self._acall(f"querying {collection!r}", lambda: self._asearch(client, moved, collection, plan))
        if failure is not None:
            raise failure
        return hits

    async def aclose(self) -> None:
        """Close the running loop's client now (other loops' clients close when their loop shuts down)."""
        with self._slots_lock:
            slot = self._slots.pop(asyncio.get_running_loop(), None)
        if slot is not None and slot.sentinel is not None:
            await slot.sentinel.aclose()

    def detach(self) -> None:
        """Called by ``Adapter.close``: ask each still-running loop to close its client, forget the rest.

        A loop that is not running cannot be entered from here; its client is dropped and closes when
        the loop shuts down (or with the process)."""
        with self._slots_lock:
            slots, self._slots = list(self._slots.items()), weakref.WeakKeyDictionary()
        for loop, slot in slots:
            if slot.sentinel is not None and loop.is_running() and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(lambda g=slot.sentinel, lp=loop: lp.create_task(g.aclose()))
                except RuntimeError:  # the loop closed meanwhile
                    pass


class ThreadedAsyncAdapter(AsyncAdapter):
    """The fallback twin: the sync adapter's ``query`` in a worker thread (``native`` is ``False``)."""

    native = False

    async def _aopen(self) -> Any:
        return None

    async def _aclose_client(self, client: Any) -> None:
        return None

    async def aquery(self, collection: str, query: HybridQuery, *,
                     expect: CollectionSpec | None = None) -> list[Hit]:
        return await asyncio.to_thread(self.sync.query, collection, query, expect=expect)

    async def aclose(self) -> None:
        return None
