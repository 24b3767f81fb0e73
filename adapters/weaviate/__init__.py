"""Weaviate adapter (``pip install 'retrieval-forge[weaviate]'``): ``weaviate://``, ``weaviates://``."""

from adapters.drivers import require_driver

require_driver("weaviate", "weaviate", "weaviate-client")

from adapters.weaviate.adapter import WEAVIATE_CAPABILITIES, WeaviateAdapter  # noqa: E402

__all__ = ["WEAVIATE_CAPABILITIES", "WeaviateAdapter"]
