"""The neutral ``Filter`` tree walked once, with each database supplying only the leaf syntax.

``FilterTranslator`` checks every field against the collection's payload schema and every
value against the field's type before a subclass turns it into Qdrant conditions, a Milvus
expression, SQL or a Weaviate filter, so an unknown field or a mistyped value never reaches
a database (and a value never becomes syntax).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from sdk.core.errors import InputError
from sdk.core.spec import CollectionSpec
from sdk.core.types import And, Eq, Filter, In, Not, Or, Range

__all__ = ["FilterTranslator", "PythonFilter"]

T = TypeVar("T")


class FilterTranslator(abc.ABC, Generic[T]):
    """Visitor over ``Filter``; subclasses implement the six ``_eq`` ... ``_not`` hooks."""

    def __init__(self, spec: CollectionSpec) -> None:
        self.spec = spec
        self.types = spec.payload_types()

    def translate(self, f: Filter) -> T:
        if isinstance(f, Eq):
            ptype = self._field(f.field)
            return self._eq(f.field, ptype, self._value(f.field, ptype, f.value))
        if isinstance(f, In):
            ptype = self._field(f.field)
            return self._in(f.field, ptype, tuple(self._value(f.field, ptype, v) for v in f.values))
        if isinstance(f, Range):
            ptype = self._field(f.field)
            if ptype not in ("int", "float"):
                raise InputError(f"Range filter on {f.field!r} needs an int or float field, it is {ptype}")
            bounds = {k: self._number(f.field, getattr(f, k)) for k in ("gt", "gte", "lt", "lte")}
            return self._range(f.field, ptype, bounds)
        if isinstance(f, (And, Or)):
            if not f.filters:
                raise InputError(f"{type(f).__name__}() needs at least one sub-filter")
            parts = [self.translate(sub) for sub in f.filters]
            return self._and(parts) if isinstance(f, And) else self._or(parts)
        if isinstance(f, Not):
            return self._not(self.translate(f.filter))
        raise InputError(f"unknown filter node {f!r}; build filters from sdk.core.types Eq/In/Range/And/Or/Not")

    def _field(self, name: str) -> str:
        if name not in self.types:
            known = ", ".join(sorted(self.types)) or "none"
            raise InputError(
                f"unknown filter field {name!r} for collection {self.spec.name!r}; filterable payload "
                f"fields: {known}. Declare it as a PayloadField in the CollectionSpec"
            )
        return self.types[name]

    @staticmethod
    def _value(name: str, ptype: str, value: Any) -> Any:
        ok = {
            "keyword": isinstance(value, str),
            "bool": isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(float(value)),
        }[ptype]
        if not ok:
            raise InputError(f"filter value {value!r} for {name!r} must be of type {ptype}")
        return value

    @staticmethod
    def _number(name: str, value: Any) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(f"Range bound {value!r} for {name!r} must be a finite number")
        return value

    @abc.abstractmethod
    def _eq(self, name: str, ptype: str, value: Any) -> T: ...

    @abc.abstractmethod
    def _in(self, name: str, ptype: str, values: tuple[Any, ...]) -> T: ...

    @abc.abstractmethod
    def _range(self, name: str, ptype: str, bounds: Mapping[str, float | None]) -> T: ...

    @abc.abstractmethod
    def _and(self, parts: list[T]) -> T: ...

    @abc.abstractmethod
    def _or(self, parts: list[T]) -> T: ...

    @abc.abstractmethod
    def _not(self, part: T) -> T: ...


Predicate = Callable[[Mapping[str, Any]], bool]


class PythonFilter(FilterTranslator[Predicate]):
    """Filters as Python predicates over a metadata dict: the memory adapter's exact semantics.

    A missing key never equals anything, is in no set and satisfies no range; ``Not`` negates.
    """

    def _eq(self, name: str, ptype: str, value: Any) -> Predicate:
        return lambda m: name in m and m[name] == value and isinstance(m[name], bool) == isinstance(value, bool)

    def _in(self, name: str, ptype: str, values: tuple[Any, ...]) -> Predicate:
        return lambda m: name in m and any(
            m[name] == v and isinstance(m[name], bool) == isinstance(v, bool) for v in values
        )

    def _range(self, name: str, ptype: str, bounds: Mapping[str, float | None]) -> Predicate:
        gt, gte, lt, lte = bounds["gt"], bounds["gte"], bounds["lt"], bounds["lte"]

        def pred(m: Mapping[str, Any]) -> bool:
            v = m.get(name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return False
            return ((gt is None or v > gt) and (gte is None or v >= gte)
                    and (lt is None or v < lt) and (lte is None or v <= lte))

        return pred

    def _and(self, parts: list[Predicate]) -> Predicate:
        return lambda m: all(p(m) for p in parts)

    def _or(self, parts: list[Predicate]) -> Predicate:
        return lambda m: any(p(m) for p in parts)

    def _not(self, part: Predicate) -> Predicate:
        return lambda m: not part(m)
