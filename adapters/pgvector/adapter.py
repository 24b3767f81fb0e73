"""``PgvectorAdapter``: one table per collection in PostgreSQL with the pgvector extension.

Layout: ``id uuid`` (deterministic, from ``adapters.base.point_id``), ``doc_id``, ``text``,
``metadata jsonb`` and one typed column per vector field (``vector`` / ``halfvec`` / ``bit`` /
``sparsevec``). ``_sdk_collections`` records the spec that wrote each collection and
``_sdk_aliases`` each alias, which is also a view so plain SQL users see the same names.
Every statement runs in its own transaction, so a failure never leaves a half-applied batch or
an idle transaction holding locks. With a URL the adapter keeps a ``psycopg_pool.ConnectionPool``
and each operation borrows one connection for its transaction, so threads query in parallel;
``aio()`` (``adapters.pgvector._async``) pools ``AsyncConnection`` s per event loop.
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, TypeVar

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from adapters.aio import AsyncAdapter
from adapters.base import Adapter, Capabilities, CollectionSpec, CursorPages, PreparedRecord, QueryPlan
from adapters.guard import check_same
from adapters.pgvector._ddl import ALIAS_TABLE, META_TABLE, create_table, index_statements, meta_tables
from adapters.pgvector._deadline import StatementDeadline
from adapters.pgvector._errors import is_connection_lost, translate
from adapters.pgvector._filters import Params, SqlFilter
from adapters.pgvector._mapping import SPARSE_DIM, SUPPORTED_METRICS
from adapters.pgvector._query import LegSql, build_search, dense_value, metadata_value, sparse_value
from adapters.steps import Steps, run_steps
from sdk.core.errors import AdapterError, ConfigError, InputError, SDKError
from sdk.core.similarity import distance_to_score
from sdk.core.types import Filter, FusionMethod, Hit, SparseVector
from sdk.core.urls import parse_url, pg_adapter_options

__all__ = ["PGVECTOR_CAPABILITIES", "PgvectorAdapter"]

T = TypeVar("T")

PGVECTOR_CAPABILITIES = Capabilities(
    name="pgvector",
    similarities=SUPPORTED_METRICS,
    sparse=True,
    sparse_idf=False,
    fusions=frozenset({FusionMethod.RRF}),
    text_leg=False,
    aliases=True,
    matryoshka=True,
    quantization=frozenset({"binary"}),
    index_kinds=frozenset({"auto", "flat", "hnsw", "ivf_flat"}),
    max_sparse_index=SPARSE_DIM - 1,  # every sparsevec column has pgvector's maximum dimension
    max_sparse_nnz=16_000,  # pgvector 0.8: "sparsevec cannot have more than 16000 non-zero elements"
    text_allows_nul=False,  # PostgreSQL text and jsonb cannot hold U+0000
    max_int=None,  # jsonb numbers are arbitrary-precision numerics
    reserved_names=frozenset({META_TABLE, ALIAS_TABLE}),
)

_WRITER = "retrieval-forge adapters.pgvector"
# psycopg_pool reconnects with a doubling delay (1, 2, 4, ... s) for reconnect_timeout (5 min by
# default): after a one-minute outage its next attempt came up to a minute after the server was
# back, and every call failed meanwhile (tests/reliability/test_faults.py). Short rounds: the next
# call that finds no connection starts a new round at once.
_RECONNECT_ROUND_S = 10.0
# Iterative scans keep an HNSW search going until enough rows pass the filter. The last parameter:
# local to the transaction (true) or for the session (false).
_SETTINGS_SQL = ("SELECT set_config('hnsw.ef_search', %(ef)s, %(local)s), "
                 "set_config('hnsw.iterative_scan', 'strict_order', %(local)s), "
                 "set_config('ivfflat.probes', %(probes)s, %(local)s), "
                 "set_config('ivfflat.iterative_scan', 'relaxed_order', %(local)s)")
_SPEC_SQL = sql.SQL("SELECT spec FROM {m} WHERE name = COALESCE((SELECT target FROM {a} WHERE alias = %(n)s), "
                    "%(n)s)").format(m=sql.Identifier(META_TABLE), a=sql.Identifier(ALIAS_TABLE))


class PgvectorAdapter(Adapter):
    """PostgreSQL + pgvector. Pass ``conninfo`` (a libpq URL or DSN) or an open ``connection``.

    With ``conninfo`` the adapter owns its connection and reopens it after a connection failure,
    so retries survive a server restart or a killed backend. With ``connection`` (a psycopg 3
    connection you already hold) a lost connection fails cleanly instead, because reopening it
    is its owner's decision; either autocommit mode works, each call commits its own transaction.
    ``ef_search`` overrides the HNSW search breadth (default: the field's ``IndexParams.ef_search``,
    at least the number of candidates asked for, at most pgvector's 1000).

    With ``conninfo`` the connections come from a pool of ``pool_min_size`` to ``pool_max_size``
    (each operation borrows one for its transaction and gives it back, also after an error; a
    caller waits at most ``pool_timeout`` seconds for one). The async twin (``aio()``) opens its
    own connections on demand, up to ``pool_max_size`` per event loop, so one adapter used from
    threads and one loop may hold twice that. A ``connection=`` is used alone, behind a lock.
    """

    def __init__(self, conninfo: str | None = None, *, connection: Any = None,
                 ef_search: int | None = None, pool_min_size: int = 1, pool_max_size: int = 10,
                 pool_timeout: float = 10.0, call_timeout: float | None = 30.0,
                 connect_timeout: float = 10.0) -> None:
        if (conninfo is None) == (connection is None):
            raise ConfigError("PgvectorAdapter needs exactly one of conninfo= (a postgresql:// URL) or connection=")
        for label, value in (("pool_min_size", pool_min_size), ("pool_max_size", pool_max_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if label == "pool_min_size" else 1):
                raise ConfigError(f"{label} must be an int (min >= 0, max >= 1), got {value!r}")
        if pool_min_size > pool_max_size:
            raise ConfigError(f"pool_min_size ({pool_min_size}) is above pool_max_size ({pool_max_size}); "
                              "lower the first or raise the second")
        if isinstance(pool_timeout, bool) or not isinstance(pool_timeout, (int, float)) or pool_timeout <= 0:
            raise ConfigError(f"pool_timeout must be a number of seconds > 0, got {pool_timeout!r}")
        for label, limit in (("call_timeout", call_timeout), ("connect_timeout", connect_timeout)):
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit <= 0):
                raise ConfigError(f"{label} must be a number of seconds > 0 (call_timeout may be None), got {limit!r}")
        if connection is not None and not isinstance(connection, psycopg.Connection):
            raise ConfigError(
                f"connection= must be a psycopg 3 Connection, got {type(connection).__name__}; "
                "or pass conninfo= and let the adapter connect"
            )
        if conninfo is not None and conninfo.startswith(("postgresql://", "postgres://")):
            conninfo = parse_url(conninfo).conninfo()  # checks tls= / sslmode=, spells tls= as sslmode
        self._conninfo = conninfo
        self._owned = conninfo is not None
        self._conn_obj: Any = connection
        self._ready = False
        self._lock = threading.RLock()
        self._ef_search = ef_search
        self.pool_min_size, self.pool_max_size, self.pool_timeout = pool_min_size, pool_max_size, float(pool_timeout)
        self.call_timeout = None if call_timeout is None else float(call_timeout)
        self.connect_timeout = float(connect_timeout)
        self._pool: ConnectionPool | None = None
        # What _search_steps last set on each pooled (sync or async) connection's session.
        self._session_settings: weakref.WeakKeyDictionary[Any, tuple[str, str]] = weakref.WeakKeyDictionary()

    @classmethod
    def from_url(cls, url: str) -> PgvectorAdapter:
        """``postgresql://USER[:PASSWORD]@HOST:PORT/DB`` (any libpq URL; ``?sslmode=require`` or
        ``?tls=true`` for TLS; PGPASSWORD and ~/.pgpass as in psql): used by ``adapters.connect``.

        ``?pool_min_size=``, ``?pool_max_size=``, ``?pool_timeout=`` and ``?call_timeout=`` (seconds, or
        ``none``) set the keywords of the same names, so a served URL can size the pool."""
        return cls(url, **pg_adapter_options(parse_url(url)))  # type: ignore[arg-type]

    # ---- connection ------------------------------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        return PGVECTOR_CAPABILITIES

    def _connection(self) -> Any:
        """The caller's connection (``connection=``), set up on first use."""
        conn = self._conn_obj
        if conn is None or conn.closed or conn.broken:
            raise AdapterError(
                "the psycopg connection given to PgvectorAdapter is closed or broken; reconnect it "
                "and build a new adapter, or pass conninfo= so the adapter can reconnect by itself"
            )
        if not self._ready:
            self._configure(conn)
        return conn

    def _configure(self, conn: Any) -> None:
        """Once per adapter: the extension and the metadata tables; per connection: the vector types."""
        with self._lock:
            if not self._ready:
                with conn.transaction():
                    run_steps(_setup_steps(), conn)
                self._ready = True
        register_vector(conn)

    def _connection_pool(self) -> ConnectionPool:
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    # One direct connection first: a wrong URL or password, or a server that is down, fails
                    # here at once with libpq's own message instead of as a pool timeout later.
                    with psycopg.connect(self._conninfo, **self._connect_kwargs()) as probe:  # type: ignore[arg-type]
                        self._configure(probe)
                    fresh = ConnectionPool(
                        self._conninfo, min_size=self.pool_min_size, max_size=self.pool_max_size,  # type: ignore[arg-type]
                        timeout=self.pool_timeout, kwargs=self._connect_kwargs(), configure=self._configure,
                        open=False, name="retrieval-forge pgvector", reconnect_timeout=_RECONNECT_ROUND_S,
                    )
                    fresh.open(wait=False)
                    self._pool = fresh
                pool = self._pool
        return pool

    def _connect_kwargs(self) -> dict[str, Any]:
        """``psycopg.connect`` arguments: autocommit, and ``connect_timeout`` unless the URL or
        PGCONNECT_TIMEOUT sets one (libpq's default is to wait as long as TCP does)."""
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in conninfo_to_dict(self._conninfo or "") and "PGCONNECT_TIMEOUT" not in os.environ:
            kwargs["connect_timeout"] = max(2, round(self.connect_timeout))  # libpq: whole seconds, >= 2
        return kwargs

    def _tx(self, fn: Callable[[Any], T], *, timeout: float | None | bool = True, single: bool = False,
            pipeline: bool = False) -> T:
        """Run ``fn(connection)`` inside one transaction, on a pooled connection when the adapter owns them.

        The transaction must end within ``call_timeout`` (``timeout=None``: no limit), see ``_deadline``.
        ``single``: ``fn`` runs one read-only statement, which needs no BEGIN / COMMIT on a pooled
        (autocommit) connection: one round trip instead of three. ``pipeline``: psycopg's pipeline
        mode, so statements whose results are not read in between travel together.
        """
        limit = self.call_timeout if timeout is True else timeout
        if not self._owned:
            with self._lock:
                conn = self._connection()
                with StatementDeadline(conn, limit), _pipelined(conn, pipeline), conn.transaction():
                    return fn(conn)
        pool = self._connection_pool()
        try:
            with pool.connection() as conn, StatementDeadline(conn, limit), _pipelined(conn, pipeline), \
                    (nullcontext() if single else conn.transaction()):
                return fn(conn)
        except pg_errors.ConnectionTimeout:
            # No pool.check() here: checking the idle connections over a path that stalled would wait
            # without a limit; each one meets its own deadline when it is borrowed.
            raise
        except psycopg.Error as exc:
            if is_connection_lost(exc):
                pool.check()  # a restarted server broke the idle ones too: replace them before the retry
            raise

    def pool_stats(self) -> dict[str, int]:
        """The sync pool's counters (``psycopg_pool`` ``get_stats``: ``pool_size``, ``pool_available``,
        ``requests_waiting``, ...); empty with a borrowed connection or before the first operation."""
        return dict(self._pool.get_stats()) if self._pool is not None else {}

    def _async_twin(self) -> AsyncAdapter:
        if not self._owned:  # a caller's sync connection cannot serve an event loop: worker threads
            return super()._async_twin()
        from adapters.pgvector._async import AsyncPgvectorAdapter

        return AsyncPgvectorAdapter(self)

    def _translate(self, exc: BaseException, what: str) -> SDKError:
        if is_connection_lost(exc) and not self._owned:
            return AdapterError(f"{what} failed: the connection you passed was lost ({exc}); reconnect it")
        return translate(exc, what)

    def _close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        if self._owned and self._conn_obj is not None:
            self._conn_obj.close()
        self._conn_obj = None

    def _overlap_guard(self) -> bool:
        return self._owned  # pooled: the read borrows its own connection (a caller's one connection cannot)

    # ---- metadata ----------------------------------------------------------------------------
    def _read_spec(self, name: str) -> CollectionSpec | None:
        return self._tx(lambda conn: run_steps(self._read_spec_steps(name), conn), single=True)

    @staticmethod
    def _read_spec_steps(name: str) -> Steps[CollectionSpec | None]:
        """The spec of a collection or alias, as steps on a (sync or async) connection."""
        cur = yield lambda conn: conn.execute(_SPEC_SQL, {"n": name})
        row = yield lambda conn: cur.fetchone()
        return CollectionSpec.from_dict(row[0]) if row else None

    def _create(self, spec: CollectionSpec) -> None:
        def run(conn: Any) -> None:
            # Serialise concurrent creators of the same name; the lock ends with the transaction.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("sdk-collection:" + spec.name,))
            row = conn.execute(sql.SQL("SELECT spec FROM {} WHERE name = %s").format(sql.Identifier(META_TABLE)),
                               (spec.name,)).fetchone()
            if row:
                # Created meanwhile by this SDK: a concurrent creator, or an earlier attempt of this very
                # call whose COMMIT went through but whose answer was lost (tests/reliability/test_faults.py).
                check_same(CollectionSpec.from_dict(row[0]), spec, spec.name)
                return
            taken = conn.execute(
                sql.SQL("SELECT (SELECT count(*) FROM {a} WHERE alias = %(n)s), to_regclass(%(q)s) IS NOT NULL")
                .format(a=sql.Identifier(ALIAS_TABLE)),
                {"n": spec.name, "q": sql.Identifier(spec.name).as_string(conn)},
            ).fetchone()
            if taken[0]:
                raise InputError(f"{spec.name!r} is already an alias; choose another collection name")
            if taken[1]:
                raise InputError(
                    f"a table or view named {spec.name!r} already exists but was not created by this SDK; "
                    "choose another collection name"
                )
            conn.execute(create_table(spec))
            for stmt in index_statements(spec):
                conn.execute(stmt)
            conn.execute(
                sql.SQL("INSERT INTO {} (name, spec, written_by) VALUES (%s, %s, %s)").format(sql.Identifier(META_TABLE)),
                (spec.name, Jsonb(spec.to_dict()), _WRITER),
            )

        self._tx(run)

    def _drop(self, name: str) -> bool:
        def run(conn: Any) -> bool:
            row = conn.execute(sql.SQL("SELECT 1 FROM {} WHERE name = %s").format(sql.Identifier(META_TABLE)),
                               (name,)).fetchone()
            if not row:
                return False
            aliases = conn.execute(sql.SQL("DELETE FROM {} WHERE target = %s RETURNING alias")
                                   .format(sql.Identifier(ALIAS_TABLE)), (name,)).fetchall()
            for (alias,) in aliases:
                conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier(alias)))
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DELETE FROM {} WHERE name = %s").format(sql.Identifier(META_TABLE)), (name,))
            return True

        return self._tx(run)

    # ---- records -------------------------------------------------------------------------------
    def _upsert_batch(self, spec: CollectionSpec, name: str, batch: list[PreparedRecord]) -> None:
        dense = [f.name for f in spec.dense]
        sparse = [s.name for s in spec.sparse]
        cols = ["id", "doc_id", "text", "metadata", *dense, *sparse]
        updates = sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in cols[1:]
        )
        stmt = sql.SQL("INSERT INTO {t} ({cols}) VALUES ({vals}) ON CONFLICT (id) DO UPDATE SET {up}").format(
            t=sql.Identifier(spec.name),
            cols=sql.SQL(", ").join(sql.Identifier(c) for c in cols),
            vals=sql.SQL(", ").join(sql.Placeholder() * len(cols)),
            up=updates,
        )
        fields = {f.name: f for f in spec.dense}
        rows = [
            (rec.pid, rec.doc_id, rec.text, metadata_value(rec.metadata),
             *(dense_value(fields[n], rec.dense[n]) for n in dense),
             *(sparse_value(rec.sparse[n]) for n in sparse))
            for rec in batch
        ]

        def run(conn: Any) -> None:
            with conn.cursor() as cur:
                cur.executemany(stmt, rows)

        self._tx(run)

    def _get(self, spec: CollectionSpec, name: str, pids: list[str]) -> list[PreparedRecord]:
        dense = [f.name for f in spec.dense]
        sparse = [s.name for s in spec.sparse]
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in ("id", "doc_id", "text", "metadata", *dense, *sparse))
        stmt = sql.SQL("SELECT {} FROM {} WHERE id = ANY(%s::uuid[])").format(cols, sql.Identifier(spec.name))
        rows = self._tx(lambda conn: conn.execute(stmt, (pids,)).fetchall())
        fields = {f.name: f for f in spec.dense}
        out = []
        for row in rows:
            vecs: dict[str, np.ndarray] = {}
            for i, n in enumerate(dense):
                vecs[n] = _from_db(fields[n].storage, row[4 + i])
                f = fields[n]
                if f.prefix_name:
                    vecs[f.prefix_name] = vecs[n][: f.matryoshka_dim].copy()
            sp = {n: SparseVector(tuple(v.indices()), tuple(v.values()))
                  for n, v in zip(sparse, row[4 + len(dense):], strict=True)}
            out.append(PreparedRecord(str(row[0]), row[1], vecs, sp, row[2] or "", dict(row[3] or {})))
        return out

    def _scan_ids(self, spec: CollectionSpec, name: str, batch_size: int) -> CursorPages[Any]:
        # Keyset paging on the primary key: each page is one short indexed range scan in its own
        # transaction (doc_id has no index, so "doc_id > %s ORDER BY doc_id" would sort the table per page).
        table = sql.Identifier(spec.name)
        first = sql.SQL("SELECT id, doc_id FROM {} ORDER BY id LIMIT %s").format(table)
        after = sql.SQL("SELECT id, doc_id FROM {} WHERE id > %s ORDER BY id LIMIT %s").format(table)

        def page(last: Any) -> tuple[list[str], Any]:
            if last is None:
                rows = self._tx(lambda conn: conn.execute(first, (batch_size,)).fetchall())
            else:
                rows = self._tx(lambda conn: conn.execute(after, (last, batch_size)).fetchall())
            return [row[1] for row in rows], (rows[-1][0] if len(rows) >= batch_size else None)

        return CursorPages(page)

    def _delete(self, spec: CollectionSpec, name: str, pids: list[str]) -> None:
        stmt = sql.SQL("DELETE FROM {} WHERE id = ANY(%s::uuid[])").format(sql.Identifier(spec.name))
        self._tx(lambda conn: conn.execute(stmt, (pids,)))

    def _count(self, spec: CollectionSpec, name: str, filter: Filter | None) -> int:
        params = Params()
        where = SqlFilter(spec, params).translate(filter) if filter is not None else sql.SQL("true")
        stmt = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(sql.Identifier(spec.name), where)
        return int(self._tx(lambda conn: conn.execute(stmt, params.values).fetchone()[0]))

    # ---- search ----------------------------------------------------------------------------------
    def _search(self, spec: CollectionSpec, name: str, plan: QueryPlan) -> list[Hit]:
        # Pooled: one statement, no transaction (see _search_steps). A caller's connection: BEGIN,
        # the local settings and the query go out together (pipeline), one wait for the rows.
        return self._tx(lambda conn: run_steps(self._search_steps(spec, name, plan), conn),
                        single=True, pipeline=not self._owned)

    def _search_steps(self, spec: CollectionSpec, name: str, plan: QueryPlan) -> Steps[list[Hit]]:
        """One search as steps on a (sync or async) connection.

        The search settings (HNSW breadth, iterative scans, IVFFlat probes) are session settings on
        the adapter's own pooled connections, sent only when a connection's values change, so a
        search is one statement and one round trip. On a caller's connection they are local to the
        caller's transaction (``_tx`` opens one), leaving its session as it was.
        """
        query, params, legs = build_search(spec, plan)
        ef = self._ef_search
        if plan.dense is not None:
            ef = ef or plan.dense.field.index.ef_search
            wanted = max(plan.dense.candidates, plan.dense.prefix_candidates)
            ef = min(1000, max(ef or 40, wanted))
        probes = plan.dense.field.index.nprobe if plan.dense is not None else 1

        settings = (str(ef or 40), str(probes))
        if not self._owned:
            yield lambda conn: conn.execute(_SETTINGS_SQL, {"ef": settings[0], "probes": settings[1], "local": True})
        else:
            conn = yield lambda c: c
            with self._lock:
                known = self._session_settings.get(conn)
            if known != settings:
                yield lambda c: c.execute(_SETTINGS_SQL, {"ef": settings[0], "probes": settings[1], "local": False})
                with self._lock:
                    self._session_settings[conn] = settings
        cur = yield lambda conn: conn.execute(query, params)
        rows = yield lambda conn: cur.fetchall()
        return _hits(rows, legs)

    def reindex(self, collection: str) -> None:
        """Rebuild the collection's indexes from the stored rows.

        IVFFlat picks its list centroids when the index is built, and ``ensure_collection`` builds
        it on an empty table; after the first bulk load, call this so the lists fit the data
        (HNSW indexes need no rebuild).
        """
        spec = self.describe(collection)
        stmt = sql.SQL("REINDEX TABLE {}").format(sql.Identifier(spec.name))
        self._call(f"reindexing {collection!r}", lambda: self._tx(lambda conn: conn.execute(stmt), timeout=None))

    # ---- aliases ---------------------------------------------------------------------------------
    def _alias_view(self, conn: Any, alias: str, collection: str) -> None:
        conn.execute(sql.SQL("CREATE VIEW {} AS SELECT * FROM {}").format(sql.Identifier(alias),
                                                                          sql.Identifier(collection)))
        conn.execute(
            sql.SQL("INSERT INTO {} (alias, target) VALUES (%s, %s) ON CONFLICT (alias) DO UPDATE "
                    "SET target = EXCLUDED.target, updated_at = now()").format(sql.Identifier(ALIAS_TABLE)),
            (alias, collection),
        )

    def _alias_guard(self, conn: Any, alias: str) -> str | None:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("sdk-alias:" + alias,))
        if conn.execute(sql.SQL("SELECT 1 FROM {} WHERE name = %s").format(sql.Identifier(META_TABLE)),
                        (alias,)).fetchone():
            raise InputError(f"{alias!r} is a collection, not an alias; choose another alias name")
        row = conn.execute(sql.SQL("SELECT target FROM {} WHERE alias = %s").format(sql.Identifier(ALIAS_TABLE)),
                           (alias,)).fetchone()
        return row[0] if row else None

    def _create_alias(self, alias: str, collection: str) -> None:
        target = self._target(collection)

        def run(conn: Any) -> None:
            if self._alias_guard(conn, alias) is not None:
                raise InputError(f"alias {alias!r} already exists; use switch_alias to re-point it")
            self._alias_view(conn, alias, target)

        self._tx(run)

    def _switch_alias(self, alias: str, collection: str) -> None:
        target = self._target(collection)

        def run(conn: Any) -> None:
            # DDL is transactional in PostgreSQL: readers see the old view or the new one, never none.
            self._alias_guard(conn, alias)
            conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier(alias)))
            self._alias_view(conn, alias, target)

        self._tx(run)

    def _delete_alias(self, alias: str) -> bool:
        def run(conn: Any) -> bool:
            if self._alias_guard(conn, alias) is None:
                return False
            conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier(alias)))
            conn.execute(sql.SQL("DELETE FROM {} WHERE alias = %s").format(sql.Identifier(ALIAS_TABLE)), (alias,))
            return True

        return self._tx(run)

    def _target(self, collection: str) -> str:
        """The table behind a collection name or alias (aliases of aliases resolve to the table)."""
        spec = self._read_spec(collection)
        if spec is None:  # pragma: no cover - base checked existence just before
            raise InputError(f"collection {collection!r} does not exist")
        return spec.name

    def aliases(self) -> dict[str, str]:
        """Current alias -> collection map (for inspection and tests)."""
        rows = self._call("listing aliases", lambda: self._tx(
            lambda conn: conn.execute(sql.SQL("SELECT alias, target FROM {}").format(
                sql.Identifier(ALIAS_TABLE))).fetchall()))
        return dict(rows)

    def written_by(self, collection: str) -> dict[str, Any]:
        """The raw metadata row of a collection: its spec as JSON and the writer's name."""
        spec = self.describe(collection)
        row = self._call("reading collection metadata", lambda: self._tx(
            lambda conn: conn.execute(sql.SQL("SELECT spec, written_by FROM {} WHERE name = %s").format(
                sql.Identifier(META_TABLE)), (spec.name,)).fetchone()))
        return {"spec": json.loads(json.dumps(row[0])), "written_by": row[1]}

    def _list_names(self) -> list[str]:
        # Only the SDK's tables have a row here: a table made by other means is never listed.
        stmt = sql.SQL("SELECT name FROM {}").format(sql.Identifier(META_TABLE))
        return [row[0] for row in self._tx(lambda conn: conn.execute(stmt).fetchall(), single=True)]

    def _list_aliases(self) -> dict[str, str]:
        stmt = sql.SQL("SELECT alias, target FROM {}").format(sql.Identifier(ALIAS_TABLE))
        return dict(self._tx(lambda conn: conn.execute(stmt).fetchall(), single=True))


