"""Turn caller input (records, queries) into checked, normalised values before any driver sees it.

Everything a database could store wrongly or choke on is refused here with an error that says
what to fix: unknown or missing fields, wrong widths, NaN/inf, out-of-range int8 values,
malformed bits, non-JSON or oversized payloads, legs the database cannot run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adapters.ids import point_id
from sdk.core.capabilities import Capabilities
from sdk.core.errors import CapabilityError, DimensionMismatchError, InputError
from sdk.core.spec import CollectionSpec, DenseField, SparseField
from sdk.core.types import Filter, Fusion, HybridQuery, Record, SparseVector

__all__ = ["PreparedRecord", "QueryPlan", "prepare_query", "prepare_records", "prepare_vector"]

MAX_SPARSE_INDEX = 2**32 - 2  # Qdrant and Milvus keep sparse indices as uint32 (one value reserved)
_FLAT = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class PreparedRecord:
    """A validated record: storage id, normalised vectors (incl. Matryoshka prefixes), JSON-safe payload.

    Dense arrays are float32 for float32/int8 fields, float16 for float16 fields and uint8 0/1 bits
    (length ``dim``) for binary fields. ``dense`` also holds each prefix under ``DenseField.prefix_name``.
    """

    pid: str
    doc_id: str
    dense: dict[str, np.ndarray]
    sparse: dict[str, SparseVector]
    text: str
    metadata: dict[str, Any]

    def to_record(self) -> Record:
        return Record(self.doc_id, {k: v for k, v in self.dense.items() if "__" not in k},
                      dict(self.sparse), self.text or None, dict(self.metadata))


def prepare_vector(spec: CollectionSpec, f: DenseField, vec: Any, who: str) -> np.ndarray:
    """Check one dense vector against its field and return it in storage form."""
    try:
        arr = np.asarray(vec)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is the caller's input
        raise InputError(f"{who}: vector {f.name!r} is not array-like ({exc})") from exc
    if arr.ndim != 1:
        raise InputError(f"{who}: vector {f.name!r} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{who}: vector {f.name!r} must be numeric, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(f"{who}: vector {f.name!r} holds NaN or inf; fix the encoder output")
    if f.storage == "binary":
        if arr.size == f.dim // 8 and arr.dtype == np.uint8:
            return np.unpackbits(arr)
        if arr.size != f.dim:
            raise DimensionMismatchError(
                f"{who}: binary vector {f.name!r} of collection {spec.name!r} needs {f.dim} bits "
                f"(or {f.dim // 8} packed uint8 bytes), got {arr.size} values"
            )
        if not np.all((arr == 0) | (arr == 1)):
            raise InputError(f"{who}: binary vector {f.name!r} must hold only 0 and 1 (or packed uint8)")
        return arr.astype(np.uint8)
    if arr.size != f.dim:
        raise DimensionMismatchError(
            f"{who}: vector {f.name!r} has {arr.size} dimensions but collection {spec.name!r} stores "
            f"{f.dim}; use the encoder the collection was built with or a new collection"
        )
    if f.storage == "int8":
        if not np.all(np.round(arr) == arr) or arr.min() < -128 or arr.max() > 127:
            raise InputError(
                f"{who}: int8 vector {f.name!r} must hold integers in [-128, 127]; quantize it with the "
                "collection's calibration ranges first"
            )
        return arr.astype(np.float32)
    if f.storage == "float16":
        if np.any(np.abs(arr) > 65504):
            raise InputError(f"{who}: float16 vector {f.name!r} has values beyond the float16 range")
        return arr.astype(np.float16)
    out = arr.astype(np.float32, copy=False)
    if arr.dtype != np.float32 and not np.isfinite(out).all():
        raise InputError(f"{who}: vector {f.name!r} overflows float32")
    return out


def _check_sparse(sf: SparseField, vec: Any, who: str) -> SparseVector:
    if not isinstance(vec, SparseVector):
        raise InputError(f"{who}: sparse vector {sf.name!r} must be an sdk.core.types.SparseVector")
    if vec.indices and vec.indices[-1] > MAX_SPARSE_INDEX:
        raise InputError(f"{who}: sparse vector {sf.name!r} has index {vec.indices[-1]} > {MAX_SPARSE_INDEX}")
    return vec


def _check_payload(caps: Capabilities, rec: Record, types: Mapping[str, str]) -> dict[str, Any]:
    meta = rec.metadata
    if not isinstance(meta, Mapping):
        raise InputError(f"record {rec.id!r}: metadata must be a mapping, got {type(meta).__name__}")
    if any(not isinstance(k, str) or not k for k in meta):
        raise InputError(f"record {rec.id!r}: metadata keys must be non-empty strings")
    for key, want in types.items():
        if key in meta and meta[key] is not None and not _type_ok(meta[key], want):
            raise InputError(
                f"record {rec.id!r}: metadata {key!r} must be {want} (declared in the collection's "
                f"payload schema), got {type(meta[key]).__name__}"
            )
    if type(meta) is dict and _flat_and_small(meta, caps.max_payload_bytes):
        return dict(meta)  # the common case, without paying for a JSON encoding per record
    try:  # ensure_ascii (the default) makes len(str) the byte size, an upper bound of any encoding
        encoded = json.dumps(meta if isinstance(meta, dict) else dict(meta), allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InputError(f"record {rec.id!r}: metadata must be JSON-serialisable without NaN ({exc})") from exc
    if len(encoded) > caps.max_payload_bytes:
        raise InputError(
            f"record {rec.id!r}: metadata is {len(encoded)} bytes as JSON; the limit for "
            f"{caps.name} is {caps.max_payload_bytes}. Store large content elsewhere and keep a reference"
        )
    return dict(meta) if type(meta) is dict and all(type(v) in _FLAT for v in meta.values()) \
        else json.loads(encoded)  # nested values: a deep copy the caller cannot mutate afterwards


def _flat_and_small(meta: dict[str, Any], limit: int) -> bool:
    """True when every value is a JSON scalar (finite floats) and even fully escaped JSON
    (6 characters per character, plus quotes and separators) stays under ``limit``."""
    size = 2
    for k, v in meta.items():
        t = type(v)
        if t is str:
            size += 6 * (len(k) + len(v)) + 6
        elif t is int or t is bool or v is None:
            size += 6 * len(k) + 30
        elif t is float and math.isfinite(v):
            size += 6 * len(k) + 30
        else:
            return False
    return size <= limit


def _type_ok(value: Any, want: str) -> bool:
    if want == "keyword":
        return isinstance(value, str)
    if want == "bool":
        return isinstance(value, bool)
    if want == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def prepare_records(spec: CollectionSpec, caps: Capabilities, records: Iterable[Record]) -> list[PreparedRecord]:
    """Validate every record before anything is written; the last copy of a repeated id wins."""
    dense_names = {f.name for f in spec.dense}
    sparse_names = {f.name for f in spec.sparse}
    types = spec.payload_types()
    out: dict[str, PreparedRecord] = {}
    for rec in records:
        if not isinstance(rec, Record):
            raise InputError(f"upsert takes sdk.core.types.Record values, got {type(rec).__name__}")
        who = f"record {rec.id!r}"
        unknown = (set(rec.vectors) - dense_names) | (set(rec.sparse) - sparse_names)
        if unknown:
            raise InputError(
                f"{who}: unknown vector field(s) {sorted(unknown)}; collection {spec.name!r} has dense "
                f"{sorted(dense_names)} and sparse {sorted(sparse_names)}"
            )
        missing = (dense_names - set(rec.vectors)) | (sparse_names - set(rec.sparse))
        if missing:
            raise InputError(f"{who}: missing vector field(s) {sorted(missing)}; every record needs all fields")
        dense: dict[str, np.ndarray] = {}
        for f in spec.dense:
            vec = prepare_vector(spec, f, rec.vectors[f.name], who)
            dense[f.name] = vec
            if f.prefix_name:
                dense[f.prefix_name] = vec[: f.matryoshka_dim].copy()
        sparse = {sf.name: _check_sparse(sf, rec.sparse[sf.name], who) for sf in spec.sparse}
        text = rec.text or ""
        if not isinstance(text, str):
            raise InputError(f"{who}: text must be a string or None")
        if len(text) * 4 > caps.max_text_bytes and len(text.encode()) > caps.max_text_bytes:
            raise InputError(
                f"{who}: text is {len(text.encode())} bytes; the limit for {caps.name} is {caps.max_text_bytes}. "
                "Chunk the document into smaller records"
            )
        meta = _check_payload(caps, rec, types)
        pid = point_id(rec.id)
        out.pop(pid, None)
        out[pid] = PreparedRecord(pid, rec.id, dense, sparse, text, meta)
    return list(out.values())


@dataclass(frozen=True)
class DenseLeg:
    field: DenseField
    vector: np.ndarray
    prefix: np.ndarray | None
    candidates: int
    prefix_candidates: int


@dataclass(frozen=True)
class SparseLeg:
    field: SparseField
    vector: SparseVector
    candidates: int


@dataclass(frozen=True)
class QueryPlan:
    """A checked query: each leg resolved against the spec, candidate counts fixed, fusion allowed."""

    dense: DenseLeg | None
    sparse: SparseLeg | None
    text: str | None
    filter: Filter | None
    fusion: Fusion
    limit: int
    legs: tuple[str, ...] = field(default=())

    @property
    def hybrid(self) -> bool:
        return len(self.legs) > 1


def prepare_query(spec: CollectionSpec, caps: Capabilities, q: HybridQuery) -> QueryPlan:
    """Resolve ``q`` against ``spec``; refuse legs or fusions the database cannot run natively."""
    if not isinstance(q, HybridQuery):
        raise InputError(f"query takes an sdk.core.types.HybridQuery, got {type(q).__name__}")
    dense = sparse = None
    legs: list[str] = []
    if q.dense is not None:
        f = spec.dense_field(q.dense_field)
        vec = prepare_vector(spec, f, q.dense, "query")
        prefix = vec[: f.matryoshka_dim].copy() if f.matryoshka_dim else None
        cand = max(q.candidates("dense"), q.limit)
        dense = DenseLeg(f, vec, prefix, cand, max(q.candidates("prefix"), cand))
        legs.append("dense")
    if q.sparse is not None:
        if not caps.sparse:
            raise CapabilityError(
                f"{caps.name} does not store user-supplied sparse vectors; drop HybridQuery.sparse"
                + (" and use HybridQuery.text for its BM25 leg" if caps.text_leg else "")
            )
        sf = spec.sparse_field(q.sparse_field)
        sparse = SparseLeg(sf, _check_sparse(sf, q.sparse, "query"), max(q.candidates("sparse"), q.limit))
        legs.append("sparse")
    if q.text is not None:
        if not caps.text_leg:
            raise CapabilityError(f"{caps.name} has no native text (BM25) leg; drop HybridQuery.text")
        if not isinstance(q.text, str) or not q.text.strip():
            raise InputError("HybridQuery.text must be a non-empty string")
        legs.append("text")
    if len(legs) > 1:
        caps.check_fusion(q.fusion.method)
    return QueryPlan(dense, sparse, q.text, q.filter, q.fusion, q.limit, tuple(legs))
