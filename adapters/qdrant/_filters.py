"""``sdk.core.types`` filters -> Qdrant conditions over the nested ``metadata`` payload object.

Values travel as typed JSON inside the condition objects, never as query text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qdrant_client import models

from adapters.filters import FilterTranslator

__all__ = ["META", "QdrantFilter"]

META = "metadata"  # user metadata lives under this payload key; doc id and text beside it


class QdrantFilter(FilterTranslator[models.Filter]):
    def _key(self, name: str) -> str:
        return f"{META}.{name}"

    def _eq(self, name: str, ptype: str, value: Any) -> models.Filter:
        if ptype == "float":  # MatchValue has no float; an equality range is exact
            return self._range(name, ptype, {"gt": None, "gte": value, "lt": None, "lte": value})
        return models.Filter(must=[models.FieldCondition(key=self._key(name), match=models.MatchValue(value=value))])

    def _in(self, name: str, ptype: str, values: tuple[Any, ...]) -> models.Filter:
        if ptype in ("keyword", "int"):
            cond = models.FieldCondition(key=self._key(name), match=models.MatchAny(any=list(values)))
            return models.Filter(must=[cond])
        return self._or([self._eq(name, ptype, v) for v in values])

    def _range(self, name: str, ptype: str, bounds: Mapping[str, float | None]) -> models.Filter:
        rng = models.Range(gt=bounds["gt"], gte=bounds["gte"], lt=bounds["lt"], lte=bounds["lte"])
        return models.Filter(must=[models.FieldCondition(key=self._key(name), range=rng)])

    def _and(self, parts: list[models.Filter]) -> models.Filter:
        return models.Filter(must=list(parts))

    def _or(self, parts: list[models.Filter]) -> models.Filter:
        return models.Filter(should=list(parts))

    def _not(self, part: models.Filter) -> models.Filter:
        return models.Filter(must_not=[part])
