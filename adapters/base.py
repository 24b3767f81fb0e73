"""The adapter kit: the ``Adapter`` template every database implements, and what it speaks in.

``Adapter`` is a template: its public methods do everything that must be identical across
databases (capability checks, the metadata guard, record and query validation, batching,
retries and error translation) and call a handful of ``_hooks`` that hold the driver calls.
A new database therefore writes only its mapping table, filter translation and client calls.

Everything an adapter author needs is importable from here (or from the public module named
in brackets): ``Adapter``; ``Capabilities`` (``sdk.core.capabilities``); ``CollectionSpec``,
``DenseField``, ``SparseField``, ``PayloadField``, ``IndexParams``, ``check_name``
(``sdk.core.spec``); ``PreparedRecord``, ``QueryPlan``, ``DenseLeg``, ``SparseLeg``
(``adapters.validate``); ``FilterTranslator``, ``PythonFilter`` (``adapters.filters``);
``RetryPolicy``, ``translate_error``, ``is_transient`` (``adapters.retry``); ``point_id``,
``CursorPages`` (``adapters.ids``); ``require_driver`` (``adapters.drivers``). The conformance
suite every adapter must pass is ``adapters.testing``. See docs/ARCHITECTURE.md, "Adding a database".
"""

from __future__ import annotations

import abc
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from adapters.drivers import require_driver
from adapters.filters import FilterTranslator, PythonFilter
from adapters.guard import check_same, diff_specs, research_spec, stored_spec
from adapters.ids import CursorPages, batched, point_id
from adapters.retry import NO_RETRY, RetryPolicy, is_transient, translate_error
from adapters.validate import DenseLeg, PreparedRecord, QueryPlan, SparseLeg, prepare_query, prepare_records
from sdk.core.capabilities import Capabilities
from sdk.core.errors import CapabilityError, InputError, SchemaMismatchError, SDKError
from sdk.core.spec import (
    NAME_RULE,
    CollectionSpec,
    DenseField,
    IndexParams,
    PayloadField,
    SparseField,
    check_name,
)
from sdk.core.store import CollectionInfo
from sdk.core.types import Filter, Hit, HybridQuery, Record

__all__ = [
    "NAME_RULE",
    "Adapter",
    "Capabilities",
    "CollectionSpec",
    "CursorPages",
    "DenseField",
    "DenseLeg",
    "FilterTranslator",
    "IndexParams",
    "PayloadField",
    "PreparedRecord",
    "PythonFilter",
    "QueryPlan",
    "RetryPolicy",
    "SparseField",
    "SparseLeg",
    "check_name",
    "diff_specs",
    "is_transient",
    "point_id",
    "require_driver",
    "translate_error",
]

if TYPE_CHECKING:
    from adapters.aio import AsyncAdapter

T = TypeVar("T")
_TWIN_LOCK = threading.Lock()
DEFAULT_BATCH = 256
DEFAULT_ID_PAGE = 1000
_GUARD_THREADS = 32
_guard_pool: list[ThreadPoolExecutor] = []  # made on first use; a forked child makes its own


def _guard_reader() -> ThreadPoolExecutor:
    """The worker threads that read stored specs beside searches (``Adapter._overlap_guard``)."""
    if not _guard_pool:
        with _TWIN_LOCK:
            if not _guard_pool:
                _guard_pool.append(ThreadPoolExecutor(_GUARD_THREADS, thread_name_prefix="sdk-guard"))
    return _guard_pool[0]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_guard_pool.clear)


