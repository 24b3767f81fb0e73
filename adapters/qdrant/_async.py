"""The Qdrant adapter's async twin: ``AsyncQdrantClient`` against the same server.

The async client is built from the sync client's own constructor arguments (``_init_options``, which
qdrant-client keeps for this purpose), so a client the caller passed in is followed too: same URL,
key, TLS, gRPC choice and timeout. One client per event loop (``adapters.aio``). Queries run the
sync adapter's ``_read_spec_steps`` / ``_search_steps``, so requests and hits are built once.

Local mode (``qdrant+local:``) has no twin of its own: ``QdrantAdapter._async_twin`` returns the
worker-thread fallback there, since an ``AsyncQdrantClient`` could not open the same in-process data.
"""

from __future__ import annotations

from typing import Any

from qdrant_client import AsyncQdrantClient

from adapters.aio import AsyncAdapter
from sdk.core.errors import ConfigError

__all__ = ["AsyncQdrantAdapter"]

_LOCAL_ONLY = ("location", "path", "force_disable_check_same_thread")


class AsyncQdrantAdapter(AsyncAdapter):
    """``aquery`` on an ``AsyncQdrantClient`` of the running loop."""

    async def _aopen(self) -> AsyncQdrantClient:
        options: dict[str, Any] | None = getattr(self.sync._client, "_init_options", None)  # type: ignore[attr-defined]
        if options is None:
            raise ConfigError("this QdrantClient does not say how it was built (no _init_options); "
                              "use QdrantAdapter.from_url(...) for async queries")
        kwargs = {k: v for k, v in options.items() if k not in _LOCAL_ONLY}
        kwargs["check_compatibility"] = False  # the sync client checked this server; the check would block the loop
        return AsyncQdrantClient(**kwargs)

    async def _aclose_client(self, client: Any) -> None:
        await client.close()
