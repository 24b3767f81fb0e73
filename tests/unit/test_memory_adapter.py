"""The exact memory adapter passes the same conformance suite as the real databases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters import connect
from adapters.base import Adapter
from adapters.testing import AdapterConformance


class TestMemoryAdapter(AdapterConformance):
    @pytest.fixture
    def adapter(self) -> Iterator[Adapter]:
        with connect("memory://") as adapter:
            yield adapter
