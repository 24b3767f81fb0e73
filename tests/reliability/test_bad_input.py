"""Bad input on every engine: stored and read back as given, or refused before anything is written.

Hypothesis generates records (ids, texts with NUL, lone surrogates, emoji and very long runs;
metadata of every JSON type, nested, with huge integers and NaN/inf floats; dense vectors with
NaN/inf, huge or tiny values and wrong widths; sparse vectors with duplicate, negative and huge
indices), queries with filters on payload fields, and collection names, and runs each against the
memory reference and every real engine (Qdrant local or server, Milvus Lite or server, PostgreSQL
+ pgvector, Weaviate; the fixtures of tests/integration/conftest.py). The property:

- an upsert either succeeds, and ``get`` returns every record with the same id, text and
  metadata (same JSON types) and the same vectors within float32 rounding (cosine vectors: the
  same direction; sparse vectors: without zero weights), or it raises an ``SDKError`` and the
  collection is untouched: same count, none of the batch's records, earlier ones of the same call
  included (every record is written in its own batch, so a partial write would show);
- a query returns hits or raises an ``SDKError``, and writes nothing;
- a collection name is usable end to end or refused with an ``SDKError``.

The number of cases tried per engine is printed at the end of the module and written as JSON to
``$SDK_RELIABILITY_REPORT/bad_input.json`` (a folder, shared with the other reliability tests;
default: pytest's temporary directory).
Examples are derandomized, so CI sees the same cases on every run; ``SDK_RELIABILITY_EXAMPLES``
scales the number of examples (default 150 record batches and 120 queries per engine).
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdk.core.errors import AdapterError, SDKError
from sdk.core.registry import connect
from sdk.core.spec import CollectionSpec, DenseField, PayloadField, SparseField
from sdk.core.types import (
    And,
    Eq,
    Fusion,
    FusionMethod,
    HybridQuery,
    In,
    Not,
    Or,
    Range,
    Record,
    SparseVector,
)
from tests.integration.conftest import milvus_url, postgres_url, qdrant_url, weaviate_url  # noqa: F401 (fixtures)

ENGINES = ("memory", "qdrant", "milvus", "pgvector", "weaviate")
_FIXTURES = {"qdrant": "qdrant_url", "milvus": "milvus_url", "pgvector": "postgres_url", "weaviate": "weaviate_url"}
_SCALE = float(os.environ.get("SDK_RELIABILITY_EXAMPLES", "150")) / 150
RECORD_EXAMPLES = max(10, int(150 * _SCALE))
QUERY_EXAMPLES = max(10, int(120 * _SCALE))
NAME_EXAMPLES = max(5, int(30 * _SCALE))
SETTINGS = settings(deadline=None, derandomize=True, database=None, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example, HealthCheck.filter_too_much])

PAYLOAD = (PayloadField("kw", "keyword"), PayloadField("n", "int"), PayloadField("x", "float"),
           PayloadField("b", "bool"))
REPORT: dict[str, dict[str, int]] = {}


def _marks(engine: str) -> list[Any]:
    return [] if engine == "memory" else [pytest.mark.integration, getattr(pytest.mark, engine)]


@dataclass
class Engine:
    """One connected store, its test collection and the tally of cases tried on it."""

    name: str
    db: Any
    spec: CollectionSpec
    sentinels: list[Record]
    tally: Counter[str] = field(default_factory=Counter)

    @property
    def collection(self) -> str:
        return self.spec.name

    @property
    def sparse(self) -> bool:
        return bool(self.db.capabilities.sparse)


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Write and print the cases tried per engine once the module's tests ran."""
    yield
    if not REPORT:
        return
    folder = Path(os.environ.get("SDK_RELIABILITY_REPORT") or tmp_path_factory.getbasetemp())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bad_input.json"
    path.write_text(json.dumps(REPORT, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    lines = [f"{engine}: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
             for engine, counts in sorted(REPORT.items())]
    if reporter is not None:
        with capture.global_and_fixture_disabled() if capture is not None else nullcontext():
            reporter.write_sep("-", "bad input: cases tried per engine")
            for line in lines + [f"written to {path}"]:
                reporter.write_line(line)


@pytest.fixture(scope="module", params=[pytest.param(e, marks=_marks(e)) for e in ENGINES])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    name = request.param
    url = "memory://" if name == "memory" else request.getfixturevalue(_FIXTURES[name])
    db = connect(url)
    sparse = (SparseField("s"),) if db.capabilities.sparse else ()
    spec = CollectionSpec(f"rel_bad_{uuid.uuid4().hex[:10]}", dense=(DenseField("d", 4, "dot"), DenseField("c", 3)),
                          sparse=sparse, payload=PAYLOAD)
    db.ensure_collection(spec)
    sentinels = [_record(f"sentinel-{i}", [1.0, i, 0.5, -2.0], [1.0, 0.0, i], [(i, 1.5)], f"kept {i}",
                         {"kw": f"k{i}", "n": i, "x": i / 3, "b": bool(i % 2), "nested": {"l": [i, None, "s"]}},
                         sparse=bool(sparse)) for i in range(3)]
    db.upsert(spec.name, sentinels)
    eng = Engine(name, db, spec, sentinels)
    try:
        yield eng
        _check_untouched(eng)  # nothing any case did reached the records already there
    finally:
        REPORT[name] = dict(eng.tally)
        db.drop(spec.name)
        db.close()


# ---- strategies ----------------------------------------------------------------------------------
SPECIALS = ["\x00", "\ud800", "\udfff", "\ud83d", "é", "😀", "\u200b", "\ufeff", "'", '"', "\\", "%", "$",
            "{", "\n", "\t", " ", "\x7f", "\u2028", "a", "Z", "0"]
chars = st.one_of(st.sampled_from(SPECIALS), st.characters(exclude_categories=()))
short_text = st.text(chars, max_size=12)
long_text = st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "😀", "\x00", "x\ud800"]),
                      st.sampled_from([300, 20_000, 70_000]))
