"""``FeedbackStore``: impressions and signals in a SQL database, written by one background thread.

The request path only ever calls ``submit``, which puts a record on a bounded in-memory queue and
returns: no database round trip, no lock held across I/O, no exception. A daemon thread drains the
queue in batches, one transaction per batch. When the database fails, the batch is dropped and
logged once per burst (the first failure with its traceback, then one line when writes succeed
again); when the queue is full (the database is slower than the searches), new records are
dropped the same way. ``stats`` counts what was written and what was dropped. ``flush()`` waits
for the queue to drain; ``close()`` flushes, stops the thread and closes the connection.

The SQL is written once here with ``{table}`` fields for identifiers and ``?`` for values; a
backend (``sdk.feedback.backends``) renders identifiers with its own quoting (psycopg.sql for
PostgreSQL) and binds every value. Three tables, named ``<prefix>_impressions``, ``<prefix>_shown``
(one row per ranked hit) and ``<prefix>_events``; the model registry (``sdk.feedback.registry``)
adds ``<prefix>_candidates`` and ``<prefix>_serving`` beside them.

Retention: with ``retention_days`` set, rows older than that are deleted when the store opens,
on ``prune()``, and by the writer thread once an hour.
"""

from __future__ import annotations

import abc
import atexit
import json
import logging
import math
import queue
import re
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from sdk.core.errors import ConfigError, InputError
from sdk.feedback.records import FeedbackEvent, Impression, ShownHit, hash_query

__all__ = ["FeedbackStore", "logger"]

logger = logging.getLogger("sdk.feedback")

_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")
_PRUNE_EVERY = 3600.0  # seconds between the writer thread's retention passes
_STOP = object()

#: Identifier fields of the SQL templates -> suffix appended to the table prefix.
NAMES = {
    "impressions": "impressions",
    "shown": "shown",
    "events": "events",
    "impressions_by_time": "impressions_by_time",
    "events_by_search": "events_by_search",
    "events_by_time": "events_by_time",
    "candidates": "candidates",
    "serving": "serving",
}

#: The registry's tables (``sdk.feedback.registry``): the same SQL runs on SQLite and PostgreSQL.
REGISTRY_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {candidates} (candidate_id TEXT PRIMARY KEY, collection TEXT NOT NULL, "
    "kind TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, base TEXT, data_hash TEXT, config TEXT NOT NULL, "
    "metrics TEXT NOT NULL, decision TEXT NOT NULL, reason TEXT NOT NULL, artifact TEXT, state TEXT NOT NULL, "
    "decided_at DOUBLE PRECISION)",
    "CREATE TABLE IF NOT EXISTS {serving} (collection TEXT NOT NULL, version INTEGER NOT NULL, "
    "created_at DOUBLE PRECISION NOT NULL, action TEXT NOT NULL, candidate_id TEXT, state TEXT NOT NULL, "
    "previous INTEGER, PRIMARY KEY (collection, version))",
)

INSERT_IMPRESSION = (
    "INSERT INTO {impressions} (search_id, created_at, query, query_hash, collection, physical_collection, store, "
    "models, config, timings) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (search_id) DO NOTHING"
)
INSERT_SHOWN = ("INSERT INTO {shown} (search_id, position, doc_id, score, scores) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (search_id, position) DO NOTHING")
INSERT_EVENT = ("INSERT INTO {events} (search_id, doc_id, signal, value, created_at, known_search, position) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)")
KNOWN = "SELECT 1 FROM {impressions} WHERE search_id = ?"
POSITION = "SELECT MIN(position) FROM {shown} WHERE search_id = ? AND doc_id = ?"
SELECT_IMPRESSIONS = ("SELECT search_id, created_at, query, query_hash, collection, physical_collection, store, "
                      "models, config, timings FROM {impressions}")
