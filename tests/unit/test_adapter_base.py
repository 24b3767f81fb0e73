"""The shared adapter machinery without any database: specs, guard, ids, retries, RRF, connect, filters."""

from __future__ import annotations

import errno
import sys
import uuid

import numpy as np
import pytest

import adapters
import sdk
from adapters.base import Capabilities, CollectionSpec, DenseField, IndexParams, PayloadField, SparseField
from adapters.guard import check_same
from adapters.ids import ID_NAMESPACE, point_id
from adapters.memory import MEMORY_CAPABILITIES
from adapters.retry import RetryPolicy, is_transient
from adapters.validate import prepare_records
from sdk.core.errors import (
    AdapterError,
    CapabilityError,
    ConfigError,
    DimensionMismatchError,
    InputError,
    MissingDependencyError,
    SchemaMismatchError,
    SimilarityMismatchError,
    TransientAdapterError,
)
from sdk.core.fusion import rrf_fuse
from sdk.core.similarity import Similarity
from sdk.core.types import And, Eq, In, Not, Or, Range, Record

FAST = RetryPolicy(attempts=3, budget_s=5.0, initial_wait_s=0.0, max_wait_s=0.0)


def spec(**kw: object) -> CollectionSpec:
    dense = DenseField("dense", int(kw.pop("dim", 8)), Similarity.parse(str(kw.pop("sim", "cosine"))))
    return CollectionSpec("c", dense=(dense,), sparse=(SparseField("sparse"),),
                          payload=(PayloadField("kind"), PayloadField("year", "int")), **kw)  # type: ignore[arg-type]


# ---- specs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ['x"; DROP TABLE t; --', "", "1a", "a" * 64, "a-b", None, "ns.c"])
def test_names_follow_the_rule_and_say_it(bad: object) -> None:
    with pytest.raises(InputError, match=r"A-Za-z_"):
        CollectionSpec(bad, dense=(DenseField("d", 4),))  # type: ignore[arg-type]


@pytest.mark.parametrize("field", [lambda: DenseField("text", 4), lambda: DenseField("a__b", 4),
                                   lambda: SparseField("metadata"), lambda: PayloadField("doc_id")])
def test_reserved_field_names(field) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="reserved"):
        field()


def test_field_rules() -> None:
    with pytest.raises(InputError, match="hamming or jaccard"):
        DenseField("b", 64, Similarity.COSINE, "binary")
    with pytest.raises(InputError, match="binary"):
        DenseField("b", 64, Similarity.HAMMING)
    with pytest.raises(InputError, match="multiple of 8"):
        DenseField("b", 63, Similarity.HAMMING, "binary")
    with pytest.raises(InputError, match="matryoshka_dim"):
        DenseField("d", 8, matryoshka_dim=8)
    with pytest.raises(InputError, match="used twice"):
        CollectionSpec("c", dense=(DenseField("x", 4),), sparse=(SparseField("x"),))
    with pytest.raises(InputError, match="at least one"):
        CollectionSpec("c")
    with pytest.raises(InputError, match="int8"):
        CollectionSpec("c", dense=(DenseField("d", 2),), calibration={"d": ((0, 0), (1, 1))})
    with pytest.raises(InputError, match="unknown quantization"):
        IndexParams(quantization="int4")


def test_spec_json_round_trip() -> None:
    s = CollectionSpec("c", dense=(DenseField("d", 4, "dot", "int8", 2, IndexParams("hnsw", quantization="int8")),
                                   DenseField("b", 16, "hamming", "binary")),
                       sparse=(SparseField("s", idf=True),), payload=(PayloadField("p", "float"),),
                       encoder="enc", calibration={"d": ((0, 0, 0, 0), (1, 1, 1, 1))})
    assert CollectionSpec.from_json(s.to_json()) == s
    assert s.renamed("c2").name == "c2" and s.renamed("c2").dense == s.dense


def test_capabilities_refuse_what_they_do_not_claim() -> None:
    caps = Capabilities("db", similarities={"float32": frozenset({Similarity.COSINE})})
    caps.check_spec(CollectionSpec("c", dense=(DenseField("d", 4),)))
    with pytest.raises(CapabilityError, match="manhattan"):
        caps.check_spec(CollectionSpec("c", dense=(DenseField("d", 4, "manhattan"),)))
    with pytest.raises(CapabilityError, match="sparse"):
        caps.check_spec(spec())
    with pytest.raises(AttributeError):
        caps.sparse = True  # type: ignore[misc]


