"""Qdrant adapter against the conformance suite (local mode unless SDK_TEST_QDRANT_URL names a server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters import connect
from adapters.base import Adapter

from .conformance import AdapterConformance


class TestQdrantConformance(AdapterConformance):
    @pytest.fixture
    def adapter(self, qdrant_url: str) -> Iterator[Adapter]:
        with connect(qdrant_url) as adapter:
            yield adapter