def _pipelined(conn: Any, on: bool) -> Any:
    """``conn.pipeline()`` when ``on`` (sync or async connection alike), else a no-op context."""
    return conn.pipeline() if on else nullcontext()


def _setup_steps() -> Steps[None]:
    """The ``vector`` extension and the SDK's metadata tables, as steps on a (sync or async) connection."""
    cur = yield lambda conn: conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
    if not (yield lambda conn: cur.fetchone()):
        yield lambda conn: conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    for stmt in meta_tables():
        yield lambda conn, stmt=stmt: conn.execute(stmt)


def _hits(rows: list[Any], legs: list[LegSql]) -> list[Hit]:
    """Result rows of ``build_search`` as hits, each leg's distance turned into its score."""
    hits = []
    for row in rows:
        stages: dict[str, float] = {}
        for leg, dist in zip(legs, row[5:], strict=True):
            if dist is not None:
                stages[leg.name] = distance_to_score(float(dist), leg.kind)
        if row[4] is not None:
            score = float(row[4])
            stages["fused"] = score
        else:
            score = stages[legs[0].name]
        hits.append(Hit(row[1], score, row[2] or None, dict(row[3] or {}), stages))
    return hits


def _from_db(storage: str, value: Any) -> np.ndarray:
    """A stored pgvector value back in the storage form ``PreparedRecord`` uses."""
    if storage == "binary":
        # psycopg loads ``bit(n)`` as its text form ('0110...'); pgvector's Bit when registered.
        if isinstance(value, str):
            return (np.frombuffer(value.encode("ascii"), dtype=np.uint8) - ord("0")).astype(np.uint8)
        return np.asarray(value.to_numpy(), dtype=np.uint8)
    if storage == "float16":
        return np.asarray(value.to_numpy(), dtype=np.float16)
    return np.asarray(value.to_numpy(), dtype=np.float32)
