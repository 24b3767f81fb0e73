"""Weaviate adapter on a real Weaviate server: the shared conformance suite plus Weaviate specifics.

The specifics are what Weaviate rewrites or refuses on its own: class and property names, the
distance and compression it stores per named vector, and objects a batch rejects.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from adapters import connect
from adapters.base import CollectionSpec, DenseField, IndexParams, PayloadField, SparseField, point_id
from adapters.testing import AdapterConformance
from adapters.weaviate import WeaviateAdapter
from sdk.core.errors import AdapterError, CapabilityError, InputError
from sdk.core.types import Eq, Fusion, FusionMethod, HybridQuery, Record, SparseVector


@pytest.fixture
def wv(weaviate_url: str) -> Iterator[WeaviateAdapter]:
    adapter = WeaviateAdapter.from_url(weaviate_url)
    try:
        yield adapter
    finally:
        adapter.close()


class TestWeaviateConformance(AdapterConformance):
    @pytest.fixture
    def adapter(self, wv: WeaviateAdapter) -> Iterator[WeaviateAdapter]:
        yield wv

    def create_foreign(self, db: WeaviateAdapter, name: str) -> Callable[[], None]:
        cls = name[0].upper() + name[1:]
        db._client.collections.create(cls, description="made with weaviate-client, not the SDK")
        return lambda: db._client.collections.delete(cls)


def _name() -> str:
    return f"rf_wv_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def cleanup(wv: WeaviateAdapter) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for n in names:
        wv.drop(n)


def _config(wv: WeaviateAdapter, name: str) -> object:
    return wv._client.collections.get(name[0].upper() + name[1:]).config.get()


def test_connect_url_gives_weaviate(weaviate_url: str) -> None:
    with connect(weaviate_url) as adapter:
        assert isinstance(adapter, WeaviateAdapter)
        assert adapter.capabilities.name == "weaviate"
        assert not adapter.capabilities.sparse and adapter.capabilities.text_leg


@pytest.mark.parametrize(
    ("field", "distance", "quantizer"),
    [
        (DenseField("dense", 8, "cosine"), "cosine", None),
        (DenseField("dense", 8, "dot", index=IndexParams(quantization="binary")), "dot", "_BQConfig"),
        (DenseField("dense", 8, "euclidean", index=IndexParams(quantization="int8")), "l2-squared", "_SQConfig"),
        (DenseField("dense", 8, "manhattan", index=IndexParams(quantization="pq")), "manhattan", "_PQConfig"),
        (DenseField("dense", 16, "hamming", "binary"), "hamming", None),
    ],
    ids=["cosine", "dot-bq", "l2-sq", "l1-pq", "hamming"],
)
def test_emitted_vector_config(wv: WeaviateAdapter, cleanup: list[str], field: DenseField, distance: str,
                               quantizer: str | None) -> None:
    name = _name()
    cleanup.append(name)
    wv.ensure_collection(CollectionSpec(name, dense=(field,)))
    cfg = _config(wv, name)
    index = cfg.vector_config["dense"].vector_index_config  # type: ignore[attr-defined]
    assert index.distance_metric.value == distance
    assert (type(index.quantizer).__name__ if index.quantizer else None) == quantizer
    assert index.max_connections == field.index.m and index.ef_construction == field.index.ef_construct


def test_matryoshka_prefix_is_its_own_named_vector(wv: WeaviateAdapter, cleanup: list[str]) -> None:
    name = _name()
    cleanup.append(name)
    wv.ensure_collection(CollectionSpec(name, dense=(DenseField("dense", 16, "dot", matryoshka_dim=4),)))
    cfg = _config(wv, name)
    assert set(cfg.vector_config) == {"dense", "dense__mrl4"}  # type: ignore[attr-defined]
    wv.upsert(name, [Record("a", {"dense": np.arange(16, dtype=np.float32)})])
    (rec,) = wv._get(wv.describe(name), name, [point_id("a")])
    np.testing.assert_array_equal(rec.dense["dense__mrl4"], np.arange(4, dtype=np.float32))


def test_collection_description_records_what_wrote_it(wv: WeaviateAdapter, cleanup: list[str]) -> None:
    name = _name()
    cleanup.append(name)
    spec = CollectionSpec(name, dense=(DenseField("dense", 8, "dot", "int8"),), encoder="minilm@abc",
                          calibration={"dense": ((-1.0,) * 8, (1.0,) * 8)})
    wv.ensure_collection(spec)
    meta = json.loads(_config(wv, name).description)  # type: ignore[attr-defined]
    assert CollectionSpec.from_dict(meta["spec"]) == spec
    assert "weaviate" in meta["written_by"] and meta["spec"]["encoder"] == "minilm@abc"


def test_sparse_is_a_capability_error(wv: WeaviateAdapter, cleanup: list[str]) -> None:
    name = _name()
    with pytest.raises(CapabilityError):
        wv.ensure_collection(CollectionSpec(name, dense=(DenseField("dense", 4),), sparse=(SparseField("sparse"),)))
    assert not wv.exists(name)
    cleanup.append(name)
    wv.ensure_collection(CollectionSpec(name, dense=(DenseField("dense", 4),)))
    with pytest.raises(CapabilityError, match="BM25"):
        wv.query(name, HybridQuery(sparse=SparseVector((1, 2), (0.5, 0.5))))
    with pytest.raises(CapabilityError):
        wv.query(name, HybridQuery(dense=np.ones(4), text="x", fusion=Fusion(k=10)))  # rankedFusion's k is 60
    with pytest.raises(CapabilityError):
        wv.query(name, HybridQuery(dense=np.ones(4), text="x", fusion=Fusion(method=FusionMethod.DBSF)))


def test_names_weaviate_would_merge_are_refused(wv: WeaviateAdapter) -> None:
    for payload in ((PayloadField("Kind"), PayloadField("kind")), (PayloadField("Text"),), (PayloadField("Doc_id"),)):
        name = _name()
        with pytest.raises(CapabilityError, match="lower-cases"):
            wv.ensure_collection(CollectionSpec(name, dense=(DenseField("dense", 4),), payload=payload))
        assert not wv.exists(name)


def test_capitalised_twin_name_is_refused(wv: WeaviateAdapter, cleanup: list[str]) -> None:
    name = _name()
    cleanup.append(name)
    wv.ensure_collection(CollectionSpec(name, dense=(DenseField("dense", 4),)))
    twin = name[0].upper() + name[1:]
    with pytest.raises(InputError, match="capitalises"):
        wv.ensure_collection(CollectionSpec(twin, dense=(DenseField("dense", 4),)))


def test_hybrid_bm25_and_dense_fuse_natively(wv: WeaviateAdapter, cleanup: list[str]) -> None:
    name = _name()
    cleanup.append(name)
    wv.ensure_collection(CollectionSpec(name, dense=(DenseField("dense", 4, "cosine"),), payload=(PayloadField("kind"),)))
    texts = ["apples and pears", "the quick brown fox", "graphql { Get { Thing } }", "pears pears pears"]
    rng = np.random.default_rng(1)
    wv.upsert(name, [Record(f"d{i}", {"dense": rng.normal(size=4)}, text=t, metadata={"kind": "k" if i % 2 else "j"})
                     for i, t in enumerate(texts)])
    assert wv.query(name, HybridQuery(text="pears", limit=2))[0].id == "d3"
    for method in (FusionMethod.RRF, FusionMethod.RELATIVE_SCORE):
        hits = wv.query(name, HybridQuery(dense=np.ones(4), text="quick fox", fusion=Fusion(method=method, k=59), limit=4))
        assert "d1" in {h.id for h in hits[:2]} and "fused" in hits[0].scores_by_stage
    hits = wv.query(name, HybridQuery(dense=np.ones(4), text="pears", filter=Eq("kind", "k"),
                                     fusion=Fusion(k=59), limit=4))
    assert {h.id for h in hits} <= {"d1", "d3"}
    for value in ('x"} } { Get { Thing', "{ Get { Thing } }", "' OR 1=1 --"):  # inert: a gRPC value
        assert wv.count(name, Eq("kind", value)) == 0
    assert wv.query(name, HybridQuery(text="{ Get { Thing } }", limit=1))[0].id == "d2"


def test_refused_objects_raise_instead_of_vanishing(wv: WeaviateAdapter, cleanup: list[str]) -> None:
    """Weaviate refuses vectors whose length differs from the index's; the batch must fail loudly."""
    name = _name()
    cleanup.append(name)
    wv.ensure_collection(CollectionSpec(name, dense=(DenseField("dense", 8),)))
    raw = wv._client.collections.get(name[0].upper() + name[1:])
    raw.data.insert(properties={"doc_id": "raw"}, vector={"dense": [0.1] * 5}, uuid=uuid.uuid4())  # width 5 first
    records = [Record(f"d{i}", {"dense": np.ones(8) + i}) for i in range(3)]
    with pytest.raises(AdapterError, match=r"refused|failed"):
        wv.upsert(name, records)


def test_alias_uses_weaviate_alias_api(wv: WeaviateAdapter, cleanup: list[str]) -> None:
    blue, green, alias = _name(), _name(), _name()
    cleanup.extend([blue, green])
    for n in (blue, green):
        wv.ensure_collection(CollectionSpec(n, dense=(DenseField("dense", 4),)))
    wv.create_alias(alias, blue)
    cls = alias[0].upper() + alias[1:]
    assert wv._client.alias.get(alias_name=cls).collection == blue[0].upper() + blue[1:]
    wv.switch_alias(alias, green)
    assert wv._client.alias.get(alias_name=cls).collection == green[0].upper() + green[1:]
    with pytest.raises(InputError, match="already exists"):
        wv.create_alias(alias, blue)
    wv.drop(green)  # dropping the target removes its aliases too
    assert wv._client.alias.get(alias_name=cls) is None
