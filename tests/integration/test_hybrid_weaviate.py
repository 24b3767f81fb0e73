"""Hybrid retrieval on weaviate through RetrievalPipeline: the shared suite in hybrid_suite.py."""

from __future__ import annotations

import pytest

from .hybrid_suite import HybridSuite


class TestHybridWeaviate(HybridSuite):
    # Weaviate's hybrid runs each leg with its own candidate count (100 unless the server is configured
    # otherwise), whatever HybridQuery.candidate_limits says; the reference uses the same count.
    native_leg_candidates = 100

    @pytest.fixture(scope="class")
    @classmethod
    def store_url(cls, weaviate_url: str) -> str:
        return weaviate_url
