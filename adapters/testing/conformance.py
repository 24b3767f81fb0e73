"""One conformance suite for every adapter, in the spirit of LangChain's VectorStoreIntegrationTests.

A database's test module subclasses ``AdapterConformance`` and provides an ``adapter`` fixture
(a fresh connection; collections are created with unique names and dropped afterwards). Each
test's docstring says what it checks and what a failure usually means. Every
answer is compared with the exact ``MemoryAdapter`` on the same data. The suite is driven by
``adapter.capabilities``: a feature the adapter claims must work and match the reference; a
feature it does not claim must raise ``CapabilityError`` (never a silent downgrade).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from adapters.base import (
    Adapter,
    Capabilities,
    CollectionSpec,
    CursorPages,
    DenseField,
    IndexParams,
    PayloadField,
    SparseField,
)
from adapters.memory import MemoryAdapter
from adapters.retry import RetryPolicy
from sdk.core.errors import (
    AdapterError,
    CapabilityError,
    CollectionNotFoundError,
    DimensionMismatchError,
    InputError,
    SchemaMismatchError,
    SimilarityMismatchError,
)
from sdk.core.fusion import rrf_fuse
from sdk.core.similarity import Similarity
from sdk.core.types import (
    And,
    Eq,
    Filter,
    Fusion,
    FusionMethod,
    Hit,
    HybridQuery,
    In,
    Not,
    Or,
    Range,
    Record,
    SparseVector,
)

__all__ = ["AdapterConformance", "make_records", "assert_same_hits"]

N_DOCS = 60
DIM = 32
SPARSE_VOCAB = 30522
PAYLOAD = (PayloadField("kind", "keyword"), PayloadField("year", "int"),
           PayloadField("price", "float"), PayloadField("flag", "bool"))
KINDS = ("alpha", "beta", "gamma", 'x"; DROP TABLE t; --')
HOSTILE_NAMES = ['x"; DROP TABLE t; --', "a b", "1abc", "", "x" * 64, "Robert'); DROP TABLE students;--",
                 "{ Get { Thing } }", "ns.coll", "a-b", "名前", "col$"]
ALL_STORAGE_SIMILARITIES = [
    (p, s) for p in ("float32", "float16", "int8") for s in ("cosine", "dot", "euclidean", "manhattan")
] + [("binary", "hamming"), ("binary", "jaccard")]


# ---- deterministic data ------------------------------------------------------------------------
def _vectors(storage: str, n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if storage == "binary":
        return rng.integers(0, 2, size=(n, dim)).astype(np.uint8)
    if storage == "int8":
        return rng.integers(-128, 128, size=(n, dim)).astype(np.float32)
    vecs = rng.normal(size=(n, dim)).astype(np.float32)
    return vecs.astype(np.float16).astype(np.float32) if storage == "float16" else vecs


def _sparse(rng: np.random.Generator, active: int = 12) -> SparseVector:
    idx = rng.choice(400, size=active, replace=False)  # small vocabulary slice -> real overlaps
    return SparseVector(tuple(int(i) * 71 % SPARSE_VOCAB for i in idx), tuple(rng.uniform(0.1, 3.0, active)))


def make_records(n: int = N_DOCS, dim: int = DIM, storage: str = "float32", seed: int = 7,
                 sparse: bool = True, dense: bool = True) -> list[Record]:
    """Deterministic records with dense ``"dense"``, sparse ``"sparse"`` vectors and typed metadata."""
    vecs = _vectors(storage, n, dim, seed)
    rng = np.random.default_rng(seed + 1)
    out = []
    for i in range(n):
        meta = {"kind": KINDS[i % len(KINDS)], "year": 2000 + i % 7, "price": round(i * 1.25, 2),
                "flag": i % 3 == 0, "extra": {"nested": [i, "v"]}}
        out.append(Record(
            f"doc-{i}",
            {"dense": vecs[i]} if dense else {},
            {"sparse": _sparse(rng)} if sparse else {},
            f"text of document {i} about {KINDS[i % len(KINDS)]}",
            meta,
        ))
    return out


def _query_vector(storage: str, dim: int, seed: int) -> np.ndarray:
    return _vectors(storage, 1, dim, 1000 + seed)[0]


def assert_same_hits(got: list[Hit], want: list[Hit], *, rel: float = 1e-4, abs_: float = 1e-4,
                     limit: int | None = None, check_scores: bool = True) -> None:
    """Same ids in the same order as the reference, except that (near-)tied hits may swap.

    ``want`` may run past ``limit``: the extra reference hits reveal ties at the cut-off, where an
    engine may legitimately return any of the tied ids.
    """
    limit = limit if limit is not None else len(want)
    assert len(got) == min(limit, len(want)), f"{len(got)} hits, want {min(limit, len(want))}: {[h.id for h in got]}"
    i = 0
    while i < len(got):
        j = i + 1
        while j < len(want) and abs(want[j - 1].score - want[j].score) <= 4 * abs_ + rel * abs(want[j].score):
            j += 1
        group = {h.id for h in want[i:j]}
        shown = {h.id for h in got[i:min(j, len(got))]}
        assert shown <= group and (j > len(got) or shown == group), (
            f"ranks {i}..{j - 1}: got {[h.id for h in got]}, reference {[h.id for h in want]}"
        )
        i = j
    if check_scores:
        want_by_id = {h.id: h.score for h in want}
        for g in got:
            assert g.score == pytest.approx(want_by_id[g.id], rel=rel, abs=abs_), f"score of {g.id}"


class AdapterConformance:
    """Subclass and override the ``adapter`` fixture with a fresh adapter of your database."""

    # Tolerances a subclass may widen (e.g. float16 computed in half precision by the engine).
    score_rel: float = 1e-4
    score_abs: float = 1e-4

    @pytest.fixture
    def adapter(self) -> Iterator[Adapter]:
        raise NotImplementedError("override the `adapter` fixture in your test module")

    @pytest.fixture
    def db(self, adapter: Adapter) -> Iterator[Adapter]:
        """The adapter under test, with a fast retry policy and every test collection dropped afterwards."""
        adapter.retry_policy = RetryPolicy(attempts=3, budget_s=10.0, initial_wait_s=0.01, max_wait_s=0.05)
        self._created: list[str] = []
        yield adapter
        for name in self._created:
            try:
                adapter.drop(name)
            except Exception:  # noqa: BLE001 - cleanup must not hide the test's own failure
                pass

    @pytest.fixture
    def ref(self) -> Iterator[MemoryAdapter]:
        with MemoryAdapter() as mem:
            yield mem

    @pytest.fixture
    def caps(self, db: Adapter) -> Capabilities:
        return db.capabilities

    def name(self) -> str:
        n = f"rf_{uuid.uuid4().hex[:12]}"
        self._created.append(n)
        return n

    def spec(self, name: str, *, storage: str = "float32", similarity: str = "cosine", dim: int = DIM,
             sparse: bool = True, idf: bool = False, matryoshka: int | None = None,
             index: IndexParams | None = None, encoder: str | None = "enc-v1") -> CollectionSpec:
        dense = DenseField("dense", dim, Similarity.parse(similarity), storage, matryoshka,  # type: ignore[arg-type]
                           index or IndexParams())
        return CollectionSpec(name, dense=(dense,), sparse=(SparseField("sparse", idf),) if sparse else (),
                              payload=PAYLOAD, encoder=encoder)

    def both(self, db: Adapter, ref: Adapter, spec: CollectionSpec, records: list[Record]) -> None:
        """Create ``spec`` in the database and the reference and load the same records into both."""
        db.ensure_collection(spec)
        ref.ensure_collection(spec)
        assert db.upsert(spec.name, records, batch_size=17) == len(records)
        ref.upsert(spec.name, records)

    def sparse_ok(self, caps: Capabilities) -> bool:
        return caps.sparse

    # ---- lifecycle -----------------------------------------------------------------------------
    def test_capabilities_value(self, caps: Capabilities) -> None:
        """Capabilities is a frozen value with similarities per storage type. Failure: the adapter builds it by hand or mutates it."""
        assert isinstance(caps, Capabilities)
        assert caps.similarities and all(isinstance(s, Similarity) for m in caps.similarities.values() for s in m)
        with pytest.raises(AttributeError):
            caps.sparse = not caps.sparse  # type: ignore[misc]

    def test_lifecycle(self, db: Adapter, caps: Capabilities) -> None:
        """Create, describe, count, drop round trip. Failure: _read_spec does not find the stored spec, or _drop/_create are not idempotent."""
        spec = self.spec(self.name(), sparse=self.sparse_ok(caps))
        assert not db.exists(spec.name)
        with pytest.raises(CollectionNotFoundError):
            db.describe(spec.name)
        with pytest.raises(CollectionNotFoundError):
            db.upsert(spec.name, make_records(2, sparse=self.sparse_ok(caps)))
        assert db.ensure_collection(spec) == spec
        assert db.exists(spec.name)
        assert db.describe(spec.name) == spec
        assert db.ensure_collection(spec) == spec  # idempotent
        assert db.count(spec.name) == 0
        assert db.drop(spec.name) is True
        assert not db.exists(spec.name)
        assert db.drop(spec.name) is False

    def test_upsert_is_idempotent(self, db: Adapter, caps: Capabilities) -> None:
        """Re-upserting the same ids overwrites. Failure: storage ids are not adapters.ids.point_id, or _upsert_batch inserts instead of upserting."""
        spec = self.spec(self.name(), sparse=self.sparse_ok(caps))
        db.ensure_collection(spec)
        records = make_records(sparse=self.sparse_ok(caps))
        db.upsert(spec.name, records, batch_size=16)
        db.upsert(spec.name, records, batch_size=7)
        assert db.count(spec.name) == len(records)
        changed = Record(records[3].id, records[3].vectors, records[3].sparse, "new text", {"kind": "beta"})
        db.upsert(spec.name, [changed, changed])  # a repeated id in one call is one record
        assert db.count(spec.name) == len(records)
        (got,) = db.get(spec.name, [records[3].id])
        assert got.text == "new text" and dict(got.metadata) == {"kind": "beta"}

    def test_get_round_trip(self, db: Adapter, caps: Capabilities) -> None:
        """Stored vectors, text, metadata come back as written. Failure: a vector or payload conversion in _get (dtype, sparse order, JSON)."""
        spec = self.spec(self.name(), sparse=self.sparse_ok(caps))
        db.ensure_collection(spec)
        records = make_records(10, sparse=self.sparse_ok(caps))
        db.upsert(spec.name, records)
        got = db.get(spec.name, ["doc-7", "missing", "doc-2"])
        assert [r.id for r in got] == ["doc-7", "doc-2"]
        assert db.get(spec.name, []) == []
        want = records[7]
        assert got[0].text == want.text
        assert dict(got[0].metadata) == dict(want.metadata)
        stored = np.asarray(got[0].vectors["dense"], dtype=np.float32)
        original = np.asarray(want.vectors["dense"], dtype=np.float32)
        # Cosine engines (Qdrant) may keep the unit vector only: the direction is what cosine compares.
        if not np.allclose(stored, original, rtol=1e-6, atol=1e-6):
            np.testing.assert_allclose(stored, original / np.linalg.norm(original), rtol=1e-5, atol=1e-6)
        if self.sparse_ok(caps):
            sv = got[0].sparse["sparse"]
            assert sv.indices == want.sparse["sparse"].indices
            np.testing.assert_allclose(sv.values, want.sparse["sparse"].values, rtol=1e-6)

    def test_delete_missing_ids_is_quiet(self, db: Adapter, caps: Capabilities) -> None:
        """Deleting unknown ids is a no-op. Failure: _delete raises on missing ids or deletes by the wrong key."""
        spec = self.spec(self.name(), sparse=self.sparse_ok(caps))
        db.ensure_collection(spec)
        db.upsert(spec.name, make_records(10, sparse=self.sparse_ok(caps)))
        db.delete(spec.name, ["never-stored"])
        assert db.count(spec.name) == 10
        db.delete(spec.name, ["doc-1", "doc-2", "never-stored"])
        assert db.count(spec.name) == 8
        assert db.get(spec.name, ["doc-1", "doc-3"])[0].id == "doc-3"
        db.delete(spec.name, [])
        assert db.count(spec.name) == 8

    def test_ids_lists_every_document(self, db: Adapter, caps: Capabilities) -> None:
        """ids() lists each stored document id once, across many pages, through aliases and after deletes.

        Failure: _scan_ids returns storage ids instead of document ids, its cursor skips or repeats a
        page boundary (or stops at the first short page), or it ignores batch_size.
        """
        sp = self.sparse_ok(caps)
        spec = self.spec(self.name(), sparse=sp)
        db.ensure_collection(spec)
        assert list(db.ids(spec.name)) == []
        assert list(db.ids(spec.name, batch_size=7)) == []
        records = make_records(N_DOCS + 3, sparse=sp)  # 63 = 9 full pages of 7: the last page is full
        db.upsert(spec.name, records)
        written = sorted(r.id for r in records)
        for size in (7, 10, 1000):
            got = list(db.ids(spec.name, batch_size=size))
            assert sorted(got) == written, f"batch_size={size}: {len(got)} ids, {len(set(got))} distinct"
        gone = [r.id for r in records[::5]]
        db.delete(spec.name, gone)
        left = sorted(set(written) - set(gone))
        assert sorted(db.ids(spec.name, batch_size=7)) == left
        if caps.aliases:
            alias = self.name()
            db.create_alias(alias, spec.name)
            assert sorted(db.ids(alias, batch_size=9)) == left
            db.delete_alias(alias)
        with pytest.raises(InputError):
            db.ids(spec.name, batch_size=0)
        with pytest.raises(CollectionNotFoundError):
            list(db.ids("rf_no_such_collection"))
        for bad in HOSTILE_NAMES[:3]:
            with pytest.raises(InputError):
                list(db.ids(bad))

    def test_ids_retries_a_failed_page(self, db: Adapter, caps: Capabilities,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
        """The connection drops while page 3 of an id listing is fetched; the retry still lists every id once.

        Failure: _scan_ids returns a generator instead of a CursorPages (a generator that raised is
        finished, so the page cannot be fetched again), or _translate does not mark the error transient.
        """
        sp = self.sparse_ok(caps)
        spec = self.spec(self.name(), sparse=sp)
        db.ensure_collection(spec)
        records = make_records(40, sparse=sp)
        db.upsert(spec.name, records)
        real, calls = db._scan_ids, {"n": 0}

        def flaky(s: CollectionSpec, name: str, size: int) -> Any:
            pages = real(s, name, size)
            assert isinstance(pages, CursorPages), f"_scan_ids returned {type(pages).__name__}, not CursorPages"
            fetch = pages._fetch

            def failing(cursor: Any) -> tuple[list[str], Any]:
                calls["n"] += 1
                if calls["n"] == 3:
                    raise ConnectionResetError(104, "Connection reset by peer")
                return fetch(cursor)

            pages._fetch = failing
            return pages

        monkeypatch.setattr(db, "_scan_ids", flaky)
        got = list(db.ids(spec.name, batch_size=6))
        assert calls["n"] >= 8  # 7 pages (40 = 6 * 6 + 4) and the retried one
        assert sorted(got) == sorted(r.id for r in records)

    # ---- filters -------------------------------------------------------------------------------
    FILTERS: list[Filter] = [
        Eq("kind", "beta"), Eq("year", 2003), Eq("flag", True), Eq("kind", KINDS[3]),
        In("kind", ("alpha", "gamma")), In("year", (2001, 2005)),
        Range("year", gte=2002, lt=2005), Range("price", gt=10.0), Range("price", lte=12.5),
        And((Eq("kind", "alpha"), Range("year", gte=2003))),
        Or((Eq("kind", "beta"), Eq("flag", True))),
        Not(Eq("kind", "alpha")),
        And((Not(In("year", (2000, 2001))), Or((Eq("flag", False), Range("price", lt=20))))),
    ]

    @pytest.mark.parametrize("flt", FILTERS, ids=lambda f: repr(f)[:60])
    def test_filters_match_reference(self, db: Adapter, ref: MemoryAdapter, caps: Capabilities,
                                     flt: Filter) -> None:
        """Each filter selects what the memory reference selects. Failure: the FilterTranslator subclass maps one operator or type wrongly."""
        spec = self.spec(self.name(), sparse=self.sparse_ok(caps))
        self.both(db, ref, spec, make_records(sparse=self.sparse_ok(caps)))
        assert db.count(spec.name, flt) == ref.count(spec.name, flt) > 0
        q = HybridQuery(dense=_query_vector("float32", DIM, 1), filter=flt, limit=100)
        got, want = db.query(spec.name, q), ref.query(spec.name, q)
        assert {h.id for h in got} == {h.id for h in want}
        assert_same_hits(got, want, rel=self.score_rel, abs_=self.score_abs)

    def test_unknown_filter_field(self, db: Adapter, caps: Capabilities) -> None:
        """Filters on undeclared or mistyped fields are refused with InputError. Failure: the translator skips FilterTranslator's field checks."""
        spec = self.spec(self.name(), sparse=self.sparse_ok(caps))
        db.ensure_collection(spec)
        for bad in (Eq("nope", 1), Eq("extra", "x"), Range("kind", gte=1), Eq("year", "2003"),
                    Not(In("nope", ("a",))), Eq('kind"; DROP TABLE t; --', "x")):
            with pytest.raises(InputError):
                db.count(spec.name, bad)
            with pytest.raises(InputError):
                db.query(spec.name, HybridQuery(dense=_query_vector("float32", DIM, 0), filter=bad))

    # ---- metrics and precisions ----------------------------------------------------------------
    @pytest.mark.parametrize(("storage", "similarity"), ALL_STORAGE_SIMILARITIES)
    def test_metric_matches_reference(self, db: Adapter, ref: MemoryAdapter, caps: Capabilities,
                                      storage: str, similarity: str) -> None:
        """Each storage type and similarity ranks and scores like the reference. Failure: a wrong row in the mapping table or distance-to-score kind."""
        dim = 64 if storage == "binary" else DIM
        spec = self.spec(self.name(), storage=storage, similarity=similarity, dim=dim, sparse=False)
        if not caps.supports(storage, similarity):
            with pytest.raises(CapabilityError):
                db.ensure_collection(spec)
            return
        self.both(db, ref, spec, make_records(storage=storage, dim=dim, sparse=False))
        for seed in range(3):
            q = HybridQuery(dense=_query_vector(storage, dim, seed), limit=10)
            got, want = db.query(spec.name, q), ref.query(spec.name, replace(q, limit=20))
            wide = 20 if storage == "float16" else 1
            assert_same_hits(got, want, rel=self.score_rel * wide, abs_=self.score_abs * wide, limit=10)

    @pytest.mark.parametrize("kind", ["int8", "binary", "pq"])
    def test_index_quantization_rescored(self, db: Adapter, ref: MemoryAdapter, caps: Capabilities,
                                         kind: str) -> None:
        """Quantized indexes rescore with the original vectors, so the top hits equal the exact answer.

        Failure: the quantized index is searched without rescoring, or oversampling is ignored.
        """
        index = IndexParams(kind="auto", quantization=kind, rescore=True, oversampling=4.0)
        spec = self.spec(self.name(), similarity="cosine", sparse=False, index=index)
        if kind not in caps.quantization:
            with pytest.raises(CapabilityError):
                db.ensure_collection(spec)
            return
        self.both(db, ref, spec, make_records(sparse=False))
        q = HybridQuery(dense=_query_vector("float32", DIM, 2), limit=5)
        assert_same_hits(db.query(spec.name, q), ref.query(spec.name, replace(q, limit=15)), rel=1e-3,
                         abs_=1e-3, limit=5)
        assert db.describe(spec.name).dense[0].index.quantization == kind

    def test_matryoshka_two_stage(self, db: Adapter, ref: MemoryAdapter, caps: Capabilities) -> None:
        """Prefix search then full rescore equals the reference's two stages. Failure: the prefix vector is not written or candidate limits are ignored."""
        spec = self.spec(self.name(), dim=DIM, matryoshka=8, sparse=False)
        if not caps.matryoshka:
            with pytest.raises(CapabilityError):
                db.ensure_collection(spec)
            return
        self.both(db, ref, spec, make_records(sparse=False))
        for cand in (5, 20, N_DOCS):
            q = HybridQuery(dense=_query_vector("float32", DIM, 3), limit=5,
                            candidate_limits={"prefix": cand, "dense": cand})
            got, want = db.query(spec.name, q), ref.query(spec.name, q)  # same limit: it sets the stages
            assert_same_hits(got, want, rel=self.score_rel, abs_=self.score_abs)
        full = ref.query(spec.name, HybridQuery(dense=_query_vector("float32", DIM, 3), limit=5,
                                                 candidate_limits={"prefix": N_DOCS}))
        assert [h.id for h in got] == [h.id for h in full]  # with every candidate: the exact ranking

    def test_matryoshka_in_a_hybrid_query(self, db: Adapter, ref: MemoryAdapter, caps: Capabilities) -> None:
        """The prefix stage also feeds the dense leg of a fused query (Qdrant nested prefetch, Milvus pk filter).

        Failure: the dense leg of the fused query skips the prefix stage or the filter.
        """
        if not (caps.matryoshka and caps.sparse and FusionMethod.RRF in caps.fusions):
            # whichever piece is missing, the store must say so instead of answering something else
            q = HybridQuery(dense=np.ones(DIM, dtype=np.float32), sparse=SparseVector((1,), (1.0,)), limit=5)
            with pytest.raises(CapabilityError):
                spec = self.spec(self.name(), dim=DIM, matryoshka=8, sparse=caps.sparse)
                db.ensure_collection(spec)
                db.query(spec.name, q)
            return
        spec = self.spec(self.name(), dim=DIM, matryoshka=8)
        records = make_records()
        self.both(db, ref, spec, records)
        target = records[7]
        q = HybridQuery(dense=np.asarray(target.vectors["dense"]) + 0.01, sparse=target.sparse["sparse"], limit=5,
                        filter=Range("year", gte=2000), candidate_limits={"prefix": 30, "dense": 10, "sparse": 10})
        got, want = db.query(spec.name, q), ref.query(spec.name, q)
        assert got[0].id == want[0].id == target.id
        assert {h.id for h in got} <= {h.id for h in ref.query(spec.name, replace(q, limit=20))}

    # ---- sparse and hybrid ---------------------------------------------------------------------
    @pytest.mark.parametrize("idf", [False, True])
    def test_sparse_matches_reference(self, db: Adapter, ref: MemoryAdapter, caps: Capabilities,
                                      idf: bool) -> None:
        """Sparse dot product (and IDF when claimed) equals the reference. Failure: sparse indices/values are mangled or the IDF modifier differs."""
        spec = self.spec(self.name(), idf=idf)
        if not caps.sparse or (idf and not caps.sparse_idf):
            with pytest.raises(CapabilityError):
                db.ensure_collection(spec)
            return
        records = make_records()
        self.both(db, ref, spec, records)
        for i in (0, 5, 11):
            q = HybridQuery(sparse=records[i].sparse["sparse"], limit=10)
            got, want = db.query(spec.name, q), ref.query(spec.name, replace(q, limit=20))
            assert got[0].id == records[i].id
            assert_same_hits(got, want, rel=1e-4, abs_=1e-4, limit=10)

    @pytest.mark.parametrize("method", list(FusionMethod))
    def test_hybrid_fusion(self, db: Adapter, caps: Capabilities, method: FusionMethod) -> None:
        """A native fused query puts the doc first in both legs first and agrees with RRF. Failure: the fusion name mapping or the per-leg limits are wrong."""
        spec = self.spec(self.name(), sparse=caps.sparse)
        db.ensure_collection(spec)
        records = make_records(sparse=caps.sparse)
        db.upsert(spec.name, records)
        target = records[4]
        dense_q = np.asarray(target.vectors["dense"]) + 0.05
        sparse_q = target.sparse["sparse"] if caps.sparse else None
        q = HybridQuery(dense=dense_q, sparse=sparse_q, text=None if caps.sparse else target.text,
                        fusion=Fusion(method=method, k=caps.rrf_k or 60), limit=10,
                        candidate_limits={"dense": 20, "sparse": 20})
        if not caps.sparse and not caps.text_leg:
            pytest.skip("no second leg (neither sparse vectors nor a text leg) to fuse")
        if method not in caps.fusions:
            with pytest.raises(CapabilityError):
                db.query(spec.name, q)
            return
        got = db.query(spec.name, q)
        assert 0 < len(got) <= 10 and len({h.id for h in got}) == len(got)
        assert all(got[i].score >= got[i + 1].score - 1e-12 for i in range(len(got) - 1))
        assert got[0].id == target.id  # first in both legs -> first under any fusion
        if method is FusionMethod.RRF and caps.sparse:
            legs = {
                "dense": [h.id for h in db.query(spec.name, HybridQuery(dense=dense_q, limit=20))],
                "sparse": [h.id for h in db.query(spec.name, HybridQuery(sparse=sparse_q, limit=20))],
            }
            want = rrf_fuse(legs, k=caps.rrf_k or 60, limit=10)
            assert [h.id for h in got[:3]] == [i for i, _ in want[:3]] or {h.id for h in got[:3]} == {
                i for i, _ in want[:3]}
            assert {h.id for h in got} <= set(legs["dense"]) | set(legs["sparse"])

    def test_text_leg_capability(self, db: Adapter, caps: Capabilities) -> None:
        """A text (BM25) leg works when claimed and is refused when not. Failure: Capabilities.text_leg disagrees with the engine."""
        spec = self.spec(self.name(), sparse=self.sparse_ok(caps))
        db.ensure_collection(spec)
        records = make_records(sparse=self.sparse_ok(caps))
        db.upsert(spec.name, records)
        q = HybridQuery(text="document 17 about", limit=5)
        if not caps.text_leg:
            with pytest.raises(CapabilityError):
                db.query(spec.name, q)
            return
        assert db.query(spec.name, q)

    # ---- aliases -------------------------------------------------------------------------------
    def test_aliases_blue_green(self, db: Adapter, caps: Capabilities) -> None:
        """Aliases resolve for every call and switch atomically. Failure: _read_spec does not follow aliases or _switch_alias is not implemented."""
        blue, green, alias = self.name(), self.name(), self.name()
        for n in (blue, green):
            db.ensure_collection(self.spec(n, sparse=self.sparse_ok(caps)))
        if not caps.aliases:
            with pytest.raises(CapabilityError):
                db.create_alias(alias, blue)
            return
        db.upsert(blue, make_records(10, sparse=self.sparse_ok(caps)))
        db.upsert(green, make_records(20, seed=99, sparse=self.sparse_ok(caps)))
        db.create_alias(alias, blue)
        db.create_alias(alias, blue)  # idempotent: a retry whose first answer was lost succeeds
        assert db.count(alias) == 10
        assert db.describe(alias).name == blue
        q = HybridQuery(dense=_query_vector("float32", DIM, 5), limit=3)
        assert [h.id for h in db.query(alias, q)] == [h.id for h in db.query(blue, q)]
        db.switch_alias(alias, green)
        assert db.count(alias) == 20
        assert [h.id for h in db.query(alias, q)] == [h.id for h in db.query(green, q)]
        with pytest.raises(InputError, match="already exists"):
            db.create_alias(alias, blue)  # pointing elsewhere: refused, switch_alias moves it
        with pytest.raises(InputError):
            db.create_alias(blue, green)  # a collection's name is not an alias to re-use
        assert db.delete_alias(alias) is True
        with pytest.raises(CollectionNotFoundError):
            db.count(alias)
        assert db.count(green) == 20 and db.count(blue) == 10
        with pytest.raises(CollectionNotFoundError):
            db.create_alias(alias, "rf_no_such_collection")

    # ---- listing -------------------------------------------------------------------------------
    def create_foreign(self, db: Adapter, name: str) -> Callable[[], None] | None:
        """Create a collection ``name`` with the driver itself (no stored spec); return what removes it.

        Override in a database's test module; the default (``None``) skips that part of the listing test.
        """
        return None

    def test_list_collections(self, db: Adapter, caps: Capabilities) -> None:
        """The SDK's collections are listed with their specs and the aliases that resolve to them; a
        collection made with the driver is not. Failure: _list_names misses a collection or returns an
        alias, _list_aliases loses a target, or _read_spec takes a foreign collection for the SDK's."""
        sp = self.sparse_ok(caps)
        blue, green, alias, foreign = self.name(), self.name(), self.name(), self.name()
        for n in (blue, green):
            db.ensure_collection(self.spec(n, sparse=sp))
        if caps.aliases:
            db.create_alias(alias, blue)
        remove = self.create_foreign(db, foreign)
        try:
            infos = db.list_collections()
        finally:
            if remove is not None:
                remove()
        listed = {info.name: info for info in infos}
        assert [info.name for info in infos] == sorted(listed), "not sorted by name, or a name twice"
        assert {blue, green} <= set(listed), f"missing from {sorted(listed)}"
        assert alias not in listed and foreign not in listed and foreign.capitalize() not in listed
        assert listed[blue].spec == self.spec(blue, sparse=sp) and listed[green].spec == self.spec(green, sparse=sp)
        assert listed[green].aliases == ()
        if caps.aliases:
            (shown,) = listed[blue].aliases
            assert shown.lower() == alias.lower(), shown  # Weaviate keeps aliases capitalised
            assert db.describe(shown).name == blue
            db.switch_alias(alias, green)
            listed = {info.name: info for info in db.list_collections()}
            assert listed[blue].aliases == () and len(listed[green].aliases) == 1
        assert db.drop(blue) is True
        assert blue not in {info.name for info in db.list_collections()}

    # ---- the metadata guard --------------------------------------------------------------------
    def test_metadata_guard(self, db: Adapter, caps: Capabilities) -> None:
        """A spec other than the stored one is refused before anything is written. Failure: the adapter does not store the spec JSON in the database."""
        sp = self.sparse_ok(caps)
        spec = self.spec(self.name(), sparse=sp)
        db.ensure_collection(spec)
        db.upsert(spec.name, make_records(5, sparse=sp))
        wider = self.spec(spec.name, dim=DIM * 2, sparse=sp)
        other_metric = self.spec(spec.name, similarity="dot", sparse=sp)
        other_encoder = self.spec(spec.name, encoder="enc-v2", sparse=sp)
        for bad, err in ((wider, DimensionMismatchError), (other_metric, SimilarityMismatchError),
                         (other_encoder, SchemaMismatchError)):
            with pytest.raises(err) as info:
                db.ensure_collection(bad)
            assert "enc-v2" in str(info.value) or "dim" in str(info.value) or "similarity" in str(info.value)
            with pytest.raises(err):
                db.upsert(spec.name, make_records(3, seed=5, sparse=sp), expect=bad)
            with pytest.raises(err):
                db.query(spec.name, HybridQuery(dense=_query_vector("float32", DIM, 0)), expect=bad)
        assert db.count(spec.name) == 5  # nothing was written
        assert db.describe(spec.name) == spec
        with pytest.raises(DimensionMismatchError):
            db.upsert(spec.name, make_records(3, dim=DIM + 1, seed=5, sparse=sp))
        with pytest.raises(DimensionMismatchError):
            db.query(spec.name, HybridQuery(dense=np.ones(DIM - 1)))
        assert db.count(spec.name) == 5

    # ---- bad input -----------------------------------------------------------------------------
    @pytest.mark.parametrize("bad", HOSTILE_NAMES)
    def test_hostile_names_are_refused(self, db: Adapter, bad: str) -> None:
        """Names that could inject into a query language are refused. Failure: the adapter bypasses check_name on some entry point."""
        with pytest.raises(InputError):
            db.ensure_collection(self.spec(bad))
        with pytest.raises(InputError):
            CollectionSpec("ok", dense=(DenseField(bad, 4),))
        with pytest.raises(InputError):
            db.count(bad)
        with pytest.raises(InputError):
            db.query(bad, HybridQuery(dense=np.ones(4)))
        with pytest.raises(InputError):
            db.drop(bad)

    def test_bad_vectors_write_nothing(self, db: Adapter, caps: Capabilities) -> None:
        """Invalid records fail validation before the first batch. Failure: the adapter writes in upsert() instead of the _upsert_batch hook."""
        sp = self.sparse_ok(caps)
        spec = self.spec(self.name(), sparse=sp)
        db.ensure_collection(spec)
        good = make_records(4, sparse=sp)
        nan = np.full(DIM, np.nan, dtype=np.float64)
        inf = np.ones(DIM) * np.inf
        cases: list[Callable[[], Record]] = [
            lambda: Record("bad", {"dense": nan}, good[0].sparse),
            lambda: Record("bad", {"dense": inf}, good[0].sparse),
            lambda: Record("bad", {"dense": np.ones(DIM), "unknown": np.ones(3)}, good[0].sparse),
            lambda: Record("bad", {}, good[0].sparse),
            lambda: Record("bad", {"dense": np.ones((2, DIM))}, good[0].sparse),
            lambda: Record("bad", {"dense": np.array(["a"] * DIM)}, good[0].sparse),
            lambda: Record("bad", {"dense": np.ones(DIM)}, good[0].sparse, None, {"year": "2001"}),
            lambda: Record("bad", {"dense": np.ones(DIM)}, good[0].sparse, None, {"x": math.nan}),
            lambda: Record("bad", {"dense": np.ones(DIM)}, good[0].sparse, None, {"x": object()}),
            lambda: Record("bad", {"dense": np.ones(DIM)}, good[0].sparse, None,
                           {"blob": "x" * (caps.max_payload_bytes + 10)}),
            lambda: Record("bad", {"dense": np.ones(DIM)}, good[0].sparse, "t" * (caps.max_text_bytes + 1)),
        ]
        for make in cases:
            with pytest.raises(InputError):
                db.upsert(spec.name, [*good, make()])
        assert db.count(spec.name) == 0  # validation happens before the first batch
        with pytest.raises(InputError):
            db.query(spec.name, HybridQuery(dense=np.ones(DIM), dense_field="nope"))
        with pytest.raises(InputError):
            db.get(spec.name, [""])

    def test_empty_and_hostile_payloads_round_trip(self, db: Adapter, caps: Capabilities) -> None:
        """Empty and hostile payloads are stored verbatim. Failure: string building instead of parameters/driver quoting."""
        sp = self.sparse_ok(caps)
        spec = self.spec(self.name(), sparse=sp)
        db.ensure_collection(spec)
        base = make_records(3, sparse=sp)
        hostile = {"kind": 'x"; DROP TABLE t; --', "note": "' OR 1=1 --", "q": "{ Get { x } }", "u": "名前\n\t\\"}
        recs = [Record(base[0].id, base[0].vectors, base[0].sparse, None, {}),
                Record(base[1].id, base[1].vectors, base[1].sparse, "", {}),
                Record(base[2].id, base[2].vectors, base[2].sparse, "'; DROP TABLE t; --", hostile)]
        db.upsert(spec.name, recs)
        got = {r.id: r for r in db.get(spec.name, [r.id for r in recs])}
        assert dict(got[base[0].id].metadata) == {} and got[base[0].id].text is None
        assert dict(got[base[2].id].metadata) == hostile and got[base[2].id].text == "'; DROP TABLE t; --"
        assert db.count(spec.name, Eq("kind", hostile["kind"])) == 1
        assert db.count(spec.name, Eq("kind", "x")) == 0
        assert db.count(spec.name) == 3

    # ---- faults --------------------------------------------------------------------------------
    @staticmethod
    def faulty_upserts(db: Adapter, monkeypatch: pytest.MonkeyPatch, fails: Callable[[int], bool],
                       keep: Callable[[list[Any]], list[Any]], error: Exception) -> dict[str, int]:
        """Make the ``fails(n)``-th ``_upsert_batch`` call write only ``keep(batch)``, then raise ``error``."""
        real = db._upsert_batch
        calls = {"n": 0}

        def faulty(s, name, batch):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if fails(calls["n"]):
                real(s, name, keep(batch))
                raise error
            return real(s, name, batch)

        monkeypatch.setattr(db, "_upsert_batch", faulty)
        return calls

    def test_transient_failure_mid_batch_is_retried(self, db: Adapter, caps: Capabilities,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
        """The engine dies half-way through batch 2 (half written); the retry leaves one copy each.

        Failure: _translate does not map the driver's transient error to TransientAdapterError.
        """
        sp = self.sparse_ok(caps)
        spec = self.spec(self.name(), sparse=sp)
        db.ensure_collection(spec)
        calls = self.faulty_upserts(db, monkeypatch, lambda n: n == 2, lambda b: b[: len(b) // 2],
                                    ConnectionResetError(104, "Connection reset by peer"))
        records = make_records(40, sparse=sp)
        assert db.upsert(spec.name, records, batch_size=10) == 40
        assert calls["n"] == 5 and db.count(spec.name) == 40

    def test_failed_upsert_rerun_leaves_one_copy(self, db: Adapter, caps: Capabilities,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
        """A non-transient failure is not retried and a re-run completes the write exactly.

        Failure: _translate marks every error transient, or storage ids are not deterministic.
        """
        sp = self.sparse_ok(caps)
        spec = self.spec(self.name(), sparse=sp)
        db.ensure_collection(spec)
        calls = self.faulty_upserts(db, monkeypatch, lambda n: n >= 3, lambda b: b[:3], RuntimeError("engine stopped"))
        records = make_records(50, sparse=sp)
        with pytest.raises(AdapterError) as info:
            db.upsert(spec.name, records, batch_size=10)
        assert isinstance(info.value.__cause__, RuntimeError)
        assert calls["n"] == 3  # not transient: not retried
        assert db.count(spec.name) == 23
        monkeypatch.undo()  # the engine is back
        db.upsert(spec.name, records, batch_size=10)
        assert db.count(spec.name) == 50
        assert sorted(r.id for r in db.get(spec.name, [r.id for r in records])) == sorted(r.id for r in records)
