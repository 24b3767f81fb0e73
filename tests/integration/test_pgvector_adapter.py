"""pgvector adapter on a real PostgreSQL + pgvector: the shared conformance suite plus SQL specifics.

The specifics are what only a SQL database can get wrong: identifiers and values that could
become SQL, the operator class an index is built with (a wrong one makes pgvector silently scan
without it), and a backend killed in the middle of a batch.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg import sql

from adapters import connect
from adapters.base import CollectionSpec, DenseField, IndexParams, PayloadField, SparseField
from adapters.pgvector import PgvectorAdapter
from adapters.pgvector._query import build_search
from adapters.testing import AdapterConformance, make_records
from adapters.validate import prepare_query
from sdk.core.errors import AdapterError, CapabilityError, InputError
from sdk.core.types import Eq, HybridQuery, In, Record


@pytest.fixture
def pg(postgres_url: str) -> Iterator[PgvectorAdapter]:
    with PgvectorAdapter(postgres_url) as adapter:
        yield adapter


class TestPgvectorConformance(AdapterConformance):
    @pytest.fixture
    def adapter(self, pg: PgvectorAdapter) -> Iterator[PgvectorAdapter]:
        yield pg

    def create_foreign(self, db: PgvectorAdapter, name: str) -> Callable[[], None]:
        def run(stmt: str) -> None:
            db._tx(lambda conn: conn.execute(sql.SQL(stmt).format(sql.Identifier(name))))

        run("CREATE TABLE {} (id int PRIMARY KEY, embedding vector(4))")
        return lambda: run("DROP TABLE IF EXISTS {}")


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def _indexes(url: str, table: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s ORDER BY indexname",
                            (table,)).fetchall()
    return [r[0] for r in rows]


def _name() -> str:
    return f"rf_pg_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def cleanup(pg: PgvectorAdapter) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for n in names:
        pg.drop(n)


def test_connect_url_gives_pgvector(postgres_url: str) -> None:
    with connect(postgres_url) as adapter:
        assert isinstance(adapter, PgvectorAdapter)
        assert adapter.capabilities.name == "pgvector"


def test_pool_options_in_the_url_size_the_pool(postgres_url: str) -> None:
    sep = "&" if "?" in postgres_url else "?"
    name = _name()
    with connect(f"{postgres_url}{sep}pool_max_size=3&pool_timeout=4&call_timeout=5") as adapter:
        assert (adapter.pool_max_size, adapter.pool_timeout, adapter.call_timeout) == (3, 4.0, 5.0)
        adapter.ensure_collection(CollectionSpec(name, dense=(DenseField("dense", 4),)))
        try:
            adapter.upsert(name, make_records(5, dim=4, sparse=False))
            assert adapter.count(name) == 5
            assert adapter._pool.get_stats()["pool_max"] == 3
        finally:
            adapter.drop(name)


# ---- injection ----------------------------------------------------------------------------------
HOSTILE = 'x"; DROP TABLE _sdk_collections; --'


def test_sql_injection_is_inert(pg: PgvectorAdapter, postgres_url: str, cleanup: list[str]) -> None:
    name = _name()
    cleanup.append(name)
    spec = CollectionSpec(name, dense=(DenseField("dense", 4),), payload=(PayloadField("kind"),))
    pg.ensure_collection(spec)
    pg.upsert(name, [Record("a", {"dense": np.ones(4)}, text="t", metadata={"kind": "k"})])
    before = _tables(postgres_url)
    # A hostile collection name and field name are refused before any SQL is built ...
    with pytest.raises(InputError):
        pg.ensure_collection(CollectionSpec(HOSTILE, dense=(DenseField("dense", 4),)))
    with pytest.raises(InputError):
        CollectionSpec(name, dense=(DenseField(HOSTILE, 4),))
    with pytest.raises(InputError):
        pg.count(HOSTILE)
    # ... and a hostile filter value is a bound parameter that simply matches nothing.
    for value in (HOSTILE, "' OR '1'='1", "k' OR 1=1 --"):
        assert pg.count(name, Eq("kind", value)) == 0
        assert pg.count(name, In("kind", (value, "zzz"))) == 0
        assert pg.query(name, HybridQuery(dense=np.ones(4), filter=Eq("kind", value))) == []
    assert pg.count(name, Eq("kind", "k")) == 1
    assert _tables(postgres_url) == before


def test_quoting_alone_keeps_hostile_identifiers_inert(pg: PgvectorAdapter, postgres_url: str) -> None:
    """Defence in depth: even a name that slipped past validation is one quoted identifier."""
    spec = CollectionSpec("placeholder", dense=(DenseField("dense", 4),), sparse=(SparseField("sparse"),))
    hostile = f'rf_{uuid.uuid4().hex[:6]}"; DROP TABLE _sdk_collections; --'
    object.__setattr__(spec, "name", hostile)
    before = _tables(postgres_url)
    pg._create(spec)  # the hook, bypassing check_name on purpose
    try:
        assert _tables(postgres_url) == before | {hostile}
    finally:
        assert pg._drop(hostile) is True
    assert _tables(postgres_url) == before


# ---- emitted DDL ---------------------------------------------------------------------------------
def _opclasses(url: str, table: str) -> set[str]:
    """Operator classes of the vector indexes, from the catalog (pg_get_indexdef omits defaults)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT o.opcname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
            "JOIN pg_opclass o ON o.oid = i.indclass[0] JOIN pg_am a ON a.oid = o.opcmethod "
            "WHERE c.relname = %s AND a.amname IN ('hnsw', 'ivfflat')", (table,)).fetchall()
    return {r[0] for r in rows}


