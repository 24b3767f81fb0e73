"""``PgvectorAdapter``: one table per collection in PostgreSQL with the pgvector extension.

Layout: ``id uuid`` (deterministic, from ``adapters.base.point_id``), ``doc_id``, ``text``,
``metadata jsonb`` and one typed column per vector field (``vector`` / ``halfvec`` / ``bit`` /
``sparsevec``). ``_sdk_collections`` records the spec that wrote each collection and
``_sdk_aliases`` each alias, which is also a view so plain SQL users see the same names.
Every statement runs in its own transaction, so a failure never leaves a half-applied batch or
an idle transaction holding locks.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.types.json import Jsonb

from adapters.base import Adapter, Capabilities, CollectionSpec, CursorPages, PreparedRecord, QueryPlan
from adapters.pgvector._ddl import ALIAS_TABLE, META_TABLE, create_table, index_statements, meta_tables
from adapters.pgvector._errors import is_connection_lost, translate
from adapters.pgvector._filters import Params, SqlFilter
from adapters.pgvector._mapping import SUPPORTED_METRICS
from adapters.pgvector._query import build_search, dense_value, sparse_value
from sdk.core.errors import AdapterError, ConfigError, InputError, SDKError
from sdk.core.similarity import distance_to_score
from sdk.core.types import Filter, FusionMethod, Hit, SparseVector

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
)

_WRITER = "retrieval-forge adapters.pgvector"


class PgvectorAdapter(Adapter):
    """PostgreSQL + pgvector. Pass ``conninfo`` (a libpq URL or DSN) or an open ``connection``.

    With ``conninfo`` the adapter owns its connection and reopens it after a connection failure,
    so retries survive a server restart or a killed backend. With ``connection`` (a psycopg 3
    connection you already hold) a lost connection fails cleanly instead, because reopening it
    is its owner's decision; either autocommit mode works, each call commits its own transaction.
    ``ef_search`` overrides the HNSW search breadth (default: the field's ``IndexParams.ef_search``,
    at least the number of candidates asked for, at most pgvector's 1000).
    """

    def __init__(self, conninfo: str | None = None, *, connection: Any = None,
                 ef_search: int | None = None) -> None:
        if (conninfo is None) == (connection is None):
            raise ConfigError("PgvectorAdapter needs exactly one of conninfo= (a postgresql:// URL) or connection=")
        if connection is not None and not isinstance(connection, psycopg.Connection):
            raise ConfigError(
                f"connection= must be a psycopg 3 Connection, got {type(connection).__name__}; "
                "or pass conninfo= and let the adapter connect"
            )
        self._conninfo = conninfo
        self._owned = conninfo is not None
        self._conn_obj: Any = connection
        self._ready = False
        self._lock = threading.RLock()
        self._ef_search = ef_search

    @classmethod
    def from_url(cls, url: str) -> PgvectorAdapter:
        """``postgresql://USER@HOST:PORT/DB`` (any libpq URL): used by ``adapters.connect``."""
        return cls(url)

    # ---- connection ------------------------------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        return PGVECTOR_CAPABILITIES

    def _connection(self) -> Any:
        conn = self._conn_obj
        if conn is None or conn.closed or conn.broken:
            if not self._owned and conn is not None:
                raise AdapterError(
                    "the psycopg connection given to PgvectorAdapter is closed or broken; reconnect it "
                    "and build a new adapter, or pass conninfo= so the adapter can reconnect by itself"
                )
            conn = psycopg.connect(self._conninfo, autocommit=True)  # type: ignore[arg-type]
            self._conn_obj = conn
            self._ready = False
        if not self._ready:
            with conn.transaction():
                exists = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
                if not exists:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                for stmt in meta_tables():
                    conn.execute(stmt)
            register_vector(conn)
            self._ready = True
        return conn

    def _tx(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(connection)`` inside one transaction."""
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                return fn(conn)

    def _translate(self, exc: BaseException, what: str) -> SDKError:
        if is_connection_lost(exc) and not self._owned:
            return AdapterError(f"{what} failed: the connection you passed was lost ({exc}); reconnect it")
        return translate(exc, what)

    def _close(self) -> None:
        if self._owned and self._conn_obj is not None:
            self._conn_obj.close()
        self._conn_obj = None

    # ---- metadata ----------------------------------------------------------------------------
    def _read_spec(self, name: str) -> CollectionSpec | None:
        def run(conn: Any) -> CollectionSpec | None:
            row = conn.execute(
                sql.SQL("SELECT spec FROM {m} WHERE name = COALESCE((SELECT target FROM {a} WHERE alias = %(n)s), "
                        "%(n)s)").format(m=sql.Identifier(META_TABLE), a=sql.Identifier(ALIAS_TABLE)),
                {"n": name},
            ).fetchone()
            return CollectionSpec.from_dict(row[0]) if row else None

        return self._tx(run)

    def _create(self, spec: CollectionSpec) -> None:
        def run(conn: Any) -> None:
            # Serialise concurrent creators of the same name; the lock ends with the transaction.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("sdk-collection:" + spec.name,))
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
            (rec.pid, rec.doc_id, rec.text, Jsonb(rec.metadata),
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
        query, params, legs = build_search(spec, plan)
        ef = self._ef_search
        if plan.dense is not None:
            ef = ef or plan.dense.field.index.ef_search
            wanted = max(plan.dense.candidates, plan.dense.prefix_candidates)
            ef = min(1000, max(ef or 40, wanted))
        probes = plan.dense.field.index.nprobe if plan.dense is not None else 1

        def run(conn: Any) -> list[Any]:
            # Iterative scans keep an HNSW search going until enough rows pass the filter.
            conn.execute("SELECT set_config('hnsw.ef_search', %s, true), "
                         "set_config('hnsw.iterative_scan', 'strict_order', true), "
                         "set_config('ivfflat.probes', %s, true), "
                         "set_config('ivfflat.iterative_scan', 'relaxed_order', true)",
                         (str(ef or 40), str(probes)))
            return conn.execute(query, params).fetchall()

        rows = self._tx(run)
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

    def reindex(self, collection: str) -> None:
        """Rebuild the collection's indexes from the stored rows.

        IVFFlat picks its list centroids when the index is built, and ``ensure_collection`` builds
        it on an empty table; after the first bulk load, call this so the lists fit the data
        (HNSW indexes need no rebuild).
        """
        spec = self.describe(collection)
        stmt = sql.SQL("REINDEX TABLE {}").format(sql.Identifier(spec.name))
        self._call(f"reindexing {collection!r}", lambda: self._tx(lambda conn: conn.execute(stmt)))

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