texts = st.one_of(short_text, short_text, short_text, long_text)
ids = st.one_of(st.text(chars, min_size=0, max_size=10), st.text(chars, min_size=0, max_size=10),
                st.builds(lambda c, n: c * n, st.sampled_from(["i", "é", "😀", "\x00"]),
                          st.sampled_from([64, 1_000, 40_000, 70_000])))
huge_ints = st.sampled_from([2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 2**70, 10**30])
ints = st.one_of(st.integers(-1000, 1000), st.integers(), huge_ints)
floats = st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.floats(),
                   st.sampled_from([0.0, -0.0, 1e16, 1e300, -1e308, 5e-324, 1e-310, 0.1]))
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts)
keys = st.one_of(st.sampled_from(["kw", "n", "x", "b", "nested", ""]), short_text)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(keys, inner, max_size=3)), max_leaves=6)
metadata = st.dictionaries(keys, values, max_size=5)
vector_items = st.one_of(st.floats(-10, 10, allow_nan=False), st.floats(-10, 10, allow_nan=False),
                         st.floats(), st.sampled_from([0.0, 1e-30, 1e20, 3e38, 1e39]))


def dense(n: int) -> st.SearchStrategy[list[float]]:
    nice = st.lists(st.floats(-10, 10, allow_nan=False, width=32), min_size=n, max_size=n)
    return st.one_of(nice, nice, nice, st.lists(vector_items, min_size=n - 1, max_size=n + 1))


sparse_index = st.one_of(st.integers(0, 1000), st.sampled_from(
    [-1, 2**31 - 1, 999_999_999, 1_000_000_000, 2**32 - 2, 2**32 - 1, 2**40]))
sparse_value = st.one_of(st.floats(-5, 5, allow_nan=False), st.floats(),
                         st.sampled_from([0.0, 1e-46, 1e-40, 3e38, 1e39]))
sparse_pairs = st.one_of(st.lists(st.tuples(sparse_index, sparse_value), max_size=6),
                         st.builds(lambda n: [(i, 1.0) for i in range(n)], st.sampled_from([0, 16_001])))


