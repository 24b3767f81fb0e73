"""``VectorStore``: the adapter protocol as the layers above the adapters see it.

The retrieval pipeline, evaluation and (soon) sync speak to a database only through these
methods. ``adapters.base.Adapter`` implements them once for every database; a third-party store
may implement them directly. Declared here, in the core, so that code above the adapters can
name the type without importing the ``adapters`` package (and its drivers).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, runtime_checkable

from sdk.core.capabilities import Capabilities
from sdk.core.spec import CollectionSpec
from sdk.core.types import Filter, Hit, HybridQuery, Record

__all__ = ["VectorStore"]


@runtime_checkable
class VectorStore(Protocol):
    """One connection to a vector database (see ``adapters.base.Adapter`` for the semantics)."""

    @property
    def capabilities(self) -> Capabilities: ...

    def ensure_collection(self, spec: CollectionSpec) -> CollectionSpec: ...

    def exists(self, collection: str) -> bool: ...

    def describe(self, collection: str) -> CollectionSpec: ...

    def upsert(self, collection: str, records: Iterable[Record], batch_size: int = ...,
               *, expect: CollectionSpec | None = None) -> int: ...

    def get(self, collection: str, ids: Sequence[str]) -> list[Record]: ...

    def delete(self, collection: str, ids: Sequence[str]) -> None: ...

    def count(self, collection: str, filter: Filter | None = None) -> int: ...

    def ids(self, collection: str, *, batch_size: int = ...) -> Iterator[str]: ...

    def query(self, collection: str, query: HybridQuery, *,
              expect: CollectionSpec | None = None) -> list[Hit]: ...

    def drop(self, collection: str) -> bool: ...

    def create_alias(self, alias: str, collection: str) -> None: ...

    def switch_alias(self, alias: str, collection: str) -> None: ...

    def delete_alias(self, alias: str) -> bool: ...

    def close(self) -> None: ...