class Adapter(abc.ABC):
    """One database connection. Use as a context manager, or call ``close()``.

    Scores in returned hits are always "higher is better" (``sdk.core.similarity.distance_to_score``):
    cosine similarity, inner product, and negated euclidean / manhattan / hamming distance.
    """

    retry_policy: RetryPolicy = RetryPolicy()

    # ---- what subclasses provide ---------------------------------------------------------
    @property
    @abc.abstractmethod
    def capabilities(self) -> Capabilities:
        """What this database, as connected, can do natively."""

    @abc.abstractmethod
    def _read_spec(self, name: str) -> CollectionSpec | None:
        """The stored spec of collection or alias ``name``; ``None`` when it does not exist."""

    @abc.abstractmethod
    def _create(self, spec: CollectionSpec) -> None:
        """Create the collection with native types, metrics and indexes, and store ``spec`` in it."""

    @abc.abstractmethod
    def _upsert_batch(self, spec: CollectionSpec, name: str, batch: list[PreparedRecord]) -> None:
        """Write one batch; must be idempotent (same pid overwrites) so a retry never duplicates."""

    @abc.abstractmethod
    def _get(self, spec: CollectionSpec, name: str, pids: list[str]) -> list[PreparedRecord]:
        """Stored records for these storage ids, any order, missing ones left out."""

    @abc.abstractmethod
    def _delete(self, spec: CollectionSpec, name: str, pids: list[str]) -> None:
        """Delete these storage ids; ids that do not exist are ignored."""

    @abc.abstractmethod
    def _count(self, spec: CollectionSpec, name: str, filter: Filter | None) -> int:
        """Exact number of records (matching ``filter``)."""

    @abc.abstractmethod
    def _scan_ids(self, spec: CollectionSpec, name: str, batch_size: int) -> Iterator[list[str]]:
        """Every document id (``Record.id``, not the storage id), in pages of at most ``batch_size``.

        Any order, each id once. Return a ``CursorPages`` (``adapters.ids``): each ``next()`` fetches
        one page and a failed fetch leaves the cursor where it was, so ``ids`` can retry that page.
        Any other iterator gets one try per page (a generator cannot resume after it raised).
        """

    @abc.abstractmethod
    def _search(self, spec: CollectionSpec, name: str, plan: QueryPlan) -> list[Hit]:
        """Run a checked query plan with the database's native search and fusion."""

    @abc.abstractmethod
    def _drop(self, name: str) -> bool:
        """Drop a collection; ``False`` when it did not exist."""

    def _create_alias(self, alias: str, collection: str) -> None:
        raise CapabilityError(f"{self.capabilities.name} has no aliases")

    def _switch_alias(self, alias: str, collection: str) -> None:
        raise CapabilityError(f"{self.capabilities.name} has no aliases")

    def _delete_alias(self, alias: str) -> bool:
        raise CapabilityError(f"{self.capabilities.name} has no aliases")

    def _translate(self, exc: BaseException, what: str) -> SDKError:
        """Driver error -> SDK error. Subclasses recognise 'not found' etc., then defer to this."""
        return translate_error(exc, what)

    def _close(self) -> None:
        """Release the client (only when this adapter created it)."""
        return None

    def _overlap_guard(self) -> bool:
        """Hook: whether ``query(..., expect=...)`` may read the stored spec on another connection while
        the search runs. Yes for a database server behind a thread-safe client (the read is a round trip
        that would otherwise come first); no (the default) where the read costs microseconds."""
        return False

    def _async_twin(self) -> AsyncAdapter:
        """The async twin ``aio()`` returns; an adapter whose driver has an async client returns its own
        ``adapters.<db>._async`` class here. Default: the sync ``query`` in a worker thread."""
        from adapters.aio import ThreadedAsyncAdapter

        return ThreadedAsyncAdapter(self)

    # ---- shared machinery ----------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T], *, retry: bool = True) -> T:
        """Run a driver call under the retry policy (once with ``retry=False``), translating errors at this boundary."""
        policy = self.retry_policy if retry else NO_RETRY
        return policy.call(fn, lambda exc: self._translate(exc, what))

    def _spec_of(self, collection: str, expect: CollectionSpec | None = None) -> CollectionSpec:
        check_name(collection, "collection name")
        stored = self._call(f"reading the spec of {collection!r}", lambda: self._read_spec(collection))
        return stored_spec(stored, collection, expect)

    # ---- public protocol -----------------------------------------------------------------
    def ensure_collection(self, spec: CollectionSpec) -> CollectionSpec:
        """Create the collection if absent; if present, refuse unless its stored spec equals ``spec``."""
        if not isinstance(spec, CollectionSpec):
            raise InputError(f"ensure_collection takes a CollectionSpec, got {type(spec).__name__}")
        self.capabilities.check_spec(spec)
        stored = self._call(f"reading the spec of {spec.name!r}", lambda: self._read_spec(spec.name))
        if stored is not None:
            check_same(stored, spec, spec.name)
            return stored
        self._call(f"creating collection {spec.name!r}", lambda: self._create(spec))
        return spec

    def exists(self, collection: str) -> bool:
        check_name(collection, "collection name")
        return self._call(f"reading {collection!r}", lambda: self._read_spec(collection)) is not None

    def describe(self, collection: str) -> CollectionSpec:
        """The spec stored in the collection (or the alias' target)."""
        return self._spec_of(collection)

    def upsert(self, collection: str, records: Iterable[Record], batch_size: int = DEFAULT_BATCH,
               *, expect: CollectionSpec | None = None) -> int:
        """Insert or overwrite records in batches; returns how many were written.

        All records are validated (and ``expect`` compared with the stored spec) before the first
        batch is sent. Each batch is retried on transient failures; re-running after a failure
        leaves exactly one copy of each record because storage ids derive from document ids.
        """
        spec = self._spec_of(collection, expect)
        prepared = prepare_records(spec, self.capabilities, records)
        written = 0
        for batch in batched(prepared, batch_size):
            self._call(f"upserting {len(batch)} records into {collection!r}",
                       lambda b=batch: self._upsert_batch(spec, collection, b))
            written += len(batch)
        return written

    def get(self, collection: str, ids: Sequence[str]) -> list[Record]:
        """Stored records in the order of ``ids``; ids that do not exist are left out."""
        spec = self._spec_of(collection)
        pids = [point_id(_doc_id(i)) for i in ids]
        if not pids:
            return []
        found = {p.pid: p for p in self._call(f"reading from {collection!r}",
                                               lambda: self._get(spec, collection, pids))}
        return [found[p].to_record() for p in dict.fromkeys(pids) if p in found]

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        """Delete records by document id; ids that do not exist are ignored."""
        spec = self._spec_of(collection)
        pids = [point_id(_doc_id(i)) for i in ids]
        for batch in batched(pids, 1000):
            self._call(f"deleting from {collection!r}", lambda b=batch: self._delete(spec, collection, b))

    def count(self, collection: str, filter: Filter | None = None) -> int:
        """Exact number of records, optionally only those matching ``filter``."""
        spec = self._spec_of(collection)
        return self._call(f"counting {collection!r}", lambda: self._count(spec, collection, filter))

    def ids(self, collection: str, *, batch_size: int = DEFAULT_ID_PAGE) -> Iterator[str]:
        """Every document id in the collection (or the alias' target), each once, in no set order.

        The name is checked and the collection looked up when ``ids`` is called; the ids are then
        fetched ``batch_size`` at a time as the iterator is consumed, each page under the retry
        policy, so a collection of any size streams in bounded memory. A record written or deleted
        while the iteration runs may or may not be listed.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be an int >= 1, got {batch_size!r}")
        spec = self._spec_of(collection)
        return self._iter_ids(spec, collection, batch_size)

    def _iter_ids(self, spec: CollectionSpec, collection: str, batch_size: int) -> Iterator[str]:
        what = f"listing the ids of {collection!r}"
        pages = iter(self._call(what, lambda: self._scan_ids(spec, collection, batch_size)))
        retry = isinstance(pages, CursorPages)  # only a cursor can fetch a failed page again
        while True:
            page = self._call(what, lambda: next(pages, None), retry=retry)
            if page is None:
                return
            yield from page

    def query(self, collection: str, query: HybridQuery, *, expect: CollectionSpec | None = None) -> list[Hit]:
        """Dense, sparse or hybrid search with the database's native fusion; best hit first.

        With ``expect`` the stored spec must still equal it (``adapters.guard``), else nothing is
        returned and the mismatch raises. Where ``_overlap_guard`` allows, that read runs beside the
        search instead of before it: the hits are returned only once the read confirmed ``expect``."""
        if expect is not None and self._overlap_guard():
            return self._query_overlapped(collection, query, expect)
        spec = self._spec_of(collection, expect)
        plan = prepare_query(spec, self.capabilities, query)
        return self._call(f"querying {collection!r}", lambda: self._search(spec, collection, plan))

    def _query_overlapped(self, collection: str, query: HybridQuery, expect: CollectionSpec) -> list[Hit]:
        """``query`` on ``expect`` while a worker thread reads the stored spec: one round trip of wait, not two.

        The read's verdict comes first, as it did when it ran first: its error, a missing collection
        or a mismatch raises whatever the search did. An alias moved to another version of the same
        schema meanwhile is searched again where it points now."""
        check_name(collection, "collection name")
        read = _guard_reader().submit(self._call, f"reading the spec of {collection!r}",
                                      lambda: self._read_spec(collection))
        hits: list[Hit] = []
        failure: SDKError | None = None
        try:
            plan = prepare_query(expect, self.capabilities, query)
            hits = self._call(f"querying {collection!r}", lambda: self._search(expect, collection, plan))
        except SDKError as exc:
            failure = exc
        moved = research_spec(read.result(), collection, expect)
        if moved is not None:
            plan = prepare_query(moved, self.capabilities, query)
            return self._call(f"querying {collection!r}", lambda: self._search(moved, collection, plan))
        if failure is not None:
            raise failure
        return hits

    def drop(self, collection: str) -> bool:
        """Drop a collection; returns ``False`` when it did not exist."""
        check_name(collection, "collection name")
        return self._call(f"dropping {collection!r}", lambda: self._drop(collection))

    def create_alias(self, alias: str, collection: str) -> None:
        """Point a new alias at ``collection`` (queries may then use the alias as a name).

        Idempotent: an alias that already resolves to ``collection`` is success, so a retried call
        whose first answer was lost (the alias was made, the reply never came) does not fail. An
        alias that resolves elsewhere is refused; ``switch_alias`` re-points it.
        """
        try:
            self._alias_op("creating", alias, collection, self._create_alias)
        except InputError:
            if not self._resolves_to(alias, collection):
                raise

    def _resolves_to(self, alias: str, collection: str) -> bool:
        """Whether ``alias`` is an alias (not a collection of that name) already resolving to ``collection``."""
        try:
            target = self._spec_of(alias).name
            return target != alias and target == self._spec_of(collection).name
        except SDKError:
            return False

    def switch_alias(self, alias: str, collection: str) -> None:
        """Atomically re-point ``alias`` (created if absent) at ``collection``: blue/green re-indexing."""
        self._alias_op("switching", alias, collection, self._switch_alias)

    def delete_alias(self, alias: str) -> bool:
        """Remove an alias (the collection stays); ``False`` when it did not exist."""
        self._need_aliases()
        check_name(alias, "alias name")
        return self._call(f"deleting alias {alias!r}", lambda: self._delete_alias(alias))

    def _alias_op(self, verb: str, alias: str, collection: str, fn: Callable[[str, str], None]) -> None:
        self._need_aliases()
        check_name(alias, "alias name")
        self._spec_of(collection)
        self._call(f"{verb} alias {alias!r} -> {collection!r}", lambda: fn(alias, collection))

    def _need_aliases(self) -> None:
        if not self.capabilities.aliases:
            raise CapabilityError(f"{self.capabilities.name} has no aliases")

    def aio(self) -> AsyncAdapter:
        """This adapter's async twin (``sdk.core.store.AsyncVectorStore``), made on first use and kept.

        ``await adapter.aio().aquery(collection, query)`` gives what ``query`` gives, with the
        database round trip awaited on the driver's own async client where the driver has one
        (``native`` is then ``True``); see ``adapters.aio``."""
        twin = self.__dict__.get("_aio_twin")
        if twin is None:
            with _TWIN_LOCK:
                twin = self.__dict__.get("_aio_twin")
                if twin is None:
                    twin = self.__dict__["_aio_twin"] = self._async_twin()
        return twin

    def close(self) -> None:
        twin = self.__dict__.pop("_aio_twin", None)
        if twin is not None:
            twin.detach()
        self._close()

    def __enter__(self) -> Adapter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ---- listing collections: two hooks, then the shared work -------------------------------
    def _list_names(self) -> list[str]:
        """Hook: every physical collection in the database, the SDK's and others' alike (aliases left
        out), each spelled so that ``_read_spec`` finds it; ``list_collections`` keeps the SDK's."""
        raise CapabilityError(f"the {self.capabilities.name} adapter cannot list collections (no _list_names "
                              "hook); name the collection you want instead")

    def _list_aliases(self) -> dict[str, str]:
        """Hook (adapters with aliases): every alias -> the collection (or alias) it points at."""
        raise CapabilityError(f"the {self.capabilities.name} adapter cannot list aliases (no _list_aliases "
                              "hook); name the alias you want instead")

    def list_collections(self) -> list[CollectionInfo]:
        """The collections this SDK created (those holding a stored spec), by name, each with its spec and
        the aliases that resolve to it.

        A collection made by other means (no stored spec, or a name no SDK collection can have) is left
        out, so whatever is listed can be described, counted and dropped through the SDK.
        """
        names = self._call("listing collections", self._list_names)
        aliases = self._call("listing aliases", self._list_aliases) if self.capabilities.aliases else {}
        specs: dict[str, CollectionSpec] = {}
        for name in sorted(set(names) - set(aliases)):
            if not _is_name(name):
                continue
            spec = self._call(f"reading the spec of {name!r}", lambda n=name: self._spec_if_ours(n))
            if spec is not None and spec.name == name:  # None: not ours, or dropped meanwhile
                specs[name] = spec
        pointing: dict[str, list[str]] = {name: [] for name in specs}
        for alias in aliases:
            target = _alias_end(alias, aliases)
            if target in pointing:
                pointing[target].append(alias)
        return [CollectionInfo(name, specs[name], tuple(sorted(pointing[name]))) for name in sorted(specs)]

    def _spec_if_ours(self, name: str) -> CollectionSpec | None:
        try:
            return self._read_spec(name)
        except (SchemaMismatchError, InputError):  # a collection this SDK did not create
            return None


def _is_name(name: str) -> bool:
    try:
        check_name(name)
    except InputError:
        return False
    return True


def _alias_end(alias: str, aliases: dict[str, str]) -> str:
    """The collection at the end of an alias chain (a database that lets an alias name an alias)."""
    target = aliases[alias]
    for _ in range(len(aliases)):
        if target not in aliases:
            break
        target = aliases[target]
    return target


def _doc_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"document ids must be non-empty strings, got {value!r}")
    return value

