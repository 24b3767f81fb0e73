"""Weaviate adapter (extra: ``pip install 'retrieval-forge[weaviate]'``)."""

from adapters.weaviate.adapter import WEAVIATE_CAPABILITIES, WeaviateAdapter

__all__ = ["WEAVIATE_CAPABILITIES", "WeaviateAdapter"]
