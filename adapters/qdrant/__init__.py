"""Qdrant adapter (``pip install 'retrieval-forge[qdrant]'``): ``qdrant://``, ``qdrant+local:``."""

try:
    import qdrant_client  # noqa: F401 - probe the optional driver once, with a clear error
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    from sdk.errors import MissingDependencyError

    raise MissingDependencyError("qdrant-client", "qdrant") from exc

from adapters.qdrant.adapter import QdrantAdapter

__all__ = ["QdrantAdapter"]
