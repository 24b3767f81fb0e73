"""The neutral ``Filter`` tree as a SQL condition over the ``metadata`` jsonb column.

Field names travel as bound jsonb keys (``metadata -> %(p0)s``) and values as bound parameters,
so no user string ever becomes SQL text. Equality uses jsonb containment (``@>``), which keeps
JSON types apart (``"1"`` is not ``1``, ``true`` is not ``1``) exactly like the memory
adapter's predicates, and can use the GIN index on ``metadata``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from adapters.base import CollectionSpec, FilterTranslator

__all__ = ["Params", "SqlFilter"]

_METADATA = sql.Identifier("metadata")


class Params:
    """Named bound parameters of one statement; ``add`` returns the placeholder for a value."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, value: Any) -> sql.Placeholder:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return sql.Placeholder(name)


class SqlFilter(FilterTranslator[sql.Composable]):
    """Translate a filter into a boolean SQL expression whose values land in ``params``."""

    def __init__(self, spec: CollectionSpec, params: Params) -> None:
        super().__init__(spec)
        self.params = params

    def _contains(self, name: str, value: Any) -> sql.Composable:
        return sql.SQL("{} @> {}").format(_METADATA, self.params.add(Jsonb({name: value})))

    def _eq(self, name: str, ptype: str, value: Any) -> sql.Composable:
        return sql.SQL("({})").format(self._contains(name, value))

    def _in(self, name: str, ptype: str, values: tuple[Any, ...]) -> sql.Composable:
        return sql.SQL("({})").format(sql.SQL(" OR ").join(self._contains(name, v) for v in values))

    def _range(self, name: str, ptype: str, bounds: Mapping[str, float | None]) -> sql.Composable:
        key = sql.SQL("{}::text").format(self.params.add(name))
        # A missing or non-numeric value fails the range (as in the memory adapter) instead of erroring.
        number = sql.SQL(
            "(CASE WHEN jsonb_typeof({m} -> {k}) = 'number' THEN ({m} ->> {k})::double precision END)"
        ).format(m=_METADATA, k=key)
        ops = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
        conds = [
            sql.SQL("{} {} {}::double precision").format(number, sql.SQL(ops[k]), self.params.add(float(v)))
            for k, v in bounds.items()
            if v is not None
        ]
        return sql.SQL("COALESCE(({}), false)").format(sql.SQL(" AND ").join(conds))

    def _and(self, parts: list[sql.Composable]) -> sql.Composable:
        return sql.SQL("({})").format(sql.SQL(" AND ").join(parts))

    def _or(self, parts: list[sql.Composable]) -> sql.Composable:
        return sql.SQL("({})").format(sql.SQL(" OR ").join(parts))

    def _not(self, part: sql.Composable) -> sql.Composable:
        return sql.SQL("(NOT {})").format(part)
