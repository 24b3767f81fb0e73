"""The two feedback databases: SQLite (embedded, the default) and PostgreSQL, and ``open_feedback_store``.

Targets ``open_feedback_store`` understands (options may also ride in the URL's query string:
``?hash_queries=1&retention_days=30&table_prefix=feedback``):

    feedback.sqlite | PATH                a SQLite file (created with its folder)
    sqlite:///relative.db                 SQLite, SQLAlchemy's spelling (four slashes: absolute)
    sqlite:////abs/path.db
    :memory: | sqlite://                  SQLite in memory (tests)
    postgresql://USER@HOST:PORT/DB        PostgreSQL through psycopg (also postgres://); other query
                                          parameters go to libpq unchanged (``sslmode=`` or ``tls=true``
                                          for TLS: docs/CONNECTING.md); the password never shows in
                                          ``where``, messages or logs

psycopg is imported only when a PostgreSQL URL is opened.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sdk.core.errors import AdapterError, ConfigError, MissingDependencyError
from sdk.core.urls import parse_url, redact
from sdk.feedback.store import FeedbackStore

__all__ = ["PostgresFeedbackStore", "SqliteFeedbackStore", "open_feedback_store"]

_OPTIONS = {"hash_queries", "retention_days", "table_prefix", "max_pending", "batch_size"}
_LOCK_WAIT = 5.0  # seconds close() waits for a writer in the middle of a transaction


class SqliteFeedbackStore(FeedbackStore):
    """Feedback in one SQLite file (WAL, so readers never block the writer) or in memory."""

    def __init__(self, path: str | os.PathLike[str] = ":memory:", **options: Any) -> None:
        text = os.fspath(path)
        memory = text in (":memory:", "")
        super().__init__(where=":memory:" if memory else str(Path(text).expanduser()), **options)
        if not memory:
            folder = Path(self.where).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create the feedback folder {folder} ({exc}); pass another path") from exc
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(self.where, timeout=10.0, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=MEMORY" if memory else "PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the feedback store {self.where} ({exc}); pass another path") from exc
        self._rendered: dict[str, str] = {}
        self._quoted = {k: '"' + v + '"' for k, v in self.names.items()}  # names are checked plain SQL names
        try:
            self._initialise()
        except AdapterError as exc:
            self._conn.close()
            raise ConfigError(f"cannot use the feedback store {self.where} ({exc.__cause__}); pass another path") \
                from exc

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._lock:
            try:
                cur = self._conn.cursor()
                cur.execute("BEGIN IMMEDIATE")
                try:
                    yield cur
                except BaseException:
                    if self._conn.in_transaction:  # some errors (disk full, I/O) already rolled back
                        cur.execute("ROLLBACK")
                    raise
                cur.execute("COMMIT")
            except sqlite3.Error as exc:
                raise AdapterError(f"the feedback store {self.where} failed: {exc}") from exc

    def _render(self, template: str) -> str:
        out = self._rendered.get(template)
        if out is None:
            out = self._rendered[template] = template.format(**self._quoted)
        return out

    def _schema(self) -> Sequence[str]:
        return (
            "CREATE TABLE IF NOT EXISTS {impressions} (search_id TEXT PRIMARY KEY, created_at REAL NOT NULL, "
            "query TEXT, query_hash TEXT NOT NULL, collection TEXT NOT NULL, physical_collection TEXT, "
            "store TEXT NOT NULL, models TEXT NOT NULL, config TEXT NOT NULL, timings TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS {impressions_by_time} ON {impressions} (created_at)",
            "CREATE TABLE IF NOT EXISTS {shown} (search_id TEXT NOT NULL, position INTEGER NOT NULL, "
            "doc_id TEXT NOT NULL, score REAL, scores TEXT NOT NULL, PRIMARY KEY (search_id, position))",
            "CREATE TABLE IF NOT EXISTS {events} (event_id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "search_id TEXT NOT NULL, doc_id TEXT NOT NULL, signal TEXT NOT NULL, value REAL, "
            "created_at REAL NOT NULL, known_search INTEGER NOT NULL, position INTEGER)",
            "CREATE INDEX IF NOT EXISTS {events_by_search} ON {events} (search_id)",
            "CREATE INDEX IF NOT EXISTS {events_by_time} ON {events} (created_at)",
        )

    def _close_connection(self) -> None:
        got = self._lock.acquire(timeout=_LOCK_WAIT)
        try:
            self._conn.close()
        finally:
            if got:
                self._lock.release()


class PostgresFeedbackStore(FeedbackStore):
    """Feedback in PostgreSQL: identifiers quoted with ``psycopg.sql``, every value bound.

    One connection (autocommit, a transaction per batch), re-opened on the next write after it broke.
    """

    def __init__(self, url: str, **options: Any) -> None:
        try:
            import psycopg
            from psycopg import sql
        except ImportError as exc:
            raise MissingDependencyError("psycopg[binary]", "pgvector") from exc
        if url.startswith(("postgresql://", "postgres://")):
            url = parse_url(url).conninfo()  # checks tls= / sslmode= (sdk.core.urls), spells tls= as sslmode
        super().__init__(where=redact(url), **options)
        self._psycopg, self._sql, self._url = psycopg, sql, url
        self._lock = threading.RLock()
        self._conn: Any = None
        self._rendered: dict[str, Any] = {}
        self._idents = {k: sql.Identifier(v) for k, v in self.names.items()}
        try:
            self._initialise()
        except AdapterError as exc:
            self._close_connection()
            raise ConfigError(f"cannot use the feedback database {self.where} ({exc.__cause__}); check the URL") \
                from exc

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = self._psycopg.connect(self._url, autocommit=True, connect_timeout=10)
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._lock:
            try:
                conn = self._connection()
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
            except self._psycopg.Error as exc:
                raise AdapterError(f"the feedback database {self.where} failed: {exc}") from exc

    def _render(self, template: str) -> Any:
        out = self._rendered.get(template)
        if out is None:
            out = self._rendered[template] = self._sql.SQL(template.replace("?", "%s")).format(**self._idents)
        return out

    def _schema(self) -> Sequence[str]:
        # Serialised by an advisory lock: concurrent CREATE ... IF NOT EXISTS can still collide in PostgreSQL.
        return (
            "SELECT pg_advisory_xact_lock(hashtext('retrieval_forge_feedback_schema'))",
            "CREATE TABLE IF NOT EXISTS {impressions} (search_id TEXT PRIMARY KEY, "
            "created_at DOUBLE PRECISION NOT NULL, query TEXT, query_hash TEXT NOT NULL, collection TEXT NOT NULL, "
            "physical_collection TEXT, store TEXT NOT NULL, models TEXT NOT NULL, config TEXT NOT NULL, "
            "timings TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS {impressions_by_time} ON {impressions} (created_at)",
            "CREATE TABLE IF NOT EXISTS {shown} (search_id TEXT NOT NULL, position INTEGER NOT NULL, "
            "doc_id TEXT NOT NULL, score DOUBLE PRECISION, scores TEXT NOT NULL, PRIMARY KEY (search_id, position))",
            "CREATE TABLE IF NOT EXISTS {events} (event_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "search_id TEXT NOT NULL, doc_id TEXT NOT NULL, signal TEXT NOT NULL, value DOUBLE PRECISION, "
            "created_at DOUBLE PRECISION NOT NULL, known_search BOOLEAN NOT NULL, position INTEGER)",
            "CREATE INDEX IF NOT EXISTS {events_by_search} ON {events} (search_id)",
            "CREATE INDEX IF NOT EXISTS {events_by_time} ON {events} (created_at)",
        )

    def _close_connection(self) -> None:
        got = self._lock.acquire(timeout=_LOCK_WAIT)
        try:
            if self._conn is not None:
                self._conn.close()
        finally:
            if got:
                self._lock.release()


def _take_options(query: str) -> tuple[dict[str, Any], str]:
    """Split this module's options off a URL query string; the rest is returned for the driver."""
    mine: dict[str, Any] = {}
    rest = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _OPTIONS:
            rest.append((key, value))
        elif key == "hash_queries":
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ConfigError(f"hash_queries in a feedback URL is true or false, got {value!r}")
            mine[key] = value.lower() in ("1", "true", "yes")
        elif key == "table_prefix":
            mine[key] = value
        else:
            try:
                mine[key] = float(value) if key == "retention_days" else int(value)
            except ValueError as exc:
                raise ConfigError(f"{key} in a feedback URL must be a number, got {value!r}") from exc
    return mine, urlencode(rest)


