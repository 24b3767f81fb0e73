"""``connect(url)``: one place that maps a URL to an adapter, importing its driver only then.

    memory://                              exact in-process reference
    qdrant://HOST:PORT                     Qdrant server (add ?api_key via QDRANT_API_KEY env)
    qdrant+local:PATH | qdrant+local::memory:   Qdrant local mode (embedded, exact emulation)
    milvus://HOST:PORT                     Milvus server
    milvus+lite:PATH                       Milvus Lite file (embedded real engine)
    weaviate://HOST:PORT?grpc=50051        Weaviate (HTTP port, gRPC port as a query parameter)
    postgresql://USER@HOST:PORT/DB         PostgreSQL + pgvector

Each adapter class implements ``from_url(url)``; this module only picks the class.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

from sdk.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from adapters.base import Adapter

__all__ = ["SCHEMES", "connect"]

# scheme -> (adapter module, class name, driver module to probe, pip extra)
SCHEMES: dict[str, tuple[str, str, str | None, str]] = {
    "memory": ("adapters.memory", "MemoryAdapter", None, ""),
    "qdrant": ("adapters.qdrant", "QdrantAdapter", "qdrant_client", "qdrant"),
    "qdrant+local": ("adapters.qdrant", "QdrantAdapter", "qdrant_client", "qdrant"),
    "milvus": ("adapters.milvus", "MilvusAdapter", "pymilvus", "milvus"),
    "milvus+lite": ("adapters.milvus", "MilvusAdapter", "pymilvus", "milvus"),
    "weaviate": ("adapters.weaviate", "WeaviateAdapter", "weaviate", "weaviate"),
    "postgresql": ("adapters.pgvector", "PgvectorAdapter", "psycopg", "pgvector"),
    "postgres": ("adapters.pgvector", "PgvectorAdapter", "psycopg", "pgvector"),
}


def connect(url: str) -> Adapter:
    """Return a connected adapter for ``url`` (see the module docstring for the forms)."""
    if not isinstance(url, str) or ":" not in url:
        raise ConfigError(f"not a database URL: {url!r}; use one of the schemes {', '.join(sorted(SCHEMES))}")
    scheme = url.split(":", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ConfigError(
            f"unknown database URL scheme {scheme!r} in {url!r}; supported schemes: {', '.join(sorted(SCHEMES))}"
        )
    module_name, class_name, driver, extra = SCHEMES[scheme]
    if driver is not None and importlib.util.find_spec(driver) is None:
        raise MissingDependencyError(driver, extra)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or driver or module_name
        if missing.startswith("adapters"):
            raise ConfigError(f"the {scheme} adapter ({module_name}) is not available in this build") from exc
        raise MissingDependencyError(missing, extra or "all") from exc
    if scheme == "memory":
        return getattr(module, class_name)()
    return getattr(module, class_name).from_url(url)
