"""The pgvector adapter's async twin: psycopg ``AsyncConnection`` s, pooled per event loop.

Each event loop gets its own ``_LoopPool`` (``adapters.aio`` opens it on first use in that loop and
closes it when the loop shuts down), sized like the sync pool (``pool_max_size``, ``pool_timeout``).
Every call borrows one connection for one transaction and runs the sync adapter's own steps on it
(``_read_spec_steps``, ``_search_steps``), so the SQL and the mapping of rows to hits are the ones
the sync path runs.

Why not ``psycopg_pool.AsyncConnectionPool``: its background workers catch ``CancelledError``
while they open a connection (pool_async.py, ``CLIENT_EXCEPTIONS``) and reschedule the attempt,
so when ``asyncio.run`` ends with the pool still open and a connection being opened (the pool
growing under load, or replacing an expired one), cancelling the remaining tasks never finishes
and the program hangs at exit. This pool has no background task: a connection is opened in the
task that needs it and closed or kept when that task gives it back, so nothing outlives the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from typing import Any, TypeVar

import psycopg
from pgvector.psycopg import register_vector_async
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from adapters.aio import AsyncAdapter
from adapters.pgvector._errors import is_connection_lost
from adapters.pgvector.adapter import PgvectorAdapter, _pipelined, _setup_steps
from adapters.steps import Steps, arun_steps
from adapters.validate import QueryPlan
from sdk.core.spec import CollectionSpec
from sdk.core.types import Hit

__all__ = ["AsyncPgvectorAdapter"]

T = TypeVar("T")


class _LoopPool:
    """At most ``max_size`` autocommit ``AsyncConnection`` s of one event loop, opened on demand."""

    def __init__(self, conninfo: str, max_size: int, timeout: float, connect_kwargs: dict[str, Any]) -> None:
        self.conninfo, self.max_size, self.timeout = conninfo, max_size, timeout
        self.connect_kwargs = connect_kwargs
        self._slots = asyncio.Semaphore(max_size)
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._size = 0  # open connections, idle or lent
        self._waiting = 0
        self._closed = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """One connection for the caller's task; given back (or closed when unusable) on exit, error or not."""
        self._waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), self.timeout)
        except asyncio.TimeoutError:
            raise psycopg.OperationalError(
                f"no free PostgreSQL connection within {self.timeout:g} s ({self.max_size} in use); "
                "raise pool_max_size or pool_timeout, or lower the concurrency"
            ) from None
        finally:
            self._waiting -= 1
        conn = None
        try:
            while self._idle and conn is None:
                idle = self._idle.pop()
                if idle.closed or idle.broken:
                    self._size -= 1
                else:
                    conn = idle
            if conn is None:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, **self.connect_kwargs)
                self._size += 1
                await register_vector_async(conn)
            yield conn
        finally:
            if conn is not None:
                reusable = (not self._closed and not conn.closed and not conn.broken
                            and conn.info.transaction_status == TransactionStatus.IDLE)
                if reusable:
                    self._idle.append(conn)
                else:
                    self._size -= 1
                    await conn.close()
            self._slots.release()

    async def check(self) -> None:
        """Drop idle connections that no longer answer (after a server restart), before a retry."""
        idle, self._idle = self._idle, []
        for conn in idle:
            try:
                await conn.execute("")
            except psycopg.Error:
                self._size -= 1
                await conn.close()
            else:
                self._idle.append(conn)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            self._size -= 1
            await conn.close()

    def stats(self) -> dict[str, int]:
        """Counters named like ``psycopg_pool``'s ``get_stats``."""
        return {"pool_max": self.max_size, "pool_size": self._size, "pool_available": len(self._idle),
                "requests_waiting": self._waiting}


class AsyncPgvectorAdapter(AsyncAdapter):
    """``aquery`` on the running loop's connections."""

    sync: PgvectorAdapter

    async def _aopen(self) -> _LoopPool:
        sync = self.sync
        # As in the sync pool: one direct connection first, so a bad URL or a dead server fails at once
        # with libpq's message, and the extension and metadata tables exist before any query.
        kwargs = sync._connect_kwargs()
        async with await psycopg.AsyncConnection.connect(sync._conninfo, **kwargs) as probe:  # type: ignore[arg-type]
            async with probe.transaction():
                await arun_steps(_setup_steps(), probe)
        return _LoopPool(sync._conninfo, sync.pool_max_size, sync.pool_timeout, kwargs)  # type: ignore[arg-type]

    async def _aclose_client(self, client: Any) -> None:
        await client.close()

    async def _tx(self, pool: _LoopPool, steps: Steps[T], *, single: bool = False, pipeline: bool = False) -> T:
        """The sync ``_tx`` on this loop's pool: one borrowed connection, one transaction (none for a
        ``single`` read), optionally pipelined, ended within the adapter's ``call_timeout``."""

        async def run() -> T:
            async with pool.connection() as conn, _pipelined(conn, pipeline), \
                    (nullcontext() if single else conn.transaction()):
                return await arun_steps(steps, conn)

        limit = self.sync.call_timeout
        try:
            return await (asyncio.wait_for(run(), limit) if limit else run())
        except asyncio.TimeoutError:
            # The cancelled task closed its connection (not idle: never handed out again).
            raise pg_errors.ConnectionTimeout(
                f"PostgreSQL did not answer within {limit:g} s (the adapter's call_timeout); a retry opens a new "
                "connection. Check that the server and the network path to it respond, or raise call_timeout"
            ) from None
        except psycopg.Error as exc:
            if is_connection_lost(exc):
                await pool.check()
            raise

    async def _aread_spec(self, client: Any, name: str) -> CollectionSpec | None:
        return await self._tx(client, self.sync._read_spec_steps(name), single=True)

    async def _asearch(self, client: Any, spec: CollectionSpec, name: str, plan: QueryPlan) -> list[Hit]:
        return await self._tx(client, self.sync._search_steps(spec, name, plan), single=True)

    def pool_stats(self) -> dict[str, int]:
        """The running loop's pool counters; empty before its first query. Call it from a coroutine."""
        slot = self._slots.get(asyncio.get_running_loop())
        pool = slot.client if slot is not None else None
        return pool.stats() if pool is not None else {}