# Plausible parts: what a caller might well pass (any valid Unicode, NUL included, edge numbers in range).
# Three records in four are drawn from them and one from the wild parts above, so a batch of up to
# three records is stored often enough for the read-back comparison to mean something.
plain_chars = st.one_of(st.sampled_from([c for c in SPECIALS if not 0xD800 <= ord(c) <= 0xDFFF]), st.characters())
plain_text = st.text(plain_chars, max_size=30)
plain_ints = st.one_of(st.integers(-1000, 1000), st.integers(-(2**63), 2**63 - 1))
plain_floats = st.one_of(st.floats(-1e6, 1e6, allow_nan=False),
                         st.floats(allow_nan=False, allow_infinity=False))
plain_values = st.recursive(
    st.one_of(st.none(), st.booleans(), plain_ints, plain_floats, plain_text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(plain_text, inner, max_size=3)),
    max_leaves=6)
plain_metadata = st.dictionaries(st.one_of(st.sampled_from(["other", "nested"]), st.text(plain_chars, min_size=1,
                                                                                       max_size=8)),
                                 plain_values, max_size=4).flatmap(
    lambda m: st.fixed_dictionaries({}, optional={"kw": plain_text, "n": plain_ints, "x": plain_floats,
                                                  "b": st.booleans()}).map(lambda typed: {**m, **typed}))
plain_vector = st.floats(-10, 10, allow_nan=False, width=32)
plain_sparse = st.dictionaries(st.integers(0, 2**31), st.floats(0, 5), max_size=5).map(  # SPLADE-like weights
    lambda d: sorted(d.items()))


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.integers(0, 3)):
        c = draw(st.lists(plain_vector, min_size=3, max_size=3).filter(lambda v: sum(x * x for x in v) > 1e-6))
        return {"id": draw(st.text(plain_chars, min_size=1, max_size=12)),
                "d": draw(st.lists(plain_vector, min_size=4, max_size=4)), "c": c, "s": draw(plain_sparse),
                "text": draw(st.one_of(plain_text, st.none())), "metadata": draw(plain_metadata)}
    return {"id": draw(st.one_of(ids, ids, ids, st.sampled_from([None, 1]))), "d": draw(dense(4)),
            "c": draw(dense(3)), "s": draw(sparse_pairs), "text": draw(st.one_of(texts, st.none())),
            "metadata": draw(metadata)}


field_names = st.sampled_from(["kw", "n", "x", "b", "undeclared"])
filter_values = st.one_of(st.none(), st.booleans(), ints, floats, short_text)
leaves = st.one_of(
    st.builds(Eq, field_names, filter_values),
    st.builds(In, field_names, st.lists(filter_values, min_size=1, max_size=3)),
    st.builds(lambda f, lo, hi: Range(f, gte=lo, lt=hi), field_names, st.one_of(st.none(), ints, floats),
              st.one_of(ints, floats)),
)
filters = st.recursive(leaves, lambda inner: st.one_of(
    st.builds(And, st.lists(inner, min_size=1, max_size=3)), st.builds(Or, st.lists(inner, min_size=1, max_size=3)),
    st.builds(Not, inner)), max_leaves=5)


plain_leaves = st.one_of(
    st.builds(Eq, st.just("kw"), plain_text), st.builds(Eq, st.just("n"), plain_ints),
    st.builds(Eq, st.just("b"), st.booleans()), st.builds(In, st.just("kw"), st.lists(plain_text, min_size=1, max_size=3)),
    st.builds(lambda lo, hi: Range("x", gte=lo, lt=hi), plain_floats, plain_floats),
    st.builds(lambda lo: Range("n", gt=lo), plain_ints))
plain_filters = st.recursive(plain_leaves, lambda inner: st.one_of(
    st.builds(And, st.lists(inner, min_size=1, max_size=3)), st.builds(Not, inner)), max_leaves=4)


