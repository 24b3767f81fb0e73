"""The sync ledger: what a sync wrote, chunk by chunk, so the next run touches only what changed.

One ledger per store + collection name (its ``key``), embedded by default (SQLite in
``ledger_dir()``) or in PostgreSQL (``--ledger postgresql://...``: many ledgers share one
database, rows are keyed). It records, per physical collection, every chunk written (id,
document, source, fingerprint) and every document (fingerprint, chunk count), plus the state of
the blue/green versions (``live``, ``building``, ``versions``) and the last run.

The ledger is both phases of a two-phase write: before the store writes or deletes a chunk, its
row is recorded as pending (an empty fingerprint); the fingerprint is committed only after the
store confirmed the write, and the row removed only after the store deleted the point. A crash in
between leaves a pending row, which matches no fingerprint, so the next run redoes that step
(upserts are idempotent, deletes of absent ids are quiet) whether or not the source still has the
chunk. ``sdk sync verify`` covers the other direction: a store that lost points the ledger still
lists.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sdk.core.errors import ConfigError, MissingDependencyError, SyncError
from sdk.core.urls import parse_url, redact

__all__ = ["Ledger", "ledger_dir", "ledger_key"]

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS sync_state (ledger TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, "
    "PRIMARY KEY (ledger, name))",
    "CREATE TABLE IF NOT EXISTS sync_chunks (ledger TEXT NOT NULL, collection TEXT NOT NULL, chunk_id TEXT NOT NULL, "
    "document_id TEXT NOT NULL, source TEXT NOT NULL, fingerprint TEXT NOT NULL, "
    "PRIMARY KEY (ledger, collection, chunk_id))",
    "CREATE INDEX IF NOT EXISTS sync_chunks_by_document ON sync_chunks (ledger, collection, document_id)",
    "CREATE TABLE IF NOT EXISTS sync_documents (ledger TEXT NOT NULL, collection TEXT NOT NULL, "
    "document_id TEXT NOT NULL, source TEXT NOT NULL, fingerprint TEXT NOT NULL, chunks INTEGER NOT NULL, "
    "PRIMARY KEY (ledger, collection, document_id))",
)
_PAGE = 500


def ledger_dir() -> Path:
    """Where embedded ledgers live: ``$SDK_LEDGER_DIR``, else ``$XDG_DATA_HOME/retrieval-forge/ledgers``
    (``~/.local/share/retrieval-forge/ledgers``)."""
    explicit = os.environ.get("SDK_LEDGER_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "retrieval-forge" / "ledgers"


def ledger_key(store_url: str, collection: str) -> str:
    """A readable, collision-free key for one store + collection: ``<collection>-<12 hex of both>``.

    Embedded stores are keyed by their absolute path, so the same folder reached by two relative
    paths shares a ledger. Credentials are left out (``redact``), so a new password keeps the ledger
    and no file name is derived from a secret."""
    store_url = redact(store_url)
    scheme, _, rest = store_url.partition(":")
    if scheme.endswith(("+local", "+lite")) and rest and rest != ":memory:":  # same folder, same ledger
        store_url = f"{scheme}:{Path(rest).expanduser().resolve()}"
    digest = hashlib.sha256(f"{store_url}\0{collection}".encode()).hexdigest()[:12]
    return f"{re.sub(r'[^A-Za-z0-9_]', '_', collection)}-{digest}"


class Ledger:
    """Chunk and document rows of one sync target; thread-safe; every write is one transaction."""

    def __init__(self, connection: Any, key: str, *, postgres: bool, where: str) -> None:
        self._conn = connection
        self._pg = postgres
        self.key = key
        self.where = where
        self._lock = threading.RLock()
        with self._tx() as cur:
            for stmt in SCHEMA:
                cur.execute(stmt)

    # ---- opening ----------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str | os.PathLike[str] | None, *, key: str) -> Ledger:
        """``None``: the embedded file for ``key`` under ``ledger_dir()``; ``:memory:``; a ``.sqlite``
        path (or ``sqlite:///path``); or a ``postgresql://`` URL."""
        text = None if url is None else os.fspath(url)
        if text is not None and text.startswith(("postgresql://", "postgres://")):
            return cls._open_postgres(text, key)
        if text is None:
            path = ledger_dir() / f"{key}.sqlite"
        elif text == ":memory:":
            path = None
        else:
            path = Path(text.removeprefix("sqlite:///").removeprefix("sqlite://")).expanduser()
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create the ledger folder {path.parent} ({exc}); set SDK_LEDGER_DIR "
                                  "or pass --ledger PATH") from exc
        try:
            conn = sqlite3.connect(str(path) if path else ":memory:", timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL" if path else "PRAGMA journal_mode=MEMORY")
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the sync ledger {path} ({exc}); pass --ledger PATH") from exc
        return cls(conn, key, postgres=False, where=str(path) if path else ":memory:")

    @classmethod
    def _open_postgres(cls, url: str, key: str) -> Ledger:
        try:
            import psycopg
        except ImportError as exc:
            raise MissingDependencyError("psycopg[binary]", "pgvector") from exc
        conninfo = parse_url(url).conninfo()  # checks tls= / sslmode= (sdk.core.urls), spells tls= as sslmode
        try:
            conn = psycopg.connect(conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise ConfigError(f"cannot connect to the ledger database {redact(url)} ({exc}); check --ledger") from exc
        return cls(conn, key, postgres=True, where=redact(url))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing ---------------------------------------------------------------------------
    def _sql(self, stmt: str) -> str:
        return stmt.replace("?", "%s") if self._pg else stmt

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        """One transaction: committed on exit, rolled back on any error."""
        with self._lock:
            try:
                if self._pg:
                    with self._conn.transaction():
                        cur = self._conn.cursor()
                        yield cur
                else:
                    cur = self._conn.cursor()
                    cur.execute("BEGIN IMMEDIATE")
                    try:
                        yield cur
                    except BaseException:
                        cur.execute("ROLLBACK")
                        raise
                    cur.execute("COMMIT")
            except (sqlite3.Error, _pg_error()) as exc:
                raise SyncError(f"the sync ledger ({self.where}) failed: {exc}") from exc

    def _rows(self, stmt: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._tx() as cur:
            cur.execute(self._sql(stmt), tuple(params))
            return list(cur.fetchall())

    def _many(self, stmt: str, rows: Iterable[Sequence[Any]]) -> int:
        n = 0
        with self._tx() as cur:
            page: list[Sequence[Any]] = []
            for row in rows:
                page.append(row)
                if len(page) >= _PAGE:
                    cur.executemany(self._sql(stmt), page)
                    n, page = n + len(page), []
            if page:
                cur.executemany(self._sql(stmt), page)
                n += len(page)
        return n

    # ---- state ------------------------------------------------------------------------------
    def get(self, name: str, default: Any = None) -> Any:
        rows = self._rows("SELECT value FROM sync_state WHERE ledger = ? AND name = ?", (self.key, name))
        return json.loads(rows[0][0]) if rows else default

    def set(self, **values: Any) -> None:
        """Set (or, with ``None``, clear) state entries, all in one transaction."""
        stmt_set = ("INSERT INTO sync_state (ledger, name, value) VALUES (?, ?, ?) "
                    "ON CONFLICT (ledger, name) DO UPDATE SET value = excluded.value")
        with self._tx() as cur:
            for name, value in values.items():
                if value is None:
                    cur.execute(self._sql("DELETE FROM sync_state WHERE ledger = ? AND name = ?"), (self.key, name))
                else:
                    cur.execute(self._sql(stmt_set), (self.key, name, json.dumps(value, sort_keys=True)))

    # ---- chunks and documents ---------------------------------------------------------------
    def chunks(self, collection: str) -> dict[str, tuple[str, str, str]]:
        """``chunk_id -> (document_id, source, fingerprint)`` for one physical collection."""
        rows = self._rows("SELECT chunk_id, document_id, source, fingerprint FROM sync_chunks "
                          "WHERE ledger = ? AND collection = ?", (self.key, collection))
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def documents(self, collection: str) -> dict[str, tuple[str, str, int]]:
        """``document_id -> (source, fingerprint, chunks)`` for one physical collection."""
        rows = self._rows("SELECT document_id, source, fingerprint, chunks FROM sync_documents "
                          "WHERE ledger = ? AND collection = ?", (self.key, collection))
        return {r[0]: (r[1], r[2], int(r[3])) for r in rows}

    def put_chunks(self, collection: str, rows: Iterable[tuple[str, str, str, str]]) -> int:
        """Record chunks the store confirmed: ``(chunk_id, document_id, source, fingerprint)``."""
        return self._upsert("sync_chunks", ("chunk_id",), ("document_id", "source", "fingerprint"), collection, rows)

    def put_documents(self, collection: str, rows: Iterable[tuple[str, str, str, int]]) -> int:
        """Record documents whose chunks are all in: ``(document_id, source, fingerprint, chunks)``."""
        return self._upsert("sync_documents", ("document_id",), ("source", "fingerprint", "chunks"), collection, rows)

    def _upsert(self, table: str, keys: tuple[str, ...], values: tuple[str, ...], collection: str,
                rows: Iterable[Sequence[Any]]) -> int:
        # Table and column names are this module's constants, never caller input.
        columns = ("ledger", "collection", *keys, *values)
        stmt = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
                f"ON CONFLICT (ledger, collection, {', '.join(keys)}) DO UPDATE SET "
                + ", ".join(f"{v} = excluded.{v}" for v in values))
        return self._many(stmt, ((self.key, collection, *row) for row in rows))

    def mark_pending(self, collection: str, chunk_ids: Iterable[str]) -> int:
        """Blank the fingerprints of chunks about to be deleted from the store (see the module docstring)."""
        return self._many("UPDATE sync_chunks SET fingerprint = '' WHERE ledger = ? AND collection = ? AND chunk_id = ?",
                          ((self.key, collection, c) for c in chunk_ids))

    def remove_chunks(self, collection: str, chunk_ids: Iterable[str]) -> int:
        return self._many("DELETE FROM sync_chunks WHERE ledger = ? AND collection = ? AND chunk_id = ?",
                          ((self.key, collection, c) for c in chunk_ids))

    def remove_documents(self, collection: str, document_ids: Iterable[str]) -> int:
        return self._many("DELETE FROM sync_documents WHERE ledger = ? AND collection = ? AND document_id = ?",
                          ((self.key, collection, d) for d in document_ids))

    def forget_collection(self, collection: str) -> None:
        """Drop every row of a physical collection (after the collection itself was dropped)."""
        with self._tx() as cur:
            for table in ("sync_chunks", "sync_documents"):
                cur.execute(self._sql(f"DELETE FROM {table} WHERE ledger = ? AND collection = ?"),
                            (self.key, collection))

    def counts(self, collection: str) -> tuple[int, int]:
        """(documents, chunks) recorded for a physical collection."""
        docs = self._rows("SELECT COUNT(*) FROM sync_documents WHERE ledger = ? AND collection = ?",
                          (self.key, collection))[0][0]
        chunks = self._rows("SELECT COUNT(*) FROM sync_chunks WHERE ledger = ? AND collection = ?",
                            (self.key, collection))[0][0]
        return int(docs), int(chunks)


def _pg_error() -> type[BaseException]:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - only without the pgvector extra
        return sqlite3.Error
    return psycopg.Error


def now() -> str:
    """UTC timestamp for run records."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
