"""Weaviate's mapping table: names, metrics, index and compression settings, capabilities.

Weaviate rewrites names: a collection (class) name gets an upper-case first letter and a
property name a lower-case one. Both rewrites happen here, in one place, and ``check_names``
refuses a spec whose fields would collide after the rewrite instead of letting Weaviate merge
two of them silently.
"""

from __future__ import annotations

import math
from typing import Any

from weaviate.classes.config import Configure, DataType, VectorDistances

from adapters.base import Capabilities, CollectionSpec, DenseField
from sdk.core.errors import CapabilityError
from sdk.core.similarity import DistanceKind, Similarity
from sdk.core.types import FusionMethod

__all__ = [
    "DOC_ID_PROP",
    "PAYLOAD_PROP",
    "TEXT_PROP",
    "WEAVIATE_CAPABILITIES",
    "check_names",
    "class_name",
    "distance_kind",
    "prop_name",
    "vector_index",
]

# Internal properties. ``doc_id`` and ``text`` are reserved names in CollectionSpec, and no user
# field may contain "__", so none of these can collide with a payload field.
DOC_ID_PROP = "doc_id"
TEXT_PROP = "text"
PAYLOAD_PROP = "sdk__payload"  # the whole metadata as JSON: exact round trip of any JSON value

_FLOAT = frozenset({Similarity.COSINE, Similarity.DOT, Similarity.EUCLIDEAN, Similarity.MANHATTAN})
WEAVIATE_CAPABILITIES = Capabilities(
    name="weaviate",
    # Weaviate stores float32 only: float16 and int8 values are exactly representable there, so
    # they are stored without loss (no space saving). Binary vectors are stored as 0/1 floats and
    # compared with Weaviate's hamming distance; it has no jaccard.
    similarities={"float32": _FLOAT, "float16": _FLOAT, "int8": _FLOAT, "binary": frozenset({Similarity.HAMMING})},
    sparse=False,  # no user-supplied sparse vectors: the keyword side of its hybrid is BM25 on `text`
    fusions=frozenset({FusionMethod.RRF, FusionMethod.RELATIVE_SCORE}),
    text_leg=True,
    aliases=True,
    # Matryoshka: a separate named prefix vector searched first, then the full vector re-ranks the
    # candidates in a second query restricted to their ids. Weaviate has no multi-stage query, so the
    # two stages are orchestrated by this client: listed under ``emulated``.
    matryoshka=True,
    quantization=frozenset({"int8", "binary", "pq"}),  # SQ, BQ, PQ
    index_kinds=frozenset({"auto", "flat", "hnsw"}),
    emulated=frozenset({"matryoshka"}),
    # rankedFusion's constant is fixed (1 / (60 + 0-based rank), the SDK's k=59 with 1-based ranks) and
    # each hybrid leg fetches the server's own number of candidates (100 by default), whatever
    # HybridQuery.candidate_limits says.
    rrf_k=59,
    leg_candidates=False,
    # The client sends property values as protobuf Struct numbers (doubles): a declared int field would
    # get 2**53 + 1 rounded, or 2**63 - 512 refused as out of int64. Integers exact in a double only.
    max_int=2**53 - 1,
    max_limit=10_000,  # QUERY_MAXIMUM_RESULTS, the server's default: "query maximum results exceeded"
)

_DISTANCES = {
    Similarity.COSINE: (VectorDistances.COSINE, DistanceKind.COSINE_DISTANCE),
    Similarity.DOT: (VectorDistances.DOT, DistanceKind.NEG_SIMILARITY),  # Weaviate's dot distance is -a.b
    Similarity.EUCLIDEAN: (VectorDistances.L2_SQUARED, DistanceKind.SQUARED_DISTANCE),
    Similarity.MANHATTAN: (VectorDistances.MANHATTAN, DistanceKind.DISTANCE),
    Similarity.HAMMING: (VectorDistances.HAMMING, DistanceKind.DISTANCE),
}

PAYLOAD_DATA_TYPES = {"keyword": DataType.TEXT, "int": DataType.INT, "float": DataType.NUMBER, "bool": DataType.BOOL}


def class_name(name: str) -> str:
    """Weaviate class for an SDK collection or alias name (validated by ``check_name`` already)."""
    if name[0] == "_":
        return "Sdk" + name
    return name[0].upper() + name[1:]


def prop_name(name: str) -> str:
    """Weaviate property for a payload field: Weaviate lower-cases the first letter itself."""
    return name[0].lower() + name[1:]


def check_names(spec: CollectionSpec) -> None:
    """Refuse fields that would collide once Weaviate has rewritten their names."""
    seen = {DOC_ID_PROP: "internal doc_id", TEXT_PROP: "internal text", PAYLOAD_PROP: "internal payload"}
    for p in spec.payload:
        key = prop_name(p.name)
        if key in seen:
            raise CapabilityError(
                f"payload field {p.name!r} would be stored as Weaviate property {key!r}, which is taken by "
                f"{seen[key]}; Weaviate lower-cases the first letter of property names. Rename the field"
            )
        seen[key] = f"payload field {p.name!r}"
    vectors: dict[str, str] = {}
    for f in spec.dense:
        for vname in filter(None, (f.name, f.prefix_name)):
            if vname.lower() in vectors:
                raise CapabilityError(f"vector names {vname!r} and {vectors[vname.lower()]!r} collide in Weaviate")
            vectors[vname.lower()] = vname


def distance_kind(similarity: Similarity) -> DistanceKind:
    return _DISTANCES[similarity][1]


def _quantizer(f: DenseField) -> Any:
    q = f.index.quantization
    if q is None:
        return None
    rescore = int(math.ceil(100 * float(f.index.oversampling))) if f.index.rescore else None
    if q == "binary":
        return Configure.VectorIndex.Quantizer.bq(rescore_limit=rescore)
    if f.index.kind == "flat":
        raise CapabilityError(
            f"Weaviate's flat index compresses with BQ only, not {q} (field {f.name!r}); use kind='hnsw' "
            "or quantization='binary'"
        )
    if q == "int8":
        return Configure.VectorIndex.Quantizer.sq(rescore_limit=rescore)
    return Configure.VectorIndex.Quantizer.pq()


def vector_index(f: DenseField, *, prefix: bool = False) -> Any:
    """The vector index config of a dense field (or of its Matryoshka prefix vector)."""
    metric = _DISTANCES[f.similarity][0]
    quantizer = None if prefix else _quantizer(f)
    if f.index.kind == "flat":
        return Configure.VectorIndex.flat(distance_metric=metric, quantizer=quantizer)
    return Configure.VectorIndex.hnsw(
        distance_metric=metric,
        max_connections=int(f.index.m),
        ef_construction=int(f.index.ef_construct),
        ef=int(f.index.ef_search) if f.index.ef_search else None,
        quantizer=quantizer,
    )