@pytest.mark.parametrize(
    ("field", "opclass", "parts"),
    [
        (DenseField("dense", 8, "cosine"), "vector_cosine_ops", ["USING hnsw (dense", "m='16'", "ef_construction='100'"]),
        (DenseField("dense", 8, "dot", index=IndexParams(kind="hnsw", m=8, ef_construct=32)),
         "vector_ip_ops", ["USING hnsw (dense", "m='8'", "ef_construction='32'"]),
        (DenseField("dense", 8, "euclidean", index=IndexParams(kind="ivf_flat", nlist=10)),
         "vector_l2_ops", ["USING ivfflat (dense", "lists='10'"]),
        (DenseField("dense", 8, "manhattan", "float16"), "halfvec_l1_ops", ["USING hnsw (dense"]),
        (DenseField("dense", 16, "hamming", "binary"), "bit_hamming_ops", ["USING hnsw (dense"]),
        (DenseField("dense", 16, "jaccard", "binary"), "bit_jaccard_ops", ["USING hnsw (dense"]),
        (DenseField("dense", 8, "cosine", index=IndexParams(quantization="binary")),
         "bit_hamming_ops", ["USING hnsw (((binary_quantize(dense))::bit(8))"]),
        (DenseField("dense", 8, "cosine", matryoshka_dim=4),
         "vector_cosine_ops", ["USING hnsw (((subvector(dense, 1, 4))::vector(4))"]),
        (DenseField("dense", 3000, "cosine"), None, []),  # beyond HNSW's 2000 dims: exact scan, no index
    ],
    ids=["cosine", "dot-params", "ivfflat-l2", "halfvec-l1", "bit-hamming", "bit-jaccard", "bq", "mrl", "wide"],
)
def test_index_ddl_uses_expected_opclass(pg: PgvectorAdapter, postgres_url: str, cleanup: list[str],
                                         field: DenseField, opclass: str | None, parts: list[str]) -> None:
    name = _name()
    cleanup.append(name)
    pg.ensure_collection(CollectionSpec(name, dense=(field,)))
    defs = [d for d in _indexes(postgres_url, name) if "btree" not in d and "gin" not in d]
    assert any("USING gin (metadata jsonb_path_ops)" in d for d in _indexes(postgres_url, name))
    if opclass is None:
        assert defs == [] and _opclasses(postgres_url, name) == set()
        return
    (ddl,) = defs
    for part in parts:
        assert part in ddl, ddl
    assert _opclasses(postgres_url, name) == {opclass}


