"""The Weaviate adapter's async twin: ``weaviate.WeaviateAsyncClient`` against the same server.

The async client is built from the sync client's connection settings (endpoints, TLS, credentials,
extra headers, timeouts), so a client the caller passed in is followed too. One client per event
loop (``adapters.aio``): its httpx client and gRPC ``aio`` channel belong to that loop. Queries run
the sync adapter's ``_read_spec_steps`` / ``_search_steps`` (``near_vector``, ``bm25``, ``hybrid``),
so the requests and the mapping of objects to hits are built once.
"""

from __future__ import annotations

from typing import Any

import weaviate
from weaviate.config import AdditionalConfig

from adapters.aio import AsyncAdapter
from sdk.core.errors import ConfigError

__all__ = ["AsyncWeaviateAdapter"]


def async_client_for(client: Any) -> weaviate.WeaviateAsyncClient:
    """An unconnected ``WeaviateAsyncClient`` with the settings ``client`` (a v4 sync client) was built with."""
    conn = getattr(client, "_connection", None)
    params = getattr(conn, "_connection_params", None)
    if params is None:
        raise ConfigError("cannot read the connection settings of this Weaviate client; build the adapter with "
                          "WeaviateAdapter.from_url(...) for async queries")
    config = {"timeout": conn.timeout_config}
    if getattr(conn, "_grpc_config", None) is not None:
        config["grpc_config"] = conn._grpc_config
    return weaviate.WeaviateAsyncClient(
        connection_params=params,
        auth_client_secret=getattr(conn, "_auth", None),
        additional_headers=getattr(conn, "_ConnectionBase__additional_headers", None) or None,
        additional_config=AdditionalConfig(**config),
        skip_init_checks=True,  # the sync client already checked this server
    )


class AsyncWeaviateAdapter(AsyncAdapter):
    """``aquery`` on a ``WeaviateAsyncClient`` of the running loop."""

    async def _aopen(self) -> weaviate.WeaviateAsyncClient:
        client = async_client_for(self.sync._client)  # type: ignore[attr-defined]
        await client.connect()
        return client

    async def _aclose_client(self, client: Any) -> None:
        await client.close()
