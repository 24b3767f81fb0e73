"""Qdrant adapter: the conformance suite, plus the emitted index configuration on the real engine.

The suite runs on local mode unless ``SDK_TEST_QDRANT_URL`` names a server. Local mode is an exact
emulation that accepts quantization, HNSW and float16 settings and ignores them, so the second part
takes the exact ``VectorParams`` / ``SearchParams`` that ``adapters.qdrant._mapping`` builds, gives
them to the real Qdrant engine in process (``qdrant-edge-py``), builds the indexes (``optimize``)
and checks the searches (rescored scores exact; int8 exact ranking; binary/PQ recall). What only a
Qdrant server shows (payload indexes, RrfQuery k over the wire, collection metadata persistence on
a server) needs ``SDK_TEST_QDRANT_URL``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import models

from adapters import connect
from adapters.base import Adapter
from adapters.memory import MemoryAdapter
from adapters.qdrant._mapping import score, search_params, vector_params
from adapters.testing import AdapterConformance
from sdk.core.similarity import Similarity
from sdk.core.spec import CollectionSpec, DenseField, IndexParams
from sdk.core.types import HybridQuery, Record


class TestQdrantConformance(AdapterConformance):
    @pytest.fixture
    def adapter(self, qdrant_url: str) -> Iterator[Adapter]:
        with connect(qdrant_url) as adapter:
            yield adapter

    def create_foreign(self, db: Any, name: str) -> Any:
        db._client.create_collection(name, vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
        return lambda: db._client.delete_collection(name)


# ---- the emitted configuration on the real engine (qdrant-edge-py) ------------------------------

DIST = {models.Distance.COSINE: "Cosine", models.Distance.DOT: "Dot", models.Distance.EUCLID: "Euclid",
        models.Distance.MANHATTAN: "Manhattan"}


def edge_vector_params(qe: Any, p: models.VectorParams) -> Any:
    """qdrant-client ``VectorParams`` -> the engine's ``EdgeVectorParams``, field by field."""
    quant = None
    qc = p.quantization_config
    if isinstance(qc, models.ScalarQuantization):
        quant = qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=qc.scalar.quantile,
                                            always_ram=qc.scalar.always_ram)
    elif isinstance(qc, models.BinaryQuantization):
        quant = qe.BinaryQuantizationConfig(always_ram=qc.binary.always_ram)
    elif isinstance(qc, models.ProductQuantization):
        quant = qe.ProductQuantizationConfig(compression=getattr(qe.CompressionRatio, qc.product.compression.name),
                                             always_ram=qc.product.always_ram)
    hnsw = None
    if p.hnsw_config is not None:
        hnsw = qe.HnswIndexConfig(m=p.hnsw_config.m if p.hnsw_config.m is not None else 16,
                                  ef_construct=p.hnsw_config.ef_construct or 100, full_scan_threshold=1)
    dtype = {models.Datatype.FLOAT32: qe.VectorStorageDatatype.Float32,
             models.Datatype.FLOAT16: qe.VectorStorageDatatype.Float16}[p.datatype]
    return qe.EdgeVectorParams(size=p.size, distance=getattr(qe.Distance, DIST[p.distance]), datatype=dtype,
                               quantization_config=quant, hnsw_config=hnsw)


def edge_search_params(qe: Any, p: models.SearchParams | None) -> Any:
    if p is None:
        return None
    quant = None
    if p.quantization is not None:
        quant = qe.QuantizationSearchParams(rescore=p.quantization.rescore, oversampling=p.quantization.oversampling)
    return qe.SearchParams(hnsw_ef=p.hnsw_ef or 128, quantization=quant)


def _records(n: int, dim: int) -> list[Record]:
    rng = np.random.default_rng(11)
    return [Record(f"d{i}", {"dense": rng.normal(size=dim).astype(np.float32)}) for i in range(n)]


CASES = [
    ("int8", "hnsw", "float32", "cosine"),
    ("binary", "hnsw", "float32", "cosine"),
    ("pq", "hnsw", "float32", "dot"),
    ("int8", "flat", "float32", "euclidean"),
    (None, "hnsw", "float16", "cosine"),
    (None, "hnsw", "float32", "manhattan"),
]


