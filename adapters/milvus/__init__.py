"""Milvus adapter (``pip install 'retrieval-forge[milvus]'``): ``milvus://``, ``milvus+lite:``."""

try:
    import pymilvus  # noqa: F401 - probe the optional driver once, with a clear error
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    from sdk.errors import MissingDependencyError

    raise MissingDependencyError("pymilvus", "milvus") from exc

from adapters.milvus.adapter import MilvusAdapter

__all__ = ["MilvusAdapter"]
