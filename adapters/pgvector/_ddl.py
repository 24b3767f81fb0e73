"""DDL for one collection: its table, its vector / payload indexes, the metadata and alias tables.

Every identifier goes through ``psycopg.sql.Identifier``. DDL cannot take bound parameters, so
the few numbers it holds (dimensions, ``m``, ``ef_construction``, ``lists``) are ints from a
validated ``CollectionSpec`` rendered with ``sql.Literal``; no caller string is ever spliced in.
"""

from __future__ import annotations

import hashlib

from psycopg import sql

from adapters.base import CollectionSpec, DenseField
from adapters.pgvector._mapping import (
    BINARY_QUANTIZED_OPS,
    HNSW_MAX_DIM,
    SPARSE_DIM,
    column_type,
    metric_ops,
)
from sdk.core.errors import CapabilityError

__all__ = [
    "ALIAS_TABLE",
    "META_TABLE",
    "create_table",
    "first_pass_expr",
    "index_statements",
    "meta_tables",
]

META_TABLE = "_sdk_collections"
ALIAS_TABLE = "_sdk_aliases"


def meta_tables() -> list[sql.Composable]:
    """Tables that record what wrote each collection and where each alias points."""
    return [
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, spec jsonb NOT NULL, "
            "written_by text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        ).format(sql.Identifier(META_TABLE)),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (alias text PRIMARY KEY, target text NOT NULL, "
            "updated_at timestamptz NOT NULL DEFAULT now())"
        ).format(sql.Identifier(ALIAS_TABLE)),
    ]


def create_table(spec: CollectionSpec) -> sql.Composable:
    """``CREATE TABLE`` with one typed column per dense / sparse field, text and jsonb payload."""
    cols: list[sql.Composable] = [
        sql.SQL("id uuid PRIMARY KEY"),
        sql.SQL("doc_id text NOT NULL"),
        sql.SQL("text text"),
        sql.SQL("metadata jsonb NOT NULL DEFAULT '{}'::jsonb"),
    ]
    for f in spec.dense:
        cols.append(sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(column_type(f.storage).sql(f.dim))))
    for s in spec.sparse:
        cols.append(sql.SQL("{} sparsevec({})").format(sql.Identifier(s.name), sql.Literal(SPARSE_DIM)))
    return sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(spec.name), sql.SQL(", ").join(cols))


def _index_name(table: str, what: str) -> sql.Identifier:
    # Postgres truncates identifiers at 63 bytes, which could make two index names collide; a hash
    # of the full name keeps them unique and short.
    digest = hashlib.sha1(f"{table}\0{what}".encode()).hexdigest()[:12]
    return sql.Identifier(f"{table[:40]}_{digest}_idx")


def first_pass_expr(f: DenseField) -> tuple[sql.Composable, str, int]:
    """The expression the index is built on and the first search pass orders by.

    Returns ``(expression over the column, storage type name, width)``. The query must use the
    same expression text, or PostgreSQL cannot match it to the expression index.
    """
    col = sql.Identifier(f.name)
    ctype = column_type(f.storage)
    if f.index.quantization == "binary":
        return sql.SQL("(binary_quantize({})::bit({}))").format(col, sql.Literal(f.dim)), "bit", f.dim
    if f.matryoshka_dim:
        d = int(f.matryoshka_dim)
        return (sql.SQL("(subvector({}, 1, {})::{}({}))").format(col, sql.Literal(d), sql.SQL(ctype.name),
                                                                  sql.Literal(d)), ctype.name, d)
    return col, ctype.name, f.dim


def index_statements(spec: CollectionSpec) -> list[sql.Composable]:
    """Vector indexes per dense field, plus a GIN index over the payload for filters.

    ``auto`` means HNSW when pgvector can index the width and no index (exact scan) otherwise;
    an explicit ``hnsw`` / ``ivf_flat`` that pgvector cannot build raises ``CapabilityError``.
    Sparse columns get no index: HNSW over sparse vectors is approximate with poor recall, an
    exact scan is what the SDK promises.
    """
    table = sql.Identifier(spec.name)
    out: list[sql.Composable] = []
    for f in spec.dense:
        expr, tname, width = first_pass_expr(f)
        ops = BINARY_QUANTIZED_OPS if f.index.quantization == "binary" else metric_ops(f.storage, f.similarity)
        kind = f.index.kind
        if kind == "flat":
            continue
        if width > HNSW_MAX_DIM[tname]:
            if kind == "auto":
                continue
            raise CapabilityError(
                f"pgvector cannot build a {kind} index over {tname}({width}) (field {f.name!r}); the limit "
                f"is {HNSW_MAX_DIM[tname]} dimensions. Use index kind 'flat' or 'auto' (exact scan), "
                "quantization='binary', or a Matryoshka prefix"
            )
        opclass = sql.SQL(ops.opclass(column_type("binary") if tname == "bit" else column_type(f.storage)))
        name = _index_name(spec.name, f"{f.name}:{kind}")
        if kind == "ivf_flat":
            out.append(sql.SQL("CREATE INDEX {} ON {} USING ivfflat ({} {}) WITH (lists = {})").format(
                name, table, expr, opclass, sql.Literal(int(f.index.nlist))))
        else:
            out.append(sql.SQL("CREATE INDEX {} ON {} USING hnsw ({} {}) WITH (m = {}, ef_construction = {})").format(
                name, table, expr, opclass, sql.Literal(int(f.index.m)), sql.Literal(int(f.index.ef_construct))))
    out.append(sql.SQL("CREATE INDEX {} ON {} USING gin (metadata jsonb_path_ops)").format(
        _index_name(spec.name, "metadata"), table))
    return out