@pytest.mark.qdrant
@pytest.mark.parametrize(("quant", "kind", "precision", "similarity"), CASES)
def test_emitted_config_runs_on_the_real_engine(tmp_path: Path, quant: str | None, kind: str,
                                                precision: str, similarity: str) -> None:
    """The emitted config, run by the real engine (local mode, which the suite uses, ignores it)."""
    qe = pytest.importorskip("qdrant_edge", reason="pip install qdrant-edge-py==0.9.0 (the real engine in process)")
    dim, n = 256, 400
    field = DenseField("dense", dim, Similarity.parse(similarity), precision,  # type: ignore[arg-type]
                       index=IndexParams(kind=kind, quantization=quant, oversampling=4.0, ef_search=128))
    spec = CollectionSpec("edge", dense=(field,))
    params = vector_params(spec)["dense"]
    assert (params.quantization_config is None) == (quant is None)
    config = qe.EdgeConfig(vectors={"dense": edge_vector_params(qe, params)},
                           optimizers=qe.EdgeOptimizersConfig(indexing_threshold=1, default_segment_number=1))
    shard = qe.EdgeShard.create(str(tmp_path / "shard"), config)
    records = _records(n, dim)
    vecs = [np.asarray(r.vectors["dense"], dtype=np.float16 if precision == "float16" else np.float32)
            for r in records]
    shard.update(qe.UpdateOperation.upsert_points(
        [qe.Point(i, {"dense": v.astype(np.float32).tolist()}, {"doc_id": r.id})
         for i, (r, v) in enumerate(zip(records, vecs, strict=True))]))
    shard.optimize()
    assert shard.info().points_count == n
    if kind == "hnsw":
        assert shard.info().indexed_vectors_count >= n  # the HNSW (and quantized) index was really built

    ref = MemoryAdapter()
    ref.ensure_collection(spec)
    ref.upsert("edge", records)
    rng = np.random.default_rng(5)
    recalled = exact_order = 0
    for _ in range(5):
        q = rng.normal(size=dim).astype(np.float32)
        hits = shard.query(qe.QueryRequest(limit=5, query=qe.Query.Nearest(q.tolist(), using="dense"),
                                           with_payload=True, params=edge_search_params(qe, search_params(field))))
        exact = {h.id: h.score for h in ref.query("edge", HybridQuery(dense=q, limit=n))}
        top = list(exact)[:5]
        got = [h.payload["doc_id"] for h in hits]
        rel = 2e-2 if precision == "float16" else 1e-4
        for h in hits:  # rescored: every returned score is the full-precision score of that point
            assert score(field, h.score) == pytest.approx(exact[h.payload["doc_id"]], rel=rel, abs=rel)
        recalled += len(set(got) & set(top))
        exact_order += got == top
    # int8 / no quantization must be exact here; binary / PQ are lossy first passes rescored from
    # 4x candidates, so they must find most (not all) of the true top 5.
    assert recalled / 25 >= (1.0 if quant in (None, "int8") else 0.6), f"recall@5 {recalled / 25}"
    if quant in (None, "int8"):
        assert exact_order == 5
    shard.close()


@pytest.mark.qdrant
def test_adapter_over_a_client_the_caller_holds() -> None:
    """``QdrantAdapter(client=...)`` uses the caller's client and leaves it open on close()."""
    from qdrant_client import QdrantClient

    from adapters.qdrant import QdrantAdapter

    client = QdrantClient(location=":memory:")
    spec = CollectionSpec("held", dense=(DenseField("dense", 4),))
    with QdrantAdapter(client=client) as db:
        db.ensure_collection(spec)
        db.upsert("held", [Record("a", {"dense": np.ones(4)})])
    assert client.count("held").count == 1  # still open, and the point is really there
    assert client.get_collection("held").config.metadata["retrieval_forge_spec"] == spec.to_json()
    client.close()