@st.composite
def queries(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.integers(0, 2)):  # two in three: a query every engine should answer
        sparse = draw(st.booleans())
        return {"dense": draw(st.lists(plain_vector, min_size=4, max_size=4)), "dense_field": "d",
                "sparse": draw(plain_sparse) if sparse else None, "text": None,
                "filter": draw(st.one_of(st.none(), plain_filters)), "limit": draw(st.integers(1, 50)),
                "fusion": Fusion()}
    legs = draw(st.sets(st.sampled_from(["dense", "sparse", "text"]), min_size=1))
    dense_field = draw(st.sampled_from(["d", "c", "d", "nope"]))
    return {
        "dense": draw(dense({"d": 4, "c": 3, "nope": 4}[dense_field])) if "dense" in legs else None,
        "dense_field": dense_field,
        "sparse": draw(sparse_pairs) if "sparse" in legs else None,
        "text": draw(texts) if "text" in legs else None,
        "filter": draw(st.one_of(st.none(), filters)),
        "limit": draw(st.one_of(st.integers(1, 50), st.sampled_from([0, 10_000, 16_385, 100_000]))),
        "fusion": draw(st.sampled_from([Fusion(), Fusion(FusionMethod.WEIGHTED), Fusion(FusionMethod.DBSF),
                                        Fusion(k=59), Fusion(FusionMethod.RELATIVE_SCORE)])),
    }


collection_names = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,62}", fullmatch=True),
    st.text(chars, max_size=70),
    st.sampled_from(["_sdk_collections", "_sdk_aliases", "_rf_aliases", "pg_class", "select", "Sdk_x", "_x",
                     "A" * 63, "_" * 63, "a" * 64, "1abc", "a-b", "a b", "Ab", "aB", "x;drop", "a\x00"]),
)


# ---- helpers -------------------------------------------------------------------------------------
def _record(doc_id: Any, d: Any, c: Any, pairs: list[tuple[int, float]] | None, text: Any, meta: Any,
            *, sparse: bool) -> Record:
    """A ``Record`` from generated parts (its constructor may itself refuse them: an ``InputError``)."""
    vectors = {"d": np.asarray(d, dtype=np.float64), "c": np.asarray(c, dtype=np.float64)}
    sp = {"s": SparseVector(tuple(i for i, _ in pairs), tuple(v for _, v in pairs))} if sparse and pairs is not None \
        else {}
    return Record(doc_id, vectors, sp, text, meta)


