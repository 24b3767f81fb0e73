"""Which adapter serves a database URL: the one visible place that maps URL schemes to adapters.

Adapters register themselves as entry points in the group ``retrieval_forge.adapters``, the way
SQLAlchemy finds its dialects: the name is the URL scheme, the value the adapter class
(``qdrant = "adapters.qdrant:QdrantAdapter"``). This project's own four databases and the memory
reference are declared in ``pyproject.toml``; a third-party package declares its own in its
``pyproject.toml`` and ``connect("mydb://...")`` finds it once it is installed. Code (and tests)
may also call ``register_adapter`` at run time.

A scheme's module is imported only when a URL with that scheme is connected, so nothing here
(and nothing above it) imports a database driver before it is needed.

Every remote engine reads one URL grammar (``sdk.core.urls``; the guide is docs/CONNECTING.md):

    SCHEME://[USER[:PASSWORD]@]HOST[:PORT][/DATABASE][?OPTION=VALUE&...]

    memory://                                    exact in-process reference
    qdrant://[:API_KEY@]HOST:PORT                Qdrant server (key also from QDRANT_API_KEY)
    qdrants://... | qdrant://...?tls=true        Qdrant over TLS (HTTPS)
    qdrant+local:PATH | qdrant+local::memory:    Qdrant local mode (embedded)
    milvus://[USER:PASSWORD@ | :TOKEN@]HOST:PORT[/DB]   Milvus server (token also from MILVUS_TOKEN)
    milvuss://... | milvus://...?tls=true        Milvus over TLS
    milvus+lite:PATH.db                          Milvus Lite file (embedded real engine)
    weaviate://[:API_KEY@]HOST:PORT?grpc=50051   Weaviate (key also from WEAVIATE_API_KEY)
    weaviates://... | weaviate://...?tls=true    Weaviate over TLS (HTTP port 443 by default)
    postgresql://USER[:PASSWORD]@HOST:PORT/DB    PostgreSQL + pgvector (also postgres://); any libpq
                                                 URL: ?sslmode=require|verify-full (or ?tls=true),
                                                 PGPASSWORD / ~/.pgpass work as in psql

``tls`` is a strict boolean and an unknown option is refused. Messages show URLs through
``sdk.core.redaction.redact``: passwords, tokens and keys never appear in them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from importlib import metadata
from typing import Any

from sdk.core.errors import ConfigError, SDKError
from sdk.core.redaction import redact
from sdk.core.store import VectorStore

__all__ = ["ENTRY_POINT_GROUP", "connect", "register_adapter", "schemes"]

ENTRY_POINT_GROUP = "retrieval_forge.adapters"

_lock = threading.Lock()
_registered: dict[str, Any] = {}


def register_adapter(scheme: str, adapter: Any) -> None:
    """Serve ``scheme://`` URLs with ``adapter``: a class with ``from_url(url)``, or a callable ``url -> store``.

    Takes precedence over an entry point of the same name (so a test can swap one in).
    """
    key = _scheme_key(scheme)
    if not (hasattr(adapter, "from_url") or callable(adapter)):
        raise ConfigError(f"register_adapter({scheme!r}, ...) needs a class with from_url(url) or a callable")
    with _lock:
        _registered[key] = adapter


def unregister_adapter(scheme: str) -> None:
    """Forget a run-time registration (entry points stay)."""
    with _lock:
        _registered.pop(_scheme_key(scheme), None)


def schemes() -> list[str]:
    """Every URL scheme that ``connect`` can serve: run-time registrations and installed entry points."""
    return sorted({*_registered, *(ep.name.lower() for ep in _entry_points())})


def connect(url: str) -> VectorStore:
    """A connected store for ``url`` (forms in the module docstring); imports its driver only now."""
    if not isinstance(url, str) or ":" not in url:
        raise ConfigError(f"not a database URL: {redact(url)!r}; use one of the schemes {', '.join(schemes())}")
    scheme = url.split(":", 1)[0].lower()
    factory = _registered.get(scheme)
    if factory is None:
        factory = _load_entry_point(scheme, url)
    make: Callable[[str], Any] = factory.from_url if hasattr(factory, "from_url") else factory
    return make(url)


def _load_entry_point(scheme: str, url: str) -> Any:
    matches = [ep for ep in _entry_points() if ep.name.lower() == scheme]
    if not matches:
        known = ", ".join(schemes()) or "none: is retrieval-forge installed (pip install -e .)?"
        raise ConfigError(
            f"unknown database URL scheme {scheme!r} in {redact(url)!r}; supported schemes: {known}"
        )
    ep = matches[0]
    try:
        return ep.load()
    except SDKError:  # MissingDependencyError from the adapter's driver check names the extra
        raise
    except ImportError as exc:
        raise ConfigError(
            f"the adapter for {scheme!r} ({ep.value}) cannot be imported: {exc}; reinstall the package that provides it"
        ) from exc


def _entry_points() -> tuple[metadata.EntryPoint, ...]:
    return tuple(metadata.entry_points(group=ENTRY_POINT_GROUP))


def _scheme_key(scheme: str) -> str:
    if not isinstance(scheme, str) or not scheme or ":" in scheme or "/" in scheme:
        raise ConfigError(f"a URL scheme is a bare name such as 'mydb' (no ':' or '/'), got {scheme!r}")
    return scheme.lower()
