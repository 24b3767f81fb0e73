"""Milvus adapter against the conformance suite (Milvus Lite 2.5.1 unless SDK_TEST_MILVUS_URL names a server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters import connect
from adapters.base import Adapter

from .conformance import AdapterConformance


class TestMilvusConformance(AdapterConformance):
    score_rel = 2e-4
    score_abs = 2e-4

    @pytest.fixture
    def adapter(self, milvus_url: str) -> Iterator[Adapter]:
        with connect(milvus_url) as adapter:
            yield adapter
