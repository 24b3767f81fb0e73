"""The Milvus mapping table: SDK storage types, similarities and indexes -> Milvus field types and indexes.

| SDK | Milvus |
|---|---|
| float32 / int8 (exact as float) | FLOAT_VECTOR |
| float16 | FLOAT16_VECTOR |
| binary (hamming, jaccard) | BINARY_VECTOR, BIN_FLAT / BIN_IVF_FLAT |
| cosine / dot / euclidean | COSINE / IP / L2 (L2 is reported squared) |
| manhattan | none: CapabilityError |
| sparse dot | SPARSE_FLOAT_VECTOR, SPARSE_INVERTED_INDEX, IP |
| Matryoshka | a separate prefix vector field, searched first; the full field rescores (``pk in [...]``) |
| hybrid | hybrid_search with RRFRanker(k) / WeightedRanker(weights) |

Milvus Lite 2.5.1 (the embedded real engine) has FLAT / IVF_FLAT / AUTOINDEX only, no native
aliases (the adapter emulates them: ``adapters.milvus._aliases``) and no index quantization; a
Milvus server adds HNSW and native aliases.
"""

from __future__ import annotations

from typing import Any

from pymilvus import DataType

from adapters.milvus._aliases import REGISTRY
from sdk.core.capabilities import Capabilities
from sdk.core.similarity import DistanceKind, Similarity, distance_to_score
from sdk.core.spec import DenseField
from sdk.core.types import FusionMethod

__all__ = ["METRIC", "capabilities", "index_for", "score", "search_params", "vector_type"]

METRIC = {Similarity.COSINE: "COSINE", Similarity.DOT: "IP", Similarity.EUCLIDEAN: "L2",
          Similarity.HAMMING: "HAMMING", Similarity.JACCARD: "JACCARD"}
_FLOAT = frozenset({Similarity.COSINE, Similarity.DOT, Similarity.EUCLIDEAN})


def capabilities(lite: bool) -> Capabilities:
    return Capabilities(
        name="milvus lite" if lite else "milvus",
        similarities={"float32": _FLOAT, "float16": _FLOAT, "int8": _FLOAT,
                 "binary": frozenset({Similarity.HAMMING, Similarity.JACCARD})},
        sparse=True,
        sparse_idf=False,  # IDF exists only for Milvus' own BM25 function, not user sparse vectors
        fusions=frozenset({FusionMethod.RRF, FusionMethod.WEIGHTED}),
        aliases=True,  # native on a server, emulated by a registry collection on Lite
        matryoshka=True,
        quantization=frozenset(),  # IVF_SQ8 / IVF_PQ have no rescoring: not offered (no silent loss)
        index_kinds=frozenset({"auto", "flat", "ivf_flat"} | (set() if lite else {"hnsw"})),
        max_payload_bytes=60_000,  # Milvus JSON fields hold at most 64 KiB
        max_text_bytes=65_535,
        max_id_bytes=65_535,  # doc_id is a VARCHAR(65535) column (adapters.milvus.adapter._create)
        reserved_names=frozenset({REGISTRY} if lite else ()),  # the emulated aliases' registry collection
        sparse_negative=False,  # "Invalid sparse row: negative value" (SPARSE_INVERTED_INDEX)
        max_limit=16_384,  # "Topk should be in range [1, 16384]"
        rrf_weights=False,  # RRFRanker(k) has no per-leg weights; WeightedRanker does
        emulated=frozenset({"aliases"} if lite else ()),
    )


def vector_type(f: DenseField) -> DataType:
    return {"float16": DataType.FLOAT16_VECTOR, "binary": DataType.BINARY_VECTOR}.get(
        f.storage, DataType.FLOAT_VECTOR)


def index_for(f: DenseField, lite: bool) -> tuple[str, dict[str, Any]]:
    """(index_type, params) for a dense field."""
    binary = f.storage == "binary"
    kind = f.index.kind
    if kind == "ivf_flat" and f.storage != "float16":
        return ("BIN_IVF_FLAT" if binary else "IVF_FLAT"), {"nlist": f.index.nlist}
    if kind == "hnsw" and not lite:
        return "HNSW", {"M": f.index.m, "efConstruction": f.index.ef_construct}
    if kind == "auto" and not lite and not binary:
        return "AUTOINDEX", {}
    return ("BIN_FLAT" if binary else "FLAT"), {}


def search_params(f: DenseField) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if f.index.kind == "ivf_flat":
        params["nprobe"] = f.index.nprobe
    if f.index.kind == "hnsw":
        params["ef"] = f.index.ef_search or 64
    return {"metric_type": METRIC[f.similarity], "params": params}


def score(f: DenseField | None, raw: float) -> float:
    """Milvus' ``distance`` -> the SDK's higher-is-better score."""
    if f is None or f.similarity in (Similarity.COSINE, Similarity.DOT):
        return float(raw)
    if f.similarity is Similarity.EUCLIDEAN:
        return distance_to_score(raw, DistanceKind.SQUARED_DISTANCE)
    return distance_to_score(raw, DistanceKind.DISTANCE)