def test_ivfflat_after_reindex_matches_reference(pg: PgvectorAdapter, cleanup: list[str]) -> None:
    """IVFFlat lists are fitted at build time: after a bulk load, ``reindex`` refits them to the data."""
    from adapters.memory import MemoryAdapter

    name = _name()
    cleanup.append(name)
    spec = CollectionSpec(name, dense=(DenseField("dense", 32, "euclidean",
                                                  index=IndexParams(kind="ivf_flat", nlist=4, nprobe=4)),))
    records = make_records(200, sparse=False)
    pg.ensure_collection(spec)
    pg.upsert(name, records)
    pg.reindex(name)
    ref = MemoryAdapter()
    ref.ensure_collection(spec)
    ref.upsert(name, records)
    q = HybridQuery(dense=np.linspace(-1, 1, 32), limit=10)
    assert [h.id for h in pg.query(name, q)] == [h.id for h in ref.query(name, q)]


def test_explicit_index_beyond_pgvector_limit_is_a_capability_error(pg: PgvectorAdapter) -> None:
    name = _name()
    with pytest.raises(CapabilityError, match="2000"):
        pg.ensure_collection(CollectionSpec(name, dense=(DenseField("dense", 3000, index=IndexParams(kind="hnsw")),)))
    assert not pg.exists(name)  # the failed CREATE left nothing behind (one transaction)


def test_dense_search_uses_the_hnsw_index(pg: PgvectorAdapter, postgres_url: str, cleanup: list[str]) -> None:
    name = _name()
    cleanup.append(name)
    pg.ensure_collection(CollectionSpec(name, dense=(DenseField("dense", 8, "dot"),)))
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = conn.execute(
            f'EXPLAIN SELECT id FROM "{name}" ORDER BY dense <#> \'[1,2,3,4,5,6,7,8]\'::vector(8) LIMIT 5'
        ).fetchall()
    assert "Index Scan" in " ".join(r[0] for r in plan)


@pytest.mark.parametrize(
    "field",
    [DenseField("dense", 32, "cosine", index=IndexParams(quantization="binary")),
     DenseField("dense", 32, "dot", matryoshka_dim=8),
     DenseField("dense", 32, "manhattan", "float16", index=IndexParams(quantization="binary"))],
    ids=["binary-quantize", "subvector", "halfvec-binary-quantize"],
)
def test_first_pass_uses_the_expression_index(pg: PgvectorAdapter, postgres_url: str, cleanup: list[str],
                                              field: DenseField) -> None:
    """The first pass must repeat the indexed expression verbatim, or PostgreSQL scans without it."""
    name = _name()
    cleanup.append(name)
    spec = CollectionSpec(name, dense=(field,))
    pg.ensure_collection(spec)
    pg.upsert(name, make_records(100, sparse=False, storage=field.storage))
    plan = prepare_query(spec, pg.capabilities, HybridQuery(dense=np.linspace(-1, 1, 32), limit=5))
    query, params, _ = build_search(spec, plan)
    (index,) = [d.split()[2] for d in _indexes(postgres_url, name) if "hnsw" in d]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("SET enable_seqscan = off")
        lines = conn.execute(sql.SQL("EXPLAIN {}").format(query), params).fetchall()
    assert index in " ".join(r[0] for r in lines)
    hits = pg.query(name, HybridQuery(dense=np.linspace(-1, 1, 32), limit=5))
    assert len(hits) == 5


def test_collection_records_what_wrote_it(pg: PgvectorAdapter, postgres_url: str, cleanup: list[str]) -> None:
    name = _name()
    cleanup.append(name)
    spec = CollectionSpec(name, dense=(DenseField("dense", 8, "dot", "int8"),), encoder="minilm@abc",
                          calibration={"dense": ((-1.0,) * 8, (1.0,) * 8)})
    pg.ensure_collection(spec)
    with psycopg.connect(postgres_url) as conn:
        stored, writer = conn.execute("SELECT spec, written_by FROM _sdk_collections WHERE name = %s",
                                      (name,)).fetchone()
    assert CollectionSpec.from_dict(stored) == spec
    assert stored["encoder"] == "minilm@abc" and stored["dense"][0]["dim"] == 8
    assert "pgvector" in writer


