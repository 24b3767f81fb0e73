"""Hybrid retrieval on milvus through RetrievalPipeline: the shared suite in hybrid_suite.py."""

from __future__ import annotations

import pytest

from .hybrid_suite import HybridSuite


class TestHybridMilvus(HybridSuite):
    @pytest.fixture(scope="class")
    @classmethod
    def store_url(cls, milvus_url: str) -> str:
        return milvus_url
