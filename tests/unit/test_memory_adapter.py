"""The exact memory adapter passes the same conformance suite as the real databases."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters import connect
from adapters.base import Adapter

try:
    from tests.integration.conformance import AdapterConformance
except ModuleNotFoundError:  # bare `pytest` (not `python -m pytest`) leaves the repo root off sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.integration.conformance import AdapterConformance


class TestMemoryAdapter(AdapterConformance):
    @pytest.fixture
    def adapter(self) -> Iterator[Adapter]:
        with connect("memory://") as adapter:
            yield adapter
