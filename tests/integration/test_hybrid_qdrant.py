"""Hybrid retrieval on qdrant through RetrievalPipeline: the shared suite in hybrid_suite.py."""

from __future__ import annotations

import pytest

from .hybrid_suite import HybridSuite


class TestHybridQdrant(HybridSuite):
    @pytest.fixture(scope="class")
    @classmethod
    def store_url(cls, qdrant_url: str) -> str:
        return qdrant_url
