"""The Milvus adapter's async twin: ``pymilvus.AsyncMilvusClient``, for a server and for Milvus Lite.

Milvus Lite works too: pymilvus' Lite server manager keeps one Lite server per ``.db`` file in the
process and both clients reach it over its socket, so the async client sees what the sync one wrote.

Two things pymilvus 2.5 needs here. Connections live in a process-wide registry keyed by URI and
credentials, so two async clients of the same server would share one ``grpc.aio`` channel, which
belongs to the event loop that made it: each loop's client gets its own ``alias``. And
``AsyncMilvusClient`` has no ``describe_collection`` (its gRPC handler has, and ``MilvusClient``'s
own method is exactly that call), so ``_Client`` adds it; the sync adapter's steps then run as they
are. Only an emulated Lite alias is resolved with the sync client (``adapters.milvus._aliases``).
"""

from __future__ import annotations

import itertools
from typing import Any

from pymilvus import AsyncMilvusClient

from adapters.aio import AsyncAdapter

__all__ = ["AsyncMilvusAdapter"]

_ALIASES = itertools.count()


class _Client:
    """An ``AsyncMilvusClient`` with ``describe_collection``, the one call the adapter's steps need besides it."""

    def __init__(self, client: AsyncMilvusClient) -> None:
        self.client = client

    def describe_collection(self, collection_name: str, timeout: float | None = None, **kwargs: Any) -> Any:
        return self.client._get_connection().describe_collection(collection_name, timeout=timeout, **kwargs)

    def search(self, *args: Any, **kwargs: Any) -> Any:
        return self.client.search(*args, **kwargs)

    def hybrid_search(self, *args: Any, **kwargs: Any) -> Any:
        return self.client.hybrid_search(*args, **kwargs)


class AsyncMilvusAdapter(AsyncAdapter):
    """``aquery`` on an ``AsyncMilvusClient`` of the running loop."""

    async def _aopen(self) -> _Client:
        args = dict(self.sync._client_args)  # type: ignore[attr-defined]
        return _Client(AsyncMilvusClient(**args, alias=f"retrieval-forge-async-{next(_ALIASES)}"))

    async def _aclose_client(self, client: Any) -> None:
        await client.client.close()
