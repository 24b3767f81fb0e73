"""Per-store input limits (``Capabilities``) checked in ``adapters.validate`` before the first write.

What a database refuses only while writing (a NUL in PostgreSQL text, an over-long Milvus id, a
sparse index beyond pgvector's dimension, an integer beyond int64) would otherwise fail after
earlier batches of the same upsert were committed. These tests hold the checks to: refused with
an ``InputError`` naming the record (position and id), the problem and the fix, before anything is
written; and accepted where the store has no such limit.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from adapters.ids import point_id
from adapters.memory import MEMORY_CAPABILITIES, MemoryAdapter
from adapters.validate import MAX_DEPTH, MAX_SQUARED_LENGTH, check_filter, prepare_query, prepare_records
from sdk.core.capabilities import Capabilities
from sdk.core.errors import CapabilityError, ConfigError, InputError
from sdk.core.spec import CollectionSpec, DenseField, PayloadField, SparseField
from sdk.core.types import And, Eq, HybridQuery, In, Not, Or, Range, Record, SparseVector

SPEC = CollectionSpec("c", dense=(DenseField("d", 4, "dot"),), sparse=(SparseField("s"),),
                      payload=(PayloadField("kw", "keyword"), PayloadField("n", "int"), PayloadField("x", "float")))
COSINE = CollectionSpec("k", dense=(DenseField("d", 4, "cosine", matryoshka_dim=2),), sparse=(SparseField("s"),))
#: A store with every limit set low, like pgvector (NUL, sparse) and Milvus (ids) together.
STRICT = replace(MEMORY_CAPABILITIES, name="strict", max_id_bytes=8, max_sparse_index=99, max_sparse_nnz=3,
                 text_allows_nul=False, max_int=2**31 - 1)
LOOSE = replace(MEMORY_CAPABILITIES, name="loose", max_int=None)


def rec(doc_id: str = "a", *, text: str | None = "t", metadata: dict[str, Any] | None = None,
        sparse: SparseVector | None = None, dense: Any = (1.0, 0.0, 0.0, 0.0)) -> Record:
    return Record(doc_id, {"d": np.asarray(dense, dtype=np.float32)},
                  {"s": sparse if sparse is not None else SparseVector((1,), (1.0,))}, text, metadata or {})


def refused(caps: Capabilities, bad: Record, match: str, spec: CollectionSpec = SPEC) -> InputError:
    """``bad`` at the end of a batch is refused, naming its position and the problem."""
    with pytest.raises(InputError, match=match) as info:
        prepare_records(spec, caps, [rec("g1"), rec("g2"), bad])
    assert "record 2 (id " in str(info.value)
    return info.value


# ---- capabilities ----------------------------------------------------------------------------------
def test_capabilities_check_their_limits() -> None:
    assert MEMORY_CAPABILITIES.max_int == 2**63 - 1 and MEMORY_CAPABILITIES.min_int == -(2**63)
    assert LOOSE.min_int is None and MEMORY_CAPABILITIES.text_allows_nul
    for key, value in (("max_id_bytes", 0), ("max_sparse_index", -1), ("max_int", True), ("max_sparse_nnz", 1.5)):
        with pytest.raises(ConfigError, match=key):
            replace(MEMORY_CAPABILITIES, **{key: value})


def test_reserved_names_and_query_limits() -> None:
    caps = replace(MEMORY_CAPABILITIES, reserved_names=frozenset({"_books"}), max_limit=100)
    with pytest.raises(CapabilityError, match="'_books' is the name memory keeps its own bookkeeping under"):
        caps.check_spec(CollectionSpec("_books", dense=(DenseField("d", 4),)))
    prepare_query(SPEC, caps, HybridQuery(dense=np.ones(4), dense_field="d", limit=100))
    with pytest.raises(InputError, match="limit is 101; memory returns at most 100 hits"):
        prepare_query(SPEC, caps, HybridQuery(dense=np.ones(4), dense_field="d", limit=101))


def test_engines_declare_what_they_refuse_while_writing() -> None:
    pytest.importorskip("psycopg")
    pytest.importorskip("pymilvus")
    from adapters.milvus._mapping import capabilities as milvus_capabilities
    from adapters.pgvector import PGVECTOR_CAPABILITIES
    from adapters.pgvector._mapping import SPARSE_DIM

    pg = PGVECTOR_CAPABILITIES
    assert not pg.text_allows_nul and pg.max_sparse_index == SPARSE_DIM - 1 and pg.max_sparse_nnz == 16_000
    assert pg.max_int is None and {"_sdk_collections", "_sdk_aliases"} <= pg.reserved_names
    for lite in (True, False):
        milvus = milvus_capabilities(lite)
        assert milvus.max_id_bytes == 65_535 and milvus.max_int == 2**63 - 1 and milvus.max_limit == 16_384
        assert not milvus.sparse_negative and ("_rf_aliases" in milvus.reserved_names) == lite


# ---- strings ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["id", "text", "value", "key", "nested"])
def test_nul_is_refused_only_where_the_store_cannot_keep_it(where: str) -> None:
    s = "a\x00b"
    bad = {"id": rec(s), "text": rec(text=s), "value": rec(metadata={"kw": s}), "key": rec(metadata={s: 1}),
           "nested": rec(metadata={"o": {"p": [1, {"q": s}]}})}[where]
    err = refused(STRICT, bad, "NUL character")
    assert "replace('\\x00', '')" in str(err)
    assert len(prepare_records(SPEC, MEMORY_CAPABILITIES, [bad])) == 1


@pytest.mark.parametrize("where", ["id", "text", "value", "key", "nested"])
def test_lone_surrogates_are_refused_everywhere(where: str) -> None:
    s = "x\ud800y"
    bad = {"id": rec(s), "text": rec(text=s), "value": rec(metadata={"o": s}), "key": rec(metadata={s: 1}),
           "nested": rec(metadata={"o": [[{"k": s}]]})}[where]
    for caps in (STRICT, LOOSE, MEMORY_CAPABILITIES):
        refused(caps, bad, r"lone surrogate \('\\ud800' at position 1\)")


def test_ids_are_measured_in_utf8_bytes_and_shown_shortened() -> None:
    assert prepare_records(SPEC, STRICT, [rec("é" * 4)])  # 8 bytes: the limit
    refused(STRICT, rec("é" * 5), r"the id is 10 bytes \(UTF-8\); strict keeps ids of at most 8 bytes")
    long = "i" * 100_000
    err = refused(replace(STRICT, max_id_bytes=65_535), rec(long), "100000 bytes")
    assert "(100000 characters)" in str(err) and len(str(err)) < 600  # the id is not pasted whole
    assert len(prepare_records(SPEC, MEMORY_CAPABILITIES, [rec(long)])) == 1
    with pytest.raises(InputError, match="not valid Unicode"):
        point_id("a\udc80")  # get / delete by such an id: an SDK error, not a UnicodeEncodeError


# ---- integers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**100])
def test_integers_beyond_the_store_range_are_refused(value: int) -> None:
    refused(MEMORY_CAPABILITIES, rec(metadata={"n": value}), f"the integer {value}, outside the range")
    refused(MEMORY_CAPABILITIES, rec(metadata={"o": [{"p": value}]}), "outside the range")
    [ok] = prepare_records(SPEC, LOOSE, [rec(metadata={"n": value, "o": [value]})])
    assert ok.metadata == {"n": value, "o": [value]}


def test_integers_are_checked_in_flat_metadata_too() -> None:
    refused(STRICT, rec(metadata={"n": 2**31}), "the integer 2147483648, outside the range strict stores")
    refused(STRICT, rec(metadata={"n": -(2**31) - 1}), "outside the range")
    assert prepare_records(SPEC, STRICT, [rec(metadata={"n": -(2**31), "m": 2**31 - 1})])


def test_integer_edges_and_huge_integers() -> None:
    edges = {"a": 2**63 - 1, "b": -(2**63), "c": 10**18, "d": -(10**18)}
    assert prepare_records(SPEC, MEMORY_CAPABILITIES, [rec(metadata=edges)])[0].metadata == edges
    with pytest.raises(InputError, match="JSON-serialisable"):  # more digits than Python prints
        prepare_records(SPEC, LOOSE, [rec(metadata={"o": 10**5000})])


# ---- sparse vectors --------------------------------------------------------------------------------
def test_sparse_limits_per_store() -> None:
    refused(STRICT, rec(sparse=SparseVector((100,), (1.0,))), "index 100; strict keeps indices up to 99")
    refused(STRICT, rec(sparse=SparseVector((1, 2, 3, 4), (1.0,) * 4)), "4 non-zero entries; strict stores at most 3")
    refused(MEMORY_CAPABILITIES, rec(sparse=SparseVector((2**32 - 1,), (1.0,))), "up to 4294967294")
    refused(MEMORY_CAPABILITIES, rec(sparse=SparseVector((1,), (1e39,))), "beyond float32's range")
    no_negatives = replace(MEMORY_CAPABILITIES, sparse_negative=False)
    refused(no_negatives, rec(sparse=SparseVector((1, 2), (0.5, -0.25))), "negative weight .*-0.25")
    with pytest.raises(InputError, match="negative weight"):
        prepare_query(SPEC, no_negatives, HybridQuery(sparse=SparseVector((1,), (-1.0,)), sparse_field="s"))
    [ok] = prepare_records(SPEC, MEMORY_CAPABILITIES, [rec(sparse=SparseVector((1, 2, 3, 4), (0.0, 1e-50, 2.0, -1.0)))])
    assert ok.sparse["s"] == SparseVector((3, 4), (2.0, -1.0))  # zero weights (also float32 underflow) are no entries
    [ok] = prepare_records(SPEC, STRICT, [rec(sparse=SparseVector((1, 2, 3, 4), (0.0, 1.0, 2.0, 3.0)))])
    assert len(ok.sparse["s"]) == 3  # counted after the zeros are dropped


# ---- dense vectors ---------------------------------------------------------------------------------
def test_dense_vectors_must_have_a_finite_float32_length() -> None:
    big = math.sqrt(MAX_SQUARED_LENGTH) * 1.01
    refused(MEMORY_CAPABILITIES, rec(dense=(big, 0, 0, 0)), "too long")
    refused(MEMORY_CAPABILITIES, rec(dense=(1e20, 1e20, 0, 0)), "overflows|too long")
    assert prepare_records(SPEC, MEMORY_CAPABILITIES, [rec(dense=(0, 0, 0, 0))])  # dot: a zero vector is fine
    refused(MEMORY_CAPABILITIES, rec(dense=(0, 0, 0, 0)), "cosine similarity needs a direction", COSINE)
    refused(MEMORY_CAPABILITIES, rec(dense=(1e-30, 0, 0, 0)), "needs a direction", COSINE)  # underflows float32
    refused(MEMORY_CAPABILITIES, rec(dense=(0, 0, 1, 1)), "the 2-d prefix of vector 'd'", COSINE)
    with pytest.raises(InputError, match="needs a direction"):
        prepare_query(COSINE, MEMORY_CAPABILITIES, HybridQuery(dense=np.zeros(4), dense_field="d"))


# ---- metadata shape --------------------------------------------------------------------------------
def test_metadata_depth_and_keys() -> None:
    deep: Any = 1
    for _ in range(MAX_DEPTH):
        deep = [deep]
    refused(MEMORY_CAPABILITIES, rec(metadata={"o": deep}), f"deeper than {MAX_DEPTH} levels")
    ok = prepare_records(SPEC, MEMORY_CAPABILITIES, [rec(metadata={"o": deep[0]})])[0]
    assert json.dumps(ok.metadata) == json.dumps({"o": deep[0]})
    refused(MEMORY_CAPABILITIES, rec(metadata={"o": {1: "a"}}), "key 1 .*Use string keys")
    [ok] = prepare_records(SPEC, MEMORY_CAPABILITIES, [rec(metadata={"o": ({"": None}, 1.5)})])
    assert ok.metadata == {"o": [{"": None}, 1.5]}  # what JSON gives back: lists, any string key


# ---- queries and filters ---------------------------------------------------------------------------
@pytest.mark.parametrize("flt", [Eq("kw", "a\x00"), In("kw", ("ok", "b\x00")), Not(Or((Eq("kw", "x"), Eq("kw", "\x00"))))])
def test_filter_strings_follow_the_store(flt: Any) -> None:
    with pytest.raises(InputError, match="NUL"):
        prepare_query(SPEC, STRICT, HybridQuery(dense=np.ones(4), dense_field="d", filter=flt))
    prepare_query(SPEC, MEMORY_CAPABILITIES, HybridQuery(dense=np.ones(4), dense_field="d", filter=flt))
    with pytest.raises(InputError, match="lone surrogate"):
        check_filter(SPEC, LOOSE, And((flt, Eq("kw", "\udfff"))))


def test_filter_integers_follow_the_store() -> None:
    for flt in (Eq("n", 2**63), In("n", (1, -(2**63) - 1)), Eq("x", 2**70)):
        with pytest.raises(InputError, match="outside the range"):
            check_filter(SPEC, MEMORY_CAPABILITIES, flt)
        check_filter(SPEC, LOOSE, flt)
    with pytest.raises(InputError, match="Range bound lt=1e\\+20 on the int field 'n'"):
        check_filter(SPEC, MEMORY_CAPABILITIES, Range("n", lt=1e20))
    check_filter(SPEC, MEMORY_CAPABILITIES, Range("x", lt=1e300))  # a float field: any finite bound
    deep: Any = Eq("n", 1)
    for _ in range(MAX_DEPTH):
        deep = Not(deep)
    with pytest.raises(InputError, match="nests deeper"):
        check_filter(SPEC, MEMORY_CAPABILITIES, deep)
    with pytest.raises(InputError, match="NUL"):
        prepare_query(SPEC, replace(STRICT, text_leg=True), HybridQuery(text="a\x00b"))


# ---- nothing is written ----------------------------------------------------------------------------
def test_a_bad_last_record_writes_nothing_on_the_memory_reference() -> None:
    db = MemoryAdapter()
    db.ensure_collection(SPEC)
    db.upsert("c", [rec("keep")])
    for bad in (rec("x\ud800"), rec(metadata={"n": 2**64}), rec(sparse=SparseVector((2**40,), (1.0,))),
                rec(metadata={"o": {2: 3}})):
        with pytest.raises(InputError, match="record 3"):
            db.upsert("c", [rec("g1"), rec("g2"), rec("g3"), bad], batch_size=1)
        assert db.count("c") == 1 and db.get("c", ["g1", "g2", "g3"]) == []


def test_pgvector_writes_large_floats_so_that_they_read_back_as_floats() -> None:
    pytest.importorskip("psycopg")
    from adapters.pgvector._query import metadata_value

    meta = {"x": 1e16, "y": [-1e308, {"z": 2.5e20}], "n": 10**20, "s": "1e16", "f": 0.1}
    dumped = metadata_value(meta).dumps(meta)
    assert '"x":10000000000000000.0' in dumped and '"n":100000000000000000000,' in dumped
    assert json.loads(dumped) == meta and isinstance(json.loads(dumped)["x"], float)
    small = {"a": 1.5, "b": [1, 2]}
    assert json.loads(metadata_value(small).dumps(small)) == small
