"""``VectorStore``: the adapter protocol as the layers above the adapters see it.

The retrieval pipeline, evaluation and (soon) sync speak to a database only through these
methods. ``adapters.base.Adapter`` implements them once for every database; a third-party store
may implement them directly. Declared here, in the core, so that code above the adapters can
name the type without importing the ``adapters`` package (and its drivers).

``AsyncVectorStore`` is the serving path's async side: a store's ``aio()`` returns one
(``adapters.aio``), and ``RetrievalPipeline.asearch`` awaits its ``aquery`` instead of parking a
thread per call whenever its ``native`` flag says the driver's own async client answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from sdk.core.capabilities import Capabilities
from sdk.core.spec import CollectionSpec
from sdk.core.types import Filter, Hit, HybridQuery, Record

__all__ = ["AsyncVectorStore", "CollectionInfo", "VectorStore", "async_store"]


@dataclass(frozen=True)
class CollectionInfo:
    """One collection this SDK created, as ``VectorStore.list_collections`` finds it.

    ``name`` is the physical collection (what ``drop`` takes); ``aliases`` are the aliases that
    resolve to it, sorted and spelled as the database keeps them (Weaviate capitalises the first
    letter: alias ``live`` is listed as ``Live``, and either spelling names it); ``spec`` is the
    spec stored in it. A collection without a stored spec (made by other means) is never listed.
    """

    name: str
    spec: CollectionSpec
    aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "aliases": list(self.aliases), "spec": self.spec.to_dict()}


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

    def list_collections(self) -> list[CollectionInfo]: ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncVectorStore(Protocol):
    """The async twin of a ``VectorStore``: the query path, awaited (``adapters.aio.AsyncAdapter``).

    ``native`` is ``True`` when the database round trip runs on the driver's own async client and
    ``False`` when it runs the sync store in a worker thread (no async driver, or none usable)."""

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def native(self) -> bool: ...

    async def aquery(self, collection: str, query: HybridQuery, *,
                     expect: CollectionSpec | None = None) -> list[Hit]: ...

    async def aclose(self) -> None: ...


def async_store(store: object) -> AsyncVectorStore | None:
    """``store.aio()`` when the store offers an async twin, else ``None`` (run it in a thread then)."""
    aio = getattr(store, "aio", None)
    if not callable(aio):
        return None
    twin = aio()
    return twin if isinstance(twin, AsyncVectorStore) else None
