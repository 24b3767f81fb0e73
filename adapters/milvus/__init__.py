"""Milvus adapter (``pip install 'retrieval-forge[milvus]'``): ``milvus://``, ``milvus+lite:``."""

from adapters.drivers import require_driver

require_driver("pymilvus", "milvus")

from adapters.milvus.adapter import MilvusAdapter  # noqa: E402 - only once the driver is known to import

__all__ = ["MilvusAdapter"]
