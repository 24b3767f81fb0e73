"""``sdk.core.types`` filters -> Milvus boolean expressions over the ``metadata`` JSON field.

Field names come from the validated payload schema (``^[A-Za-z_][A-Za-z0-9_]{0,62}$``) and values
are written as JSON literals (quotes, backslashes and control characters escaped), so a value can
never become syntax. Milvus Lite 2.5.1 rejects ``not (...)``, so negations are pushed down to the
leaves (``!=``, ``not in``, the complement of a range), which every Milvus version accepts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from adapters.filters import FilterTranslator
from sdk.core.types import And, Eq, Filter, In, Not, Or, Range

__all__ = ["MilvusFilter", "literal"]


def literal(value: Any) -> str:
    """A Milvus literal for a validated scalar: JSON quoting for strings, true/false, numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


class MilvusFilter(FilterTranslator[str]):
    def translate(self, f: Filter) -> str:
        if isinstance(f, Not):
            return self._negate(f.filter)
        return super().translate(f)

    def _negate(self, f: Filter) -> str:
        """``not f`` in negation normal form (De Morgan; leaves negate their operator)."""
        if isinstance(f, Not):
            return self.translate(f.filter)
        if isinstance(f, And):
            return self.translate(Or(tuple(Not(x) for x in f.filters)))
        if isinstance(f, Or):
            return self.translate(And(tuple(Not(x) for x in f.filters)))
        self.translate(f)  # validates field and values exactly like the positive form
        key = self._key(f.field)
        if isinstance(f, Eq):
            return f"({key} != {literal(f.value)})"
        if isinstance(f, In):
            return f"({key} not in [{', '.join(literal(v) for v in f.values)}])"
        if isinstance(f, Range):
            parts = []
            if f.gt is not None:
                parts.append(f"{key} <= {literal(f.gt)}")
            if f.gte is not None:
                parts.append(f"{key} < {literal(f.gte)}")
            if f.lt is not None:
                parts.append(f"{key} >= {literal(f.lt)}")
            if f.lte is not None:
                parts.append(f"{key} > {literal(f.lte)}")
            return "(" + " or ".join(parts) + ")"
        return super().translate(Not(f))  # unknown node: let the base raise its InputError

    @staticmethod
    def _key(name: str) -> str:
        return f'metadata["{name}"]'

    def _eq(self, name: str, ptype: str, value: Any) -> str:
        return f"({self._key(name)} == {literal(value)})"

    def _in(self, name: str, ptype: str, values: tuple[Any, ...]) -> str:
        return f"({self._key(name)} in [{', '.join(literal(v) for v in values)}])"

    def _range(self, name: str, ptype: str, bounds: Mapping[str, float | None]) -> str:
        ops = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
        parts = [f"{self._key(name)} {ops[k]} {literal(v)}" for k, v in bounds.items() if v is not None]
        return "(" + " and ".join(parts) + ")"

    def _and(self, parts: list[str]) -> str:
        return "(" + " and ".join(parts) + ")"

    def _or(self, parts: list[str]) -> str:
        return "(" + " or ".join(parts) + ")"

    def _not(self, part: str) -> str:  # reached only through translate(Not(...)) -> _negate
        return f"(not {part})"