def _readable(doc_id: Any) -> bool:
    """An id ``get`` can look up (a string that is valid Unicode)."""
    if not isinstance(doc_id, str) or not doc_id:
        return False
    try:
        doc_id.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _same_json(got: Any, want: Any) -> bool:
    """Equal values of the same JSON type (a bool is not an int, an int is not a float)."""
    if isinstance(want, bool) or isinstance(got, bool):
        return type(got) is type(want) and got == want
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(_same_json(got[k], v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(_same_json, got, want))
    if isinstance(want, float):
        return type(got) is float and got == want
    return type(got) is type(want) and got == want


_ULP = float(np.finfo(np.float32).smallest_subnormal)  # float32 subnormals keep fewer digits: compare absolutely


def _direction(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _assert_stored(eng: Engine, want: Record, got: Record) -> None:
    """``got`` (read back) is ``want`` (written), up to float32 rounding."""
    assert got.id == want.id
    assert (got.text or "") == (want.text or ""), (got.text, want.text)
    expected = json.loads(json.dumps(dict(want.metadata)))  # tuples become lists, as in any JSON store
    assert _same_json(got.metadata, expected), (got.metadata, expected)
    np.testing.assert_allclose(got.vectors["d"], np.asarray(want.vectors["d"], dtype=np.float32), rtol=1e-6, atol=_ULP)
    np.testing.assert_allclose(_direction(got.vectors["c"]), _direction(want.vectors["c"]), atol=1e-6)
    if eng.sparse:
        src = want.sparse["s"]
        keep = [(i, v) for i, v in zip(src.indices, src.values, strict=True) if np.float32(v) != 0]
        assert list(got.sparse["s"].indices) == [i for i, _ in keep]
        np.testing.assert_allclose(got.sparse["s"].values, [v for _, v in keep], rtol=1e-6, atol=_ULP)


def _check_untouched(eng: Engine, batch_ids: Sequence[Any] = ()) -> None:
    """The collection holds the sentinels, as written, and none of ``batch_ids``."""
    assert eng.db.count(eng.collection) == len(eng.sentinels)
    got = {r.id: r for r in eng.db.get(eng.collection, [s.id for s in eng.sentinels])}
    for s in eng.sentinels:
        _assert_stored(eng, s, got[s.id])
    readable = [i for i in batch_ids if _readable(i) and not i.startswith("sentinel-")]
    assert eng.db.get(eng.collection, readable) == [], "a refused upsert left records behind"


# ---- the properties --------------------------------------------------------------------------------
@settings(SETTINGS, max_examples=RECORD_EXAMPLES)
@given(batch=st.lists(records(), min_size=1, max_size=3))
def test_records_are_stored_faithfully_or_refused_untouched(engine: Engine, batch: list[dict[str, Any]]) -> None:
    eng = engine
    eng.tally["record_batches"] += 1
    eng.tally["records"] += len(batch)
    batch_ids = [r["id"] for r in batch]
    if any(isinstance(i, str) and i.startswith("sentinel-") for i in batch_ids):
        return
    try:
        try:
            recs = [_record(r["id"], r["d"], r["c"], r["s"], r["text"], r["metadata"], sparse=eng.sparse)
                    for r in batch]
            written = eng.db.upsert(eng.collection, recs, batch_size=1)  # one batch per record: a partial write shows
        except SDKError as exc:
            eng.tally["batches_refused"] += 1
            # refused by the SDK's own checks, not by the database halfway through the batches
            assert not isinstance(exc, AdapterError), f"the database refused what validation let through: {exc}"
            _check_untouched(eng, batch_ids)
            return
        eng.tally["batches_stored"] += 1
        last = {r.id: r for r in recs}  # a repeated id: the last copy wins
        assert written == len(last)
        got = {r.id: r for r in eng.db.get(eng.collection, list(last))}
        assert set(got) == set(last)
        for doc_id, want in last.items():
            _assert_stored(eng, want, got[doc_id])
    finally:  # a failed case leaves nothing behind to fail the next ones
        eng.db.delete(eng.collection, [i for i in batch_ids if _readable(i) and not i.startswith("sentinel-")])
    _check_untouched(eng)


@settings(SETTINGS, max_examples=QUERY_EXAMPLES)
@given(q=queries())
def test_queries_answer_or_refuse_and_write_nothing(engine: Engine, q: dict[str, Any]) -> None:
    eng = engine
    eng.tally["queries"] += 1
    try:
        sparse = SparseVector(tuple(i for i, _ in q["sparse"]), tuple(v for _, v in q["sparse"])) \
            if q["sparse"] is not None else None
        query = HybridQuery(dense=np.asarray(q["dense"], dtype=np.float64) if q["dense"] is not None else None,
                            sparse=sparse, text=q["text"], dense_field=q["dense_field"], sparse_field="s",
                            filter=q["filter"], fusion=q["fusion"], limit=q["limit"])
        hits = eng.db.query(eng.collection, query)
    except SDKError as exc:
        eng.tally["queries_refused"] += 1
        assert not isinstance(exc, AdapterError), f"the database refused what validation let through: {exc}"
    else:
        eng.tally["queries_answered"] += 1
        assert len(hits) <= q["limit"]
        assert all(isinstance(h.score, float) and h.id.startswith("sentinel-") for h in hits)
    assert eng.db.count(eng.collection) == len(eng.sentinels)


@settings(SETTINGS, max_examples=NAME_EXAMPLES)
@given(name=collection_names)
def test_collection_names_work_end_to_end_or_are_refused(engine: Engine, name: str) -> None:
    eng = engine
    eng.tally["collection_names"] += 1
    if name == eng.collection:
        return
    created = False
    try:
        spec = CollectionSpec(name, dense=(DenseField("d", 4, "dot"),))
        if eng.db.exists(name):
            return  # a name the engine holds already (its own tables, another test's collection)
        eng.db.ensure_collection(spec)
        created = True
        eng.db.upsert(name, [Record("r", {"d": np.ones(4)}, text="x", metadata={"k": 1})])
        assert eng.db.count(name) == 1
        [got] = eng.db.get(name, ["r"])
        assert got.text == "x" and got.metadata == {"k": 1}
        assert [h.id for h in eng.db.query(name, HybridQuery(dense=np.ones(4), dense_field="d"))] == ["r"]
        eng.tally["collection_names_used"] += 1
    except SDKError:
        eng.tally["collection_names_refused"] += 1
    finally:
        if created:
            assert eng.db.drop(name)
    assert eng.db.count(eng.collection) == len(eng.sentinels)


# ---- one bad record at the end of a batch, per limit -------------------------------------------------
def _bad_records(eng: Engine) -> dict[str, tuple[Record, bool]]:
    """Records that hit one limit each, and whether this engine must refuse them (else: store them)."""
    caps = eng.db.capabilities

    def rec(doc_id: str = "bad", *, text: str = "t", meta: dict[str, Any] | None = None,
            pairs: list[tuple[int, float]] | None = None, d: Any = (1, 2, 3, 4), c: Any = (1, 0, 0)) -> Record:
        return _record(doc_id, d, c, pairs if pairs is not None else [(1, 1.0)], text, meta or {}, sparse=eng.sparse)

    out = {
        "lone surrogate in text": (rec(text="a\udc00b"), True),
        "lone surrogate in a metadata key": (rec(meta={"k\ud800": 1}), True),
        "NUL in text": (rec(text="a\x00b"), not caps.text_allows_nul),
        "NUL in the id": (rec("bad\x00id"), not caps.text_allows_nul),
        "NUL in nested metadata": (rec(meta={"o": [{"p": "x\x00"}]}), not caps.text_allows_nul),
        "integer beyond int64": (rec(meta={"n": 2**64}), caps.max_int is not None),
        "integer 2**53 + 1 (inexact as a double)": (rec(meta={"n": 2**53 + 1}),
                                                    caps.max_int is not None and caps.max_int <= 2**53),
        "metadata 40 levels deep": (rec(meta={"o": json.loads("[" * 40 + "]" * 40)}), True),
        "cosine vector of length 0": (rec(c=(0, 0, 0)), True),
        "vector too long for float32": (rec(d=(1e20, 0, 0, 0)), True),
        "id of 70,000 bytes": (rec("i" * 70_000), caps.max_id_bytes is not None and caps.max_id_bytes < 70_000),
        "large float": (rec(meta={"x": 1e300, "y": -1e16}), False),
    }
    if eng.sparse:
        out["sparse index beyond the store's"] = (rec(pairs=[(caps.max_sparse_index + 1, 1.0)]), True)
        out["sparse index 1,000,000,000"] = (rec(pairs=[(1_000_000_000, 1.0)]), caps.max_sparse_index < 10**9)
        out["16,001 sparse entries"] = (rec(pairs=[(i, 1.0) for i in range(16_001)]),
                                        caps.max_sparse_nnz is not None and caps.max_sparse_nnz < 16_001)
        out["sparse weight beyond float32"] = (rec(pairs=[(1, 1e39)]), True)
        out["negative sparse weight"] = (rec(pairs=[(1, -0.5)]), not caps.sparse_negative)
    return out


def test_a_bad_record_at_the_end_writes_nothing(engine: Engine) -> None:
    eng = engine
    good = [_record(f"good-{i}", (1, i, 0, 0), (0, 1, i), [(i, 1.0)], "good", {"n": i}, sparse=eng.sparse)
            for i in range(3)]
    for label, (bad, refused) in _bad_records(eng).items():
        eng.tally["end_of_batch_cases"] += 1
        if refused:
            with pytest.raises(SDKError) as info:
                eng.db.upsert(eng.collection, [*good, bad], batch_size=1)
            assert "record 3 (id " in str(info.value), (label, str(info.value))
            _check_untouched(eng, [r.id for r in good])
        else:
            assert eng.db.upsert(eng.collection, [*good, bad], batch_size=1) == 4, label
            [got] = eng.db.get(eng.collection, [bad.id])
            _assert_stored(eng, bad, got)
            eng.db.delete(eng.collection, [*(r.id for r in good), bad.id])
            _check_untouched(eng)
