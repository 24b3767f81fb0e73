"""Search SQL: each leg as an index-ordered subquery, and hybrid RRF fusion in the same statement.

Multi-stage searches stay inside one statement: a first pass ordered by the indexed expression
(``binary_quantize(col)::bit(n)`` or ``subvector(col, 1, d)::vector(d)``) picks candidates, and
the outer query re-ranks them by the full-precision distance. Ties are broken by ``doc_id`` so
results are deterministic and match the memory reference (which ranks each leg by
``(-score, doc_id)`` and fused results by ``(-score, best rank, storage id)``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pgvector import Bit, HalfVector, SparseVector, Vector
from psycopg import sql
from psycopg.types.json import Jsonb

from adapters.base import CollectionSpec, DenseField
from adapters.pgvector._ddl import first_pass_expr
from adapters.pgvector._filters import Params, SqlFilter
from adapters.pgvector._mapping import (
    BINARY_QUANTIZED_OPS,
    SPARSE_DIM,
    SPARSE_OPS,
    column_type,
    metric_ops,
)
from adapters.validate import DenseLeg, QueryPlan, SparseLeg
from sdk.core.similarity import DistanceKind
from sdk.core.types import SparseVector as SdkSparse

__all__ = ["LegSql", "build_search", "dense_value", "metadata_value", "sparse_value"]


def dense_value(f: DenseField, vec: np.ndarray) -> Any:
    """A prepared dense vector as the pgvector-python value for its column type."""
    if f.storage == "binary":
        return Bit(np.asarray(vec, dtype=bool))
    if f.storage == "float16":
        return HalfVector(np.asarray(vec, dtype=np.float32))
    return Vector(np.asarray(vec, dtype=np.float32))


def metadata_value(metadata: Mapping[str, Any]) -> Jsonb:
    """Validated metadata as ``jsonb`` that reads back with the same types.

    jsonb keeps numbers as ``numeric``, which prints ``1e+16`` as ``10000000000000000``: JSON for an
    int. A float that large is therefore written in full with a ``.0`` (its exact value), which
    numeric keeps and prints back as a float."""
    return Jsonb(metadata, dumps=_dumps if _has_large_float(metadata) else json.dumps)


def _has_large_float(value: Any) -> bool:
    if isinstance(value, float):
        return abs(value) >= 1e16
    if isinstance(value, Mapping):
        return any(_has_large_float(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_large_float(v) for v in value)
    return False


def _dumps(value: Any) -> str:
    if isinstance(value, float) and abs(value) >= 1e16:
        return f"{int(value)}.0"  # finite: adapters.validate refused NaN and inf
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(k)}:{_dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_dumps(v) for v in value) + "]"
    return json.dumps(value)


def sparse_value(vec: SdkSparse) -> SparseVector:
    """An SDK sparse vector as a pgvector ``sparsevec`` of the fixed collection-wide width."""
    return SparseVector(dict(zip(vec.indices, vec.values, strict=True)), SPARSE_DIM)


@dataclass(frozen=True)
class LegSql:
    """One leg: a subquery yielding ``(id, doc_id, dist)`` and what ``dist`` means."""

    name: str
    query: sql.Composable
    kind: DistanceKind


def _typed(params: Params, value: Any, tname: str, width: int) -> sql.Composable:
    return sql.SQL("{}::{}({})").format(params.add(value), sql.SQL(tname), sql.Literal(int(width)))


def _dense_leg(spec: CollectionSpec, leg: DenseLeg, where: sql.Composable, params: Params) -> LegSql:
    f = leg.field
    table = sql.Identifier(spec.name)
    col = sql.Identifier(f.name)
    ctype = column_type(f.storage)
    ops = metric_ops(f.storage, f.similarity)
    full_q = _typed(params, dense_value(f, leg.vector), ctype.name, f.dim)
    full_dist = sql.SQL("({} {} {})").format(col, sql.SQL(ops.sql_operator), full_q)
    expr, tname, width = first_pass_expr(f)
    if not f.index.quantization == "binary" and not f.matryoshka_dim:
        query = sql.SQL("SELECT id, doc_id, {d} AS dist FROM {t} WHERE {w} ORDER BY {d} LIMIT {n}").format(
            d=full_dist, t=table, w=where, n=sql.Literal(int(leg.candidates)))
        return LegSql("dense", query, ops.kind)
    if f.index.quantization == "binary":
        raw = Vector(np.asarray(leg.vector, dtype=np.float32)) if ctype.name == "vector" else \
            HalfVector(np.asarray(leg.vector, dtype=np.float32))
        q1 = sql.SQL("(binary_quantize({})::bit({}))").format(
            _typed(params, raw, ctype.name, f.dim), sql.Literal(int(f.dim)))
        first_op = BINARY_QUANTIZED_OPS
        n1 = math.ceil(leg.candidates * float(f.index.oversampling))
        if not f.index.rescore:
            # The caller asked for the quantized ranking itself: its scores are hamming distances.
            query = sql.SQL(
                "SELECT id, doc_id, ({e} <~> {q}) AS dist FROM {t} WHERE {w} ORDER BY {e} <~> {q} LIMIT {n}"
            ).format(e=expr, q=q1, t=table, w=where, n=sql.Literal(int(leg.candidates)))
            return LegSql("dense", query, first_op.kind)
    else:  # Matryoshka prefix first pass
        q1 = _typed(params, dense_value(f, leg.prefix), tname, width)
        first_op = ops
        n1 = max(int(leg.prefix_candidates), int(leg.candidates))
    query = sql.SQL(
        "SELECT c.id, c.doc_id, {d} AS dist FROM ("
        "SELECT id, doc_id, {col} FROM {t} WHERE {w} ORDER BY {e} {op} {q1} LIMIT {n1}"
        ") AS c ORDER BY dist LIMIT {n}"
    ).format(d=sql.SQL("(c.{} {} {})").format(col, sql.SQL(ops.sql_operator), full_q), col=col, t=table, w=where,
             e=expr, op=sql.SQL(first_op.sql_operator), q1=q1, n1=sql.Literal(n1), n=sql.Literal(int(leg.candidates)))
    return LegSql("dense", query, ops.kind)


def _sparse_leg(spec: CollectionSpec, leg: SparseLeg, where: sql.Composable, params: Params) -> LegSql:
    col = sql.Identifier(leg.field.name)
    q = sql.SQL("{}::sparsevec({})").format(params.add(sparse_value(leg.vector)), sql.Literal(SPARSE_DIM))
    dist = sql.SQL("({} <#> {})").format(col, q)
    # Like the engines with a sparse index, only documents sharing a term with the query compete.
    # For non-negative weights (SPLADE) "shares a term" is exactly "inner product is not 0".
    query = sql.SQL("SELECT id, doc_id, {d} AS dist FROM {t} WHERE {w} AND {d} <> 0 ORDER BY {d} LIMIT {n}").format(
        d=dist, t=sql.Identifier(spec.name), w=where, n=sql.Literal(int(leg.candidates)))
    return LegSql("sparse", query, SPARSE_OPS.kind)


def build_search(spec: CollectionSpec, plan: QueryPlan) -> tuple[sql.Composable, dict[str, Any], list[LegSql]]:
    """One statement answering the plan.

    Rows are ``(id, doc_id, text, metadata, score_or_null, dist_leg1, dist_leg2, ...)``; the fused
    RRF score is computed in SQL for hybrid plans and is NULL for a single leg.
    """
    params = Params()
    where = SqlFilter(spec, params).translate(plan.filter) if plan.filter is not None else sql.SQL("true")
    legs: list[LegSql] = []
    if plan.dense is not None:
        legs.append(_dense_leg(spec, plan.dense, where, params))
    if plan.sparse is not None:
        legs.append(_sparse_leg(spec, plan.sparse, where, params))
    table = sql.Identifier(spec.name)
    ctes = [
        sql.SQL("{} AS (SELECT id, doc_id, dist, row_number() OVER (ORDER BY dist, doc_id) AS r FROM ({}) AS x)")
        .format(sql.Identifier(f"leg_{leg.name}"), leg.query)
        for leg in legs
    ]
    dists = [sql.SQL("{}.dist").format(sql.Identifier(f"leg_{leg.name}")) for leg in legs]
    if len(legs) == 1:
        name = sql.Identifier(f"leg_{legs[0].name}")
        query = sql.SQL(
            "WITH {cte} SELECT t.id, t.doc_id, t.text, t.metadata, NULL::float8, {d} FROM {leg} "
            "JOIN {t} AS t USING (id) ORDER BY {leg}.r LIMIT {n}"
        ).format(cte=ctes[0], d=dists[0], leg=name, t=table, n=sql.Literal(int(plan.limit)))
        return query, params.values, legs
    k = int(plan.fusion.k)
    union = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT id, r, {}::float8 AS w FROM {}").format(
            params.add(float(plan.fusion.weights.get(leg.name, 1.0))), sql.Identifier(f"leg_{leg.name}"))
        for leg in legs
    )
    joins = sql.SQL(" ").join(
        sql.SQL("LEFT JOIN {} USING (id)").format(sql.Identifier(f"leg_{leg.name}")) for leg in legs
    )
    query = sql.SQL(
        "WITH {ctes}, fused AS (SELECT id, sum(w / ({k} + r)) AS score, min(r) AS best FROM ({union}) AS u "
        "GROUP BY id) "
        "SELECT t.id, t.doc_id, t.text, t.metadata, fused.score, {dists} FROM fused JOIN {t} AS t USING (id) "
        "{joins} ORDER BY fused.score DESC, fused.best, t.id LIMIT {n}"
    ).format(ctes=sql.SQL(", ").join(ctes), k=sql.Literal(float(k)), union=union, dists=sql.SQL(", ").join(dists),
             t=table, joins=joins, n=sql.Literal(int(plan.limit)))
    return query, params.values, legs
