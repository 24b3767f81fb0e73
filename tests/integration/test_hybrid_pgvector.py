"""Hybrid retrieval on pgvector through RetrievalPipeline: the shared suite in hybrid_suite.py."""

from __future__ import annotations

import pytest

from .hybrid_suite import HybridSuite


class TestHybridPgvector(HybridSuite):
    @pytest.fixture(scope="class")
    @classmethod
    def store_url(cls, postgres_url: str) -> str:
        return postgres_url