def open_feedback_store(target: FeedbackStore | str | os.PathLike[str], **options: Any) -> FeedbackStore:
    """A ``FeedbackStore`` for ``target`` (forms in the module docstring); a store is returned as given.

    ``options`` (``hash_queries``, ``retention_days``, ``table_prefix``, ``max_pending``,
    ``batch_size``) override those in the URL."""
    if isinstance(target, FeedbackStore):
        if options:
            raise ConfigError("options apply when a feedback store is opened from a URL or path, not to an open one")
        return target
    if not isinstance(target, (str, os.PathLike)):
        raise ConfigError(f"feedback must be a FeedbackStore, a SQLite path or a sqlite:// / postgresql:// URL, "
                          f"got {type(target).__name__}")
    text = os.fspath(target)
    unknown = set(options) - _OPTIONS
    if unknown:
        raise ConfigError(f"unknown feedback store option(s) {sorted(unknown)}; known: {sorted(_OPTIONS)}")
    if text.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(text)
        found, rest = _take_options(parts.query)
        return PostgresFeedbackStore(urlunsplit(parts._replace(query=rest)), **{**found, **options})
    scheme, sep, _ = text.partition("://")
    if sep and scheme != "sqlite":
        raise ConfigError(f"unknown feedback store scheme {scheme!r} in {redact(text)!r}; use a SQLite path, "
                          "sqlite:///path.db or postgresql://...")
    path, _, query = text.partition("?") if text.startswith("sqlite:") else (text, "", "")
    found, rest = _take_options(query)
    if rest:
        raise ConfigError(f"unknown option(s) in the feedback URL {redact(text)!r}: {redact(rest)}; "
                          f"known: {sorted(_OPTIONS)}")
    if path.startswith("sqlite:"):
        path = path.removeprefix("sqlite://").removeprefix("/") or ":memory:"
    return SqliteFeedbackStore(path, **{**found, **options})
