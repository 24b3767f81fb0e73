"""The Qdrant mapping table: SDK similarities, storage types, indexes and quantization -> Qdrant configs.

Pure functions of the spec (no client), so the configuration the adapter emits can be checked
against the real engine in process (``qdrant-edge-py``) while tests run on local mode, which
accepts but ignores quantization and HNSW settings.

| SDK | Qdrant |
|---|---|
| cosine / dot / euclidean / manhattan | COSINE / DOT / EUCLID / MANHATTAN (float32, float16 datatype; int8 as float32, exact) |
| binary + hamming | bits as 0/1 floats with EUCLID: hamming = distance^2 (+ binary quantization when asked) |
| sparse dot (+ idf) | sparse vectors (Modifier.IDF) |
| index quantization int8 / binary / pq | ScalarQuantization(INT8) / BinaryQuantization / ProductQuantization(X16), searched with rescore + oversampling |
| Matryoshka | a prefix named vector, searched in a prefetch; the full vector rescores the candidates |
| hybrid | query_points: one prefetch per leg + RrfQuery(k, weights) or FusionQuery(DBSF) |
"""

from __future__ import annotations

from qdrant_client import models

from sdk.core.capabilities import Capabilities
from sdk.core.similarity import DistanceKind, Similarity, distance_to_score
from sdk.core.spec import CollectionSpec, DenseField
from sdk.core.types import FusionMethod

__all__ = ["capabilities", "score", "search_params", "sparse_params", "vector_params"]

DISTANCE = {
    Similarity.COSINE: models.Distance.COSINE,
    Similarity.DOT: models.Distance.DOT,
    Similarity.EUCLIDEAN: models.Distance.EUCLID,
    Similarity.MANHATTAN: models.Distance.MANHATTAN,
    Similarity.HAMMING: models.Distance.EUCLID,  # over 0/1 values: squared euclid == hamming
}
DATATYPE = {"float32": models.Datatype.FLOAT32, "float16": models.Datatype.FLOAT16,
            "int8": models.Datatype.FLOAT32, "binary": models.Datatype.FLOAT32}
_FLOAT = frozenset({Similarity.COSINE, Similarity.DOT, Similarity.EUCLIDEAN, Similarity.MANHATTAN})


def capabilities(local: bool) -> Capabilities:
    """Qdrant's capabilities; local mode is an exact emulation that ignores index settings."""
    return Capabilities(
        name="qdrant (local mode)" if local else "qdrant",
        similarities={"float32": _FLOAT, "float16": _FLOAT, "int8": _FLOAT,
                 "binary": frozenset({Similarity.HAMMING})},
        sparse=True,
        sparse_idf=True,
        fusions=frozenset({FusionMethod.RRF, FusionMethod.DBSF}),
        aliases=True,
        matryoshka=True,
        quantization=frozenset({"int8", "binary", "pq"}),
        index_kinds=frozenset({"auto", "hnsw", "flat"}),
        emulated=frozenset({"quantization", "hnsw", "float16"}) if local else frozenset(),
        max_payload_bytes=65_536,
        max_text_bytes=1_048_576,
        # Qdrant weights RRF as 1 / (rank / w + k), not the SDK's w / (k + rank): weighted RRF is not native.
        rrf_weights=False,
        dbsf_weights=False,  # FusionQuery(DBSF) takes no weights
    )


def quantization_config(f: DenseField) -> models.QuantizationConfig | None:
    kind = f.index.quantization
    if kind == "int8":
        return models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
            type=models.ScalarType.INT8, quantile=0.99, always_ram=True))
    if kind == "binary":
        return models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
    if kind == "pq":
        return models.ProductQuantization(product=models.ProductQuantizationConfig(
            compression=models.CompressionRatio.X16, always_ram=True))
    return None


def hnsw_config(f: DenseField) -> models.HnswConfigDiff | None:
    if f.index.kind == "flat":
        return models.HnswConfigDiff(m=0)  # no graph: exact scan
    if f.index.kind == "hnsw":
        return models.HnswConfigDiff(m=f.index.m, ef_construct=f.index.ef_construct)
    return None


def vector_params(spec: CollectionSpec) -> dict[str, models.VectorParams]:
    """One named vector per dense field, plus one per Matryoshka prefix."""
    out: dict[str, models.VectorParams] = {}
    for f in spec.dense:
        params = dict(distance=DISTANCE[f.similarity], datatype=DATATYPE[f.storage],
                      hnsw_config=hnsw_config(f), quantization_config=quantization_config(f))
        out[f.name] = models.VectorParams(size=f.dim, **params)
        if f.prefix_name and f.matryoshka_dim:
            out[f.prefix_name] = models.VectorParams(size=f.matryoshka_dim, **params)
    return out


def sparse_params(spec: CollectionSpec) -> dict[str, models.SparseVectorParams]:
    return {s.name: models.SparseVectorParams(modifier=models.Modifier.IDF if s.idf else None)
            for s in spec.sparse}


def search_params(f: DenseField) -> models.SearchParams | None:
    """Rescore + oversampling when the field is quantized; ``hnsw_ef`` when set."""
    quant = None
    if f.index.quantization:
        quant = models.QuantizationSearchParams(rescore=f.index.rescore, oversampling=f.index.oversampling)
    if quant is None and f.index.ef_search is None:
        return None
    return models.SearchParams(hnsw_ef=f.index.ef_search, quantization=quant)


def score(f: DenseField | None, raw: float) -> float:
    """Qdrant's score -> the SDK's higher-is-better score (EUCLID/MANHATTAN report distances)."""
    if f is None or f.similarity in (Similarity.COSINE, Similarity.DOT):
        return float(raw)
    if f.similarity is Similarity.HAMMING:
        return -float(round(raw * raw))
    return distance_to_score(raw, DistanceKind.DISTANCE)