# ---- the guard -----------------------------------------------------------------------------------
def test_guard_names_every_difference() -> None:
    stored = spec(encoder="a")
    check_same(stored, spec(encoder="a"), "c")
    with pytest.raises(DimensionMismatchError, match="dim is 8 in the collection, 16"):
        check_same(stored, spec(dim=16, encoder="a"), "c")
    with pytest.raises(SimilarityMismatchError, match="similarity"):
        check_same(stored, spec(sim="dot", encoder="a"), "c")
    with pytest.raises(SchemaMismatchError, match="encoder is 'a' in the collection, 'b'"):
        check_same(stored, spec(encoder="b"), "c")


# ---- records -------------------------------------------------------------------------------------
def test_prepare_records_normalises_and_refuses() -> None:
    s = CollectionSpec("c", dense=(DenseField("b", 16, "hamming", "binary"), DenseField("q", 4, "dot", "int8"),
                                   DenseField("h", 4, "cosine", "float16", 2)))
    bits = np.array([1, 0] * 8, dtype=np.uint8)
    rec = Record("r", {"b": np.packbits(bits), "q": np.array([-128, 0, 5, 127]), "h": np.ones(4)})
    (p,) = prepare_records(s, MEMORY_CAPABILITIES, [rec, rec])  # a repeated id is one record
    assert p.pid == point_id("r") and np.array_equal(p.dense["b"], bits)
    assert p.dense["q"].dtype == np.float32 and p.dense["h"].dtype == np.float16
    assert p.dense["h__mrl2"].shape == (2,)
    for bad in ({"b": np.ones(15), "q": np.zeros(4), "h": np.ones(4)},
                {"b": bits * 2, "q": np.zeros(4), "h": np.ones(4)},
                {"b": bits, "q": np.array([0, 0, 0, 128]), "h": np.ones(4)},
                {"b": bits, "q": np.array([0.5, 0, 0, 1]), "h": np.ones(4)},
                {"b": bits, "q": np.zeros(4), "h": np.array([1e6, 0, 0, 0])}):
        with pytest.raises(InputError):
            prepare_records(s, MEMORY_CAPABILITIES, [Record("r", bad)])


# ---- ids, retries, RRF ---------------------------------------------------------------------------
def test_point_id_is_uuid5_in_the_fixed_namespace() -> None:
    for doc in ("a", "doc-1", "名前", "x" * 5000):
        assert point_id(doc) == str(uuid.uuid5(ID_NAMESPACE, doc)) == point_id(doc)
    assert str(ID_NAMESPACE) == "6f1c2a9e-5b4d-5e8f-9a3c-7d2e1b0f4c58"  # never change: ids would move