def test_alias_is_a_view_sql_users_can_query(pg: PgvectorAdapter, postgres_url: str, cleanup: list[str]) -> None:
    blue, green, alias = _name(), _name(), _name()
    cleanup.extend([blue, green])
    for n, k in ((blue, 3), (green, 5)):
        pg.ensure_collection(CollectionSpec(n, dense=(DenseField("dense", 4),)))
        pg.upsert(n, [Record(f"d{i}", {"dense": np.ones(4) + i}) for i in range(k)])
    pg.create_alias(alias, blue)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute(f'SELECT count(*) FROM "{alias}"').fetchone()[0] == 3
    pg.switch_alias(alias, green)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute(f'SELECT count(*) FROM "{alias}"').fetchone()[0] == 5
    assert pg.aliases()[alias] == green
    pg.drop(green)  # dropping the target removes its aliases too
    assert alias not in pg.aliases() and alias not in _tables(postgres_url)


# ---- faults ----------------------------------------------------------------------------------------
def test_backend_killed_mid_batch_then_rerun_leaves_one_copy(postgres_url: str, cleanup: list[str]) -> None:
    """``pg_terminate_backend`` from a second connection while batches are being written."""
    app = f"rf_fault_{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in postgres_url else "?"
    name = _name()
    cleanup.append(name)
    records = make_records(4000, dim=384, sparse=True)
    spec = CollectionSpec(name, dense=(DenseField("dense", 384),), sparse=(SparseField("sparse"),))
    killed: list[int] = []

    def killer() -> None:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not killed:
                row = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND state = 'active' "
                    "AND query ILIKE 'INSERT INTO%%'", (app,)).fetchone()
                if row:
                    conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                    killed.append(row[0])
                time.sleep(0.002)

    with PgvectorAdapter(f"{postgres_url}{sep}application_name={app}") as adapter:
        adapter.ensure_collection(spec)
        thread = threading.Thread(target=killer)
        thread.start()
        try:
            adapter.upsert(name, records, batch_size=500)
            outcome = "retried"
        except AdapterError:
            outcome = "failed cleanly"
        thread.join()
        assert killed, "the killer never saw an INSERT in flight"
        adapter.upsert(name, records, batch_size=500)  # the re-run
        assert adapter.count(name) == len(records), outcome
        with psycopg.connect(postgres_url) as conn:
            dup = conn.execute(f'SELECT count(*) - count(DISTINCT doc_id) FROM "{name}"').fetchone()[0]
        assert dup == 0
        got = adapter.get(name, [r.id for r in records[::397]])
        assert [r.id for r in got] == [r.id for r in records[::397]]


def test_lost_borrowed_connection_fails_cleanly(postgres_url: str, cleanup: list[str]) -> None:
    """A connection the caller owns is not silently replaced: the call fails with an AdapterError."""
    name = _name()
    cleanup.append(name)
    conn = psycopg.connect(postgres_url, autocommit=True)
    adapter = PgvectorAdapter(connection=conn)
    adapter.ensure_collection(CollectionSpec(name, dense=(DenseField("dense", 4),)))
    pid = conn.info.backend_pid
    with psycopg.connect(postgres_url, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(AdapterError):
        adapter.upsert(name, [Record("a", {"dense": np.ones(4)})])
    with pytest.raises(AdapterError, match="reconnect"):
        adapter.count(name)
    conn.close()


def test_borrowed_connection_without_autocommit_is_left_idle(postgres_url: str, cleanup: list[str]) -> None:
    """Each call commits its own transaction, so other sessions see the rows and no lock is held."""
    name = _name()
    cleanup.append(name)
    with psycopg.connect(postgres_url) as conn:  # autocommit off, psycopg's default
        adapter = PgvectorAdapter(connection=conn)
        adapter.ensure_collection(CollectionSpec(name, dense=(DenseField("dense", 4),)))
        adapter.upsert(name, [Record("a", {"dense": np.ones(4)})])
        assert adapter.count(name) == 1
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with psycopg.connect(postgres_url) as other:
            assert other.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] == 1