SELECT_SHOWN = "SELECT position, doc_id, score, scores FROM {shown} WHERE search_id = ? ORDER BY position"
SELECT_EVENTS = ("SELECT search_id, doc_id, signal, value, created_at, known_search, position FROM {events}")
PRUNE = (
    "DELETE FROM {shown} WHERE search_id IN (SELECT search_id FROM {impressions} WHERE created_at < ?)",
    "DELETE FROM {impressions} WHERE created_at < ?",
    "DELETE FROM {events} WHERE created_at < ?",
)
COUNTS = ("SELECT (SELECT COUNT(*) FROM {impressions}), (SELECT COUNT(*) FROM {shown}), "
          "(SELECT COUNT(*) FROM {events})")


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), sort_keys=True, default=str)


def _finite(x: Any) -> float | None:
    value = float(x)
    return value if math.isfinite(value) else None


class FeedbackStore(abc.ABC):
    """Where impressions and feedback events live (see the module docstring for the guarantees).

    ``hash_queries=True`` stores ``sha256`` of each query instead of its text; ``retention_days``
    prunes older rows; ``max_pending`` bounds the queue (records beyond it are dropped, never
    waited for); ``table_prefix`` names the tables, so several stores can share one database.
    The synchronous methods (``write``, the reads, ``prune``) raise ``AdapterError`` when the
    database fails; ``submit`` never raises.
    """

    def __init__(self, *, where: str, hash_queries: bool = False, retention_days: float | None = None,
                 table_prefix: str = "feedback", max_pending: int = 10_000, batch_size: int = 256) -> None:
        if retention_days is not None and (isinstance(retention_days, bool) or not isinstance(
                retention_days, (int, float)) or not retention_days > 0):
            raise ConfigError(f"retention_days must be a positive number of days or None, got {retention_days!r}")
        for name, value in (("max_pending", max_pending), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(table_prefix, str) or not _PREFIX.fullmatch(table_prefix):
            raise ConfigError(f"table_prefix must be a plain SQL name (letters, digits, _; at most 41), "
                              f"got {table_prefix!r}")
        self.where = where
        self.hash_queries = bool(hash_queries)
        self.retention_days = float(retention_days) if retention_days is not None else None
        self.table_prefix = table_prefix
        self.names = {field: f"{table_prefix}_{suffix}" for field, suffix in NAMES.items()}
        self.batch_size = batch_size
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._cond = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        self._failing = False
        self._overflowing = False
        self._last_prune = 0.0
        self._stats = {"impressions": 0, "events": 0, "dropped": 0, "failures": 0}

    # ---- what a backend provides ------------------------------------------------------------
    @abc.abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]:
        """A context manager yielding a cursor; commits on exit, rolls back on an exception."""

    @abc.abstractmethod
    def _render(self, template: str) -> Any:
        """The template with its ``{name}`` identifiers quoted and ``?`` as the driver's placeholder."""

    @abc.abstractmethod
    def _schema(self) -> Sequence[str]:
        """``CREATE ... IF NOT EXISTS`` templates for the three tables and their indexes."""

    @abc.abstractmethod
    def _close_connection(self) -> None: ...

    def _initialise(self) -> None:
        """Create the tables and apply retention; a backend calls this once connected."""
        with self._transaction() as cur:
            for stmt in (*self._schema(), *REGISTRY_SCHEMA):
                cur.execute(self._render(stmt))
        self.prune()

    # ---- the request path -------------------------------------------------------------------
    def submit(self, item: Any) -> bool:
        """Queue an ``Impression``, a ``FeedbackEvent`` or a deferred record (an object whose
        ``resolve()`` returns one, run on the writer thread). Never blocks, never raises;
        ``False`` when the record was dropped (queue full or store closed)."""
        try:
            if self._closed:
                return False
            self._start()
            with self._cond:
                self._pending += 1
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self._done(1)
                self._drop(1, "its queue is full (the database is slower than the searches)", overflow=True)
                return False
            if self._overflowing:
                self._overflowing = False
            return True
        except Exception:  # noqa: BLE001 - the request path must not fail because of feedback
            logger.exception("feedback store %s: a record could not be queued; dropped", self.where)
            return False

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued record is written or dropped; ``False`` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    @property
    def stats(self) -> dict[str, int]:
        """Impressions and events written, records dropped, failed batches (since opening)."""
        with self._cond:
            return {**self._stats, "pending": self._pending}

    # ---- the writer thread ------------------------------------------------------------------
    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"feedback-writer[{self.where}]", daemon=True)
                self._thread.start()
                atexit.register(_flush_at_exit, weakref.ref(self))

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            records = [item for item in batch if item is not _STOP]
            try:
                self._write_batch(records)
            finally:
                self._done(len(batch))
            if stop:
                return

    def _write_batch(self, items: list[Any]) -> None:
        impressions: list[Impression] = []
        events: list[FeedbackEvent] = []
        for item in items:
            try:
                record = item.resolve() if hasattr(item, "resolve") else item
            except Exception:  # noqa: BLE001 - one bad record must not take the batch down
                logger.exception("feedback store %s: a record could not be built; dropped", self.where)
                self._count("dropped", 1)
                continue
            if isinstance(record, Impression):
                impressions.append(record)
            elif isinstance(record, FeedbackEvent):
                events.append(record)
        if not impressions and not events:
            return
        try:
            self.write(impressions, events)
        except Exception as exc:  # noqa: BLE001 - logged and dropped, never raised into a search
            self._count("failures", 1)
            self._drop(len(impressions) + len(events), f"writing failed ({exc})", exc=exc)
            return
        if self._failing:
            self._failing = False
            logger.warning("feedback store %s works again (%d records dropped so far)", self.where,
                           self.stats["dropped"])
        if self.retention_days is not None and time.monotonic() - self._last_prune > _PRUNE_EVERY:
            try:
                self.prune()
            except Exception as exc:  # noqa: BLE001
                logger.warning("feedback store %s: pruning failed (%s)", self.where, exc)

    def _drop(self, n: int, why: str, *, overflow: bool = False, exc: BaseException | None = None) -> None:
        self._count("dropped", n)
        flag = "_overflowing" if overflow else "_failing"
        if getattr(self, flag):
            return  # this burst was already logged
        setattr(self, flag, True)
        logger.warning("feedback store %s: %s; dropping feedback records (searches are unaffected) "
                       "until it recovers", self.where, why, exc_info=exc)

    def _count(self, key: str, n: int) -> None:
        with self._cond:
            self._stats[key] += n

    def _done(self, n: int) -> None:
        with self._cond:
            self._pending -= n
            if self._pending <= 0:
                self._pending = 0
                self._cond.notify_all()

    # ---- synchronous writes and reads -------------------------------------------------------
    def write(self, impressions: Sequence[Impression] = (), events: Sequence[FeedbackEvent] = ()) -> None:
        """Write records now, in one transaction (the writer thread's path; raises on failure).

        Events get ``known_search`` and ``position`` from the impressions stored at that moment;
        impressions already stored (same ``search_id``) are left as they are."""
        with self._transaction() as cur:
            if impressions:
                cur.executemany(self._render(INSERT_IMPRESSION), [self._impression_row(i) for i in impressions])
                shown = [(i.search_id, h.position, h.doc_id, _finite(h.score), _json(h.scores))
                         for i in impressions for h in i.hits]
                if shown:
                    cur.executemany(self._render(INSERT_SHOWN), shown)
            rows = []
            for e in events:
                cur.execute(self._render(KNOWN), (e.search_id,))
                known = cur.fetchone() is not None
                position = None
                if known:
                    cur.execute(self._render(POSITION), (e.search_id, e.doc_id))
                    found = cur.fetchone()
                    position = int(found[0]) if found and found[0] is not None else None
                rows.append((e.search_id, e.doc_id, e.signal, e.value, float(e.created_at), known, position))
            if rows:
                cur.executemany(self._render(INSERT_EVENT), rows)
        self._count("impressions", len(impressions))
        self._count("events", len(events))

    def _impression_row(self, imp: Impression) -> tuple[Any, ...]:
        digest = imp.query_hash or hash_query(imp.query or "")
        text = None if self.hash_queries else imp.query
        return (imp.search_id, float(imp.created_at), text, digest, imp.collection, imp.physical_collection,
                imp.store, _json(imp.models), _json(imp.config), _json(imp.timings))

    def impression(self, search_id: str) -> Impression | None:
        """The stored impression of ``search_id`` (after ``flush()``), ``None`` when there is none."""
        found = self._impressions(" WHERE search_id = ?", (search_id,))
        return found[0] if found else None

    def impressions(self, *, since: float | None = None, until: float | None = None) -> list[Impression]:
        """Stored impressions with ``since <= created_at < until`` (Unix seconds), oldest first."""
        where, params = _time_range(since, until)
        return self._impressions(where + " ORDER BY created_at, search_id", params)

    def _impressions(self, tail: str, params: Sequence[Any]) -> list[Impression]:
        out = []
        with self._transaction() as cur:
            cur.execute(self._render(SELECT_IMPRESSIONS + tail), tuple(params))
            for row in cur.fetchall():
                cur.execute(self._render(SELECT_SHOWN), (row[0],))
                hits = tuple(ShownHit(int(p), d, float(s) if s is not None else math.nan, json.loads(sc))
                             for p, d, s, sc in cur.fetchall())
                out.append(Impression(row[0], float(row[1]), row[2], row[3], row[4], row[5], row[6], hits,
                                      json.loads(row[7]), json.loads(row[8]), json.loads(row[9])))
        return out

    def events(self, search_id: str | None = None, *, since: float | None = None,
               until: float | None = None) -> list[FeedbackEvent]:
        """Stored feedback events (of one search, or in a time range), in the order they were written."""
        where, params = _time_range(since, until)
        if search_id is not None:
            where += (" AND" if where else " WHERE") + " search_id = ?"
            params = (*params, search_id)
        with self._transaction() as cur:
            cur.execute(self._render(SELECT_EVENTS + where + " ORDER BY event_id"), params)
            rows = cur.fetchall()
        return [FeedbackEvent(r[0], r[1], r[2], None if r[3] is None else float(r[3]), float(r[4]), bool(r[5]),
                              None if r[6] is None else int(r[6])) for r in rows]

    def counts(self) -> dict[str, int]:
        """Rows stored: ``impressions``, ``shown`` (ranked hits) and ``events``."""
        with self._transaction() as cur:
            cur.execute(self._render(COUNTS))
            imp, shown, ev = cur.fetchone()
        return {"impressions": int(imp), "shown": int(shown), "events": int(ev)}

    def prune(self, retention_days: float | None = None, *, now: float | None = None) -> int:
        """Delete impressions (with their hits) and events older than ``retention_days`` (default:
        the store's setting; nothing without one); returns how many impressions and events went."""
        days = self.retention_days if retention_days is None else retention_days
        self._last_prune = time.monotonic()
        if days is None:
            return 0
        if isinstance(days, bool) or not isinstance(days, (int, float)) or days < 0:
            raise InputError(f"retention_days must be a non-negative number, got {days!r}")
        cutoff = (time.time() if now is None else now) - float(days) * 86400.0
        removed = 0
        with self._transaction() as cur:
            for i, stmt in enumerate(PRUNE):
                cur.execute(self._render(stmt), (cutoff,))
                if i:  # the hits go with their impression; count impressions and events
                    removed += max(int(cur.rowcount or 0), 0)
        return removed

    # ---- lifecycle --------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once ``close()`` ran: nothing is recorded or read any more."""
        return self._closed

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush (up to ``timeout`` seconds), stop the writer and close the connection; idempotent."""
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        if thread is not None and thread.is_alive():
            with self._cond:
                self._pending += 1
            try:
                self._queue.put(_STOP, timeout=timeout)
            except queue.Full:  # the writer is stuck on the database: leave it, it is a daemon thread
                self._done(1)
            else:
                thread.join(timeout)
        self._close_connection()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.where!r}, hash_queries={self.hash_queries}, "
                f"retention_days={self.retention_days})")


def _time_range(since: float | None, until: float | None) -> tuple[str, tuple[Any, ...]]:
    parts, params = [], []
    if since is not None:
        parts.append("created_at >= ?")
        params.append(float(since))
    if until is not None:
        parts.append("created_at < ?")
        params.append(float(until))
    return (" WHERE " + " AND ".join(parts) if parts else ""), tuple(params)


def _flush_at_exit(ref: weakref.ReferenceType[FeedbackStore]) -> None:
    store = ref()
    if store is not None and not store.closed:
        store.flush(timeout=10.0)

