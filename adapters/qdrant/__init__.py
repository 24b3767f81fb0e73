"""Qdrant adapter (``pip install 'retrieval-forge[qdrant]'``): ``qdrant://``, ``qdrant+local:``."""

from adapters.drivers import require_driver

require_driver("qdrant_client", "qdrant", "qdrant-client")

from adapters.qdrant.adapter import QdrantAdapter  # noqa: E402 - only once the driver is known to import

__all__ = ["QdrantAdapter"]