class _Status(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


class _Rpc(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._name = name

    def code(self) -> object:
        return type("Code", (), {"name": self._name})()


@pytest.mark.parametrize(("exc", "transient"), [
    (ConnectionRefusedError(), True), (ConnectionResetError(), True), (TimeoutError(), True),
    (OSError(errno.ECONNRESET, "reset"), True), (_Status(503), True), (_Status(429), True),
    (_Rpc("UNAVAILABLE"), True), (Exception("Service Unavailable"), True),
    (Exception("HTTP 502 Bad Gateway"), True), (Exception("Unexpected Response: 503 (status code 503)"), True),
    (ValueError("dim 503 does not match 384"), False),
    (_Status(400), False), (_Rpc("INVALID_ARGUMENT"), False), (ValueError("dim mismatch"), False),
    (InputError("bad"), False), (TransientAdapterError("x"), True),
])
def test_transient_classification(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_retry_policy_retries_only_transient_within_budget() -> None:
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionResetError(104, "reset")
        return "ok"

    assert FAST.call(flaky, lambda e: AdapterError(str(e)) if not is_transient(e) else TransientAdapterError(str(e))) \
        == "ok" and calls["n"] == 3

    def broken() -> None:
        calls["n"] += 1
        raise ValueError("bad request")

    calls["n"] = 0
    with pytest.raises(AdapterError) as info:
        FAST.call(broken, lambda e: AdapterError(str(e)))
    assert calls["n"] == 1 and isinstance(info.value.__cause__, ValueError)

    def dead() -> None:
        calls["n"] += 1
        raise ConnectionRefusedError(111, "refused")

    calls["n"] = 0
    with pytest.raises(TransientAdapterError):
        FAST.call(dead, lambda e: TransientAdapterError(str(e)))
    assert calls["n"] == 3


def test_rrf_fuse() -> None:
    fused = rrf_fuse({"a": ["x", "y", "z"], "b": ["y", "x", "w"]}, k=60)
    assert [d for d, _ in fused][:2] in (["x", "y"], ["y", "x"])
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    assert [d for d, _ in rrf_fuse({"a": ["x", "y"], "b": ["y"]}, k=1)] == ["y", "x"]
    assert [d for d, _ in rrf_fuse({"a": ["x"], "b": ["y"]}, weights={"b": 2.0})] == ["y", "x"]


# ---- connect -------------------------------------------------------------------------------------
def test_connect_errors_name_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="supported schemes: .*milvus.*qdrant"):
        adapters.connect("redis://localhost:6379")
    with pytest.raises(ConfigError):
        adapters.connect("nonsense")
    # the driver is missing: the adapter's one driver check names the extra to install
    monkeypatch.setitem(sys.modules, "weaviate", None)
    for name in [m for m in sys.modules if m.startswith("adapters.weaviate")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(MissingDependencyError, match=r"retrieval-forge\[weaviate\]"):
        adapters.connect("weaviate://localhost:8080?grpc=50051")


def test_registry_finds_entry_points_and_run_time_adapters() -> None:
    from adapters.memory import MemoryAdapter
    from sdk.core import registry

    assert {"memory", "qdrant", "postgresql", "milvus+lite"} <= set(registry.schemes())
    made: list[str] = []

    class Custom(MemoryAdapter):
        @classmethod
        def from_url(cls, url: str) -> Custom:
            made.append(url)
            return cls()

    registry.register_adapter("mydb", Custom)
    try:
        assert isinstance(sdk.connect("mydb://host:1"), Custom) and made == ["mydb://host:1"]
        assert "mydb" in registry.schemes()
        registry.register_adapter("memory", lambda url: Custom())  # run time wins over the entry point
        assert isinstance(adapters.connect("memory://"), Custom)
    finally:
        registry.unregister_adapter("mydb")
        registry.unregister_adapter("memory")
    assert type(adapters.connect("memory://")) is MemoryAdapter
    with pytest.raises(ConfigError, match="unknown database URL scheme 'mydb'"):
        adapters.connect("mydb://host:1")
    for bad in ("", "a:b", "x/y", None):
        with pytest.raises(ConfigError):
            registry.register_adapter(bad, Custom)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="from_url"):
        registry.register_adapter("ok", 42)
    with pytest.raises(ConfigError, match="no host or path"):
        adapters.connect("memory://somewhere")


def test_connect_embedded_urls() -> None:
    pytest.importorskip("qdrant_client")
    from adapters.qdrant import QdrantAdapter

    with adapters.connect("qdrant+local::memory:") as db:
        assert isinstance(db, QdrantAdapter) and "hnsw" in db.capabilities.emulated
    with pytest.raises(ConfigError, match=".db"):
        adapters.connect("milvus+lite:/tmp/no-suffix")


# ---- filter translation --------------------------------------------------------------------------
def test_milvus_expressions_escape_values_and_push_negations_down() -> None:
    pytest.importorskip("pymilvus")
    from adapters.milvus._filters import MilvusFilter

    t = MilvusFilter(spec())
    hostile = 'x"; DROP TABLE t; -- \\ \n'
    assert t.translate(Eq("kind", hostile)) == '(metadata["kind"] == "x\\"; DROP TABLE t; -- \\\\ \\n")'
    assert t.translate(Not(And((Eq("kind", "a"), Range("year", gte=1, lt=3))))) == \
        '((metadata["kind"] != "a") or (metadata["year"] < 1 or metadata["year"] >= 3))'
    assert t.translate(Not(Or((In("year", (1, 2)), Not(Eq("kind", "b")))))) == \
        '((metadata["year"] not in [1, 2]) and (metadata["kind"] == "b"))'
    for bad in (Eq("nope", 1), Eq("year", "1"), Not(Eq("nope", "x")), Range("kind", gt=1)):
        with pytest.raises(InputError):
            t.translate(bad)
