"""Driver calls written once for the sync and the async client of a database.

A database's sync and async clients (``QdrantClient`` / ``AsyncQdrantClient``, ``WeaviateClient`` /
``WeaviateAsyncClient``, psycopg ``Connection`` / ``AsyncConnection``, ``MilvusClient`` /
``AsyncMilvusClient``) have the same methods; the async ones return awaitables. So an adapter
writes a query as a generator of *steps*: each step is a function of the client, the generator
receives each step's result and finally returns the answer::

    def _search_steps(self, spec, name, plan):
        res = yield lambda client: client.query_points(name, **args)
        return [self._hit(p) for p in res.points]

``run_steps`` drives it with a sync client, ``arun_steps`` with an async one (awaiting each step),
so the request building and the mapping of results exist once. A step that raises is thrown back
into the generator, which may catch it (a "not found" that means absent) or let it propagate. A
step may also return a plain value under ``arun_steps`` (one that does no I/O, or a rare sync
lookup the async driver has no call for); it is passed on as is.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator
from typing import Any, TypeVar

__all__ = ["Step", "Steps", "arun_steps", "run_steps"]

T = TypeVar("T")
Step = Callable[[Any], Any]
"""One driver call: takes the client, returns its result (sync) or an awaitable of it (async)."""
Steps = Generator[Step, Any, T]


def run_steps(steps: Steps[T], client: Any) -> T:
    """Drive ``steps`` with a synchronous client."""
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(send)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        try:
            send, error = step(client), None
        except Exception as exc:  # noqa: BLE001 - handed back to the generator, which decides
            error = exc


async def arun_steps(steps: Steps[T], client: Any) -> T:
    """Drive ``steps`` with an asynchronous client: every awaitable a step returns is awaited."""
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(send)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        try:
            send = step(client)
            if inspect.isawaitable(send):
                send = await send
            error = None
        except Exception as exc:  # noqa: BLE001 - handed back to the generator, which decides
            error = exc
