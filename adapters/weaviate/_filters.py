"""The neutral ``Filter`` tree as the v4 client's ``Filter.by_property`` objects.

Values travel as typed gRPC fields, never as GraphQL text, so hostile strings are inert. Keyword
fields are stored with ``field`` tokenization, which makes ``equal`` an exact whole-value match
like the memory reference's ``==``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from weaviate.classes.query import Filter as WFilter

from adapters.base import FilterTranslator
from adapters.weaviate._mapping import prop_name

__all__ = ["WeaviateFilter"]


def _int_bounds(bounds: Mapping[str, float | None]) -> dict[str, int | None]:
    """Bounds on an INT property as ints with the same meaning (Weaviate refuses 2.5 for an int)."""
    out: dict[str, int | None] = {}
    for key, v in bounds.items():
        if v is None:
            out[key] = None
        elif key in ("gt", "lte"):  # x > 2.5 <=> x > 2 ; x <= 2.5 <=> x <= 2
            out[key] = math.floor(v)
        else:  # x >= 2.5 <=> x >= 3 ; x < 2.5 <=> x < 3
            out[key] = math.ceil(v)
    return out


class WeaviateFilter(FilterTranslator[Any]):
    """Translate a filter into a Weaviate v4 filter object."""

    @staticmethod
    def _typed(ptype: str, value: Any) -> Any:
        return float(value) if ptype == "float" else value

    def _eq(self, name: str, ptype: str, value: Any) -> Any:
        return WFilter.by_property(prop_name(name)).equal(self._typed(ptype, value))

    def _in(self, name: str, ptype: str, values: tuple[Any, ...]) -> Any:
        return WFilter.by_property(prop_name(name)).contains_any([self._typed(ptype, v) for v in values])

    def _range(self, name: str, ptype: str, bounds: Mapping[str, float | None]) -> Any:
        b: Mapping[str, Any] = _int_bounds(bounds) if ptype == "int" else bounds
        prop = WFilter.by_property(prop_name(name))
        parts = []
        if b["gt"] is not None:
            parts.append(prop.greater_than(b["gt"]))
        if b["gte"] is not None:
            parts.append(prop.greater_or_equal(b["gte"]))
        if b["lt"] is not None:
            parts.append(prop.less_than(b["lt"]))
        if b["lte"] is not None:
            parts.append(prop.less_or_equal(b["lte"]))
        return WFilter.all_of(parts)

    def _and(self, parts: list[Any]) -> Any:
        return WFilter.all_of(parts)

    def _or(self, parts: list[Any]) -> Any:
        return WFilter.any_of(parts)

    def _not(self, part: Any) -> Any:
        return WFilter.not_(part)
