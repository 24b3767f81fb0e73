"""weaviate-client exceptions -> ``sdk.core.errors``.

The client raises few exception types and puts the server's reason in the message, so "not
found" is recognised from the status code or the server's wording; what is transient (connection
errors, 5xx / 429, gRPC UNAVAILABLE / DEADLINE_EXCEEDED) is decided by the shared
``adapters.retry.is_transient`` plus the client's connection error types and the transport
errors of httpx, the client's HTTP library (a connection closed or reset before the answer came:
``RemoteProtocolError``, ``ReadError``, ...), which the client lets through unwrapped.
"""

from __future__ import annotations

import httpx
from weaviate import exceptions as wx

from adapters.retry import is_transient
from sdk.core.errors import AdapterError, CollectionNotFoundError, SDKError, TransientAdapterError

__all__ = ["already_exists", "translate"]

# The network failed, not the request: the same call may well succeed on a new connection.
_HTTPX_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

_NOT_FOUND_WORDS = ("could not find class", "no such class", "class not found", "collection not found",
                    "does not exist")


def translate(exc: BaseException, what: str) -> SDKError:
    """The SDK error for a weaviate-client exception raised while doing ``what``."""
    if isinstance(exc, SDKError):
        return exc
    text = str(exc)
    status = getattr(exc, "status_code", None)
    if status == 404 or any(w in text.lower() for w in _NOT_FOUND_WORDS):
        return CollectionNotFoundError(f"{what} failed: the collection does not exist in Weaviate ({text})")
    if isinstance(exc, (wx.WeaviateConnectionError, wx.WeaviateTimeoutError, wx.WeaviateClosedClientError,
                        *_HTTPX_TRANSIENT)) or is_transient(exc):
        if isinstance(exc, wx.WeaviateClosedClientError):
            return AdapterError(f"{what} failed: the Weaviate client is closed; connect again ({text})")
        return TransientAdapterError(f"{what} failed: Weaviate is unreachable or overloaded: {text}. Check that "
                                     "the server runs and that its HTTP and gRPC ports are reachable from here")
    return AdapterError(f"{what} failed: {type(exc).__name__}: {text}")


def already_exists(exc: BaseException) -> bool:
    """True when Weaviate refused to create a collection because one of that name exists (422)."""
    return getattr(exc, "status_code", None) == 422 and "already exists" in str(exc).lower()
