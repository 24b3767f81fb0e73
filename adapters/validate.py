"""Turn caller input (records, queries) into checked, normalised values before any driver sees it.

Everything a database could store wrongly or choke on is refused here with an error that says
what to fix: unknown or missing fields, wrong widths, NaN/inf, out-of-range int8 values,
malformed bits, non-JSON or oversized payloads, legs the database cannot run. So are the inputs
a database refuses only while writing, when earlier batches of the same upsert are already
committed: each store's limits (``Capabilities.max_id_bytes``, ``max_sparse_index``,
``max_sparse_nnz``, ``sparse_negative``, ``text_allows_nul``, ``max_int``) are checked here for every
record, query and filter value before the first write, so one bad record writes nothing. Some limits hold for every
store: strings must be valid Unicode (no lone surrogates), metadata nests at most ``MAX_DEPTH``
levels, sparse weights fit float32 (zero weights, also those that round to 0 in float32, are
dropped: a zero weight is no entry), and a dense vector's squared length must stay finite in
float32 (databases compute distances in float32) and, for cosine, be above zero.
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
from sdk.core.similarity import Similarity
from sdk.core.spec import CollectionSpec, DenseField, SparseField
from sdk.core.types import And, Eq, Filter, Fusion, HybridQuery, In, Not, Or, Range, Record, SparseVector

__all__ = [
    "PreparedRecord",
    "QueryPlan",
    "check_filter",
    "check_int",
    "check_string",
    "prepare_query",
    "prepare_records",
    "prepare_vector",
]

MAX_SPARSE_INDEX = 2**32 - 2  # the default of Capabilities.max_sparse_index (uint32 indices, one reserved)
MAX_DEPTH = 32  # nesting levels of metadata (Qdrant's server parses at most 128, with its own wrapping)
_FLAT = (str, int, float, bool, type(None))
_F32_MAX = float(np.finfo(np.float32).max)
_F32_TINY = float(np.finfo(np.float32).tiny)  # smallest normal float32
_F32_ZERO = 2.0**-150  # the largest magnitude that rounds to 0 in float32 (half the smallest subnormal)
#: Largest squared length of a dense vector: the squared distance of two such vectors stays finite in float32.
MAX_SQUARED_LENGTH = _F32_MAX / 4
_SHOWN = 60  # characters of an id or string shown in an error message


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


def shown(value: str) -> str:
    """``repr`` of an id or string for an error message, cut to a readable length."""
    if len(value) <= _SHOWN:
        return repr(value)
    return f"{value[:_SHOWN]!r}... ({len(value)} characters)"


def check_string(caps: Capabilities, value: str, what: str) -> int:
    """Refuse a string no database can store (lone surrogates) or this one cannot (NUL); return its
    UTF-8 size in bytes. ``what`` names it in the error ("record 3 (id 'a'): text")."""
    if value.isascii():
        size = len(value)
    else:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise InputError(
                f"{what} holds a lone surrogate ({value[exc.start]!r} at position {exc.start}), which is not valid "
                "Unicode and no database stores; fix how the text was decoded (bytes.decode('utf-8', "
                "errors='replace') replaces what cannot be decoded)"
            ) from None
    if not caps.text_allows_nul and "\x00" in value:
        raise InputError(
            f"{what} holds a NUL character (U+0000 at position {value.index(chr(0))}), which {caps.name} cannot "
            "store in text; remove it (value.replace('\\x00', '')) before writing"
        )
    return size


def check_int(caps: Capabilities, value: int, what: str) -> None:
    """Refuse an integer outside the store's range (``Capabilities.max_int``)."""
    if caps.max_int is not None and not -caps.max_int - 1 <= value <= caps.max_int:
        raise InputError(
            f"{what} is the integer {value}, outside the range {caps.name} stores "
            f"([{-caps.max_int - 1}, {caps.max_int}]); store it as a string or a float"
        )


def _check_length(f: DenseField, arr: np.ndarray, who: str, what: str) -> None:
    """A dense vector's squared length must be finite in float32 and, for cosine, above zero."""
    flat = arr.astype(np.float64)  # float32 values cannot overflow or underflow here
    squared = float(np.dot(flat, flat))
    if squared > MAX_SQUARED_LENGTH:
        raise InputError(
            f"{who}: {what} {f.name!r} is too long (squared length {squared:.3g}, at most {MAX_SQUARED_LENGTH:.3g}): "
            "databases compute distances in float32, where it overflows. Scale it down (normalise it)"
        )
    if f.similarity is Similarity.COSINE and squared < _F32_TINY:
        raise InputError(
            f"{who}: {what} {f.name!r} has length {squared ** 0.5:.3g}: cosine similarity needs a direction, and "
            "a zero (or float32-underflowing) vector has none. Leave the record out or use another similarity"
        )


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
        out = arr.astype(np.float32)
    elif f.storage == "float16":
        if np.any(np.abs(arr) > 65504):
            raise InputError(f"{who}: float16 vector {f.name!r} has values beyond the float16 range")
        out = arr.astype(np.float16)
    else:
        with np.errstate(over="ignore"):  # an overflow is refused just below
            out = arr.astype(np.float32, copy=False)
        if arr.dtype != np.float32 and not np.isfinite(out).all():
            raise InputError(f"{who}: vector {f.name!r} overflows float32")
    _check_length(f, out, who, "vector")
    if f.matryoshka_dim:
        _check_length(f, out[: f.matryoshka_dim], who, f"the {f.matryoshka_dim}-d prefix of vector")
    return out


def _check_sparse(caps: Capabilities, sf: SparseField, vec: Any, who: str) -> SparseVector:
    """The sparse vector as stored: indices within the store's range, weights within float32,
    zero weights (also those that round to 0 in float32) dropped."""
    if not isinstance(vec, SparseVector):
        raise InputError(f"{who}: sparse vector {sf.name!r} must be an sdk.core.types.SparseVector")
    if vec.indices and vec.indices[-1] > caps.max_sparse_index:
        raise InputError(
            f"{who}: sparse vector {sf.name!r} has index {vec.indices[-1]}; {caps.name} keeps indices up to "
            f"{caps.max_sparse_index}. Map the vocabulary into that range (e.g. hash the terms modulo "
            f"{caps.max_sparse_index + 1})"
        )
    values = vec.values
    if values:
        lo, hi = min(values), max(values)
        if hi > _F32_MAX or lo < -_F32_MAX:
            raise InputError(
                f"{who}: sparse vector {sf.name!r} has a weight beyond float32's range ({_F32_MAX:.4g}), which "
                "databases store sparse weights in; scale the weights down"
            )
        if lo < 0 and not caps.sparse_negative:
            raise InputError(
                f"{who}: sparse vector {sf.name!r} has a negative weight ({lo:g}); {caps.name} stores only "
                "weights >= 0 (SPLADE's are). Drop or clip the negative entries"
            )
        if not lo > _F32_ZERO and min(map(abs, values)) <= _F32_ZERO:  # 0, or rounds to 0 in float32
            kept = [(i, v) for i, v in zip(vec.indices, values, strict=True) if abs(v) > _F32_ZERO]
            vec = SparseVector(tuple(i for i, _ in kept), tuple(v for _, v in kept))
    if caps.max_sparse_nnz is not None and len(vec) > caps.max_sparse_nnz:
        raise InputError(
            f"{who}: sparse vector {sf.name!r} has {len(vec)} non-zero entries; {caps.name} stores at most "
            f"{caps.max_sparse_nnz} per vector. Keep the largest weights (prune the rest)"
        )
    return vec


def _check_nested(caps: Capabilities, value: Any, who: str, path: str, depth: int) -> None:
    """Walk a metadata value: strings, integers and keys at every level, and the nesting depth."""
    if isinstance(value, str):
        check_string(caps, value, f"{who}: metadata {path}")
    elif isinstance(value, bool) or value is None or isinstance(value, float):
        return  # non-finite floats: refused by the JSON encoding that follows
    elif isinstance(value, int):
        check_int(caps, value, f"{who}: metadata {path}")
    elif isinstance(value, (Mapping, list, tuple)):
        if depth >= MAX_DEPTH:
            raise InputError(
                f"{who}: metadata {path} nests deeper than {MAX_DEPTH} levels; flatten it or store it as a JSON string"
            )
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InputError(
                        f"{who}: metadata {path} has the key {key!r} ({type(key).__name__}); JSON keys are strings, "
                        "so it would come back as another value. Use string keys"
                    )
                check_string(caps, key, f"{who}: a key in metadata {path}")
                _check_nested(caps, item, who, f"{path}[{shown(key)}]", depth + 1)
        else:
            for i, item in enumerate(value):
                _check_nested(caps, item, who, f"{path}[{i}]", depth + 1)
    # anything else (bytes, sets, numpy values...): refused by the JSON encoding that follows


def _check_payload(caps: Capabilities, meta: Any, types: Mapping[str, str], who: str) -> dict[str, Any]:
    if not isinstance(meta, Mapping):
        raise InputError(f"{who}: metadata must be a mapping, got {type(meta).__name__}")
    if any(not isinstance(k, str) or not k for k in meta):
        raise InputError(f"{who}: metadata keys must be non-empty strings")
    for key, want in types.items():
        if key in meta and meta[key] is not None and not _type_ok(meta[key], want):
            raise InputError(
                f"{who}: metadata {key!r} must be {want} (declared in the collection's "
                f"payload schema), got {type(meta[key]).__name__}"
            )
    if type(meta) is dict and _flat_and_small(caps, meta, who):
        return dict(meta)  # the common case, without paying for a JSON encoding per record
    for key, value in meta.items():
        check_string(caps, key, f"{who}: metadata key {shown(key)}")
        _check_nested(caps, value, who, shown(key), 1)
    try:  # ensure_ascii (the default) makes len(str) the byte size, an upper bound of any encoding
        encoded = json.dumps(meta if isinstance(meta, dict) else dict(meta), allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{who}: metadata must be JSON-serialisable without NaN ({exc})") from exc
    if len(encoded) > caps.max_payload_bytes:
        raise InputError(
            f"{who}: metadata is {len(encoded)} bytes as JSON; the limit for "
            f"{caps.name} is {caps.max_payload_bytes}. Store large content elsewhere and keep a reference"
        )
    return dict(meta) if type(meta) is dict and all(type(v) in _FLAT for v in meta.values()) \
        else json.loads(encoded)  # nested values: a deep copy the caller cannot mutate afterwards


def _flat_and_small(caps: Capabilities, meta: dict[str, Any], who: str) -> bool:
    """True when every value is a JSON scalar (finite floats, integers in range, valid strings) and
    even fully escaped JSON (6 characters per character, plus quotes and separators) stays under the
    payload limit; raises for a string or integer the store refuses."""
    size = 2
    nul, lo, hi = caps.text_allows_nul, caps.min_int, caps.max_int
    for k, v in meta.items():
        if not (k.isascii() and (nul or "\x00" not in k)):  # ASCII holds no surrogates: the common case
            check_string(caps, k, f"{who}: metadata key {shown(k)}")
        t = type(v)
        if t is str:
            if not (v.isascii() and (nul or "\x00" not in v)):
                check_string(caps, v, f"{who}: metadata {shown(k)}")
            size += 6 * (len(k) + len(v)) + 6
        elif t is int:
            if hi is not None and not lo <= v <= hi:  # type: ignore[operator]
                check_int(caps, v, f"{who}: metadata {shown(k)}")
            if not -(10**18) < v < 10**18:  # long integers: sized by the JSON path
                return False
            size += 6 * len(k) + 30
        elif t is bool or v is None:
            size += 6 * len(k) + 30
        elif t is float and math.isfinite(v):
            size += 6 * len(k) + 30
        else:
            return False
    return size <= caps.max_payload_bytes


def _type_ok(value: Any, want: str) -> bool:
    if want == "keyword":
        return isinstance(value, str)
    if want == "bool":
        return isinstance(value, bool)
    if want == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_id(caps: Capabilities, doc_id: str, who: str) -> None:
    size = len(doc_id) if doc_id.isascii() and (caps.text_allows_nul or "\x00" not in doc_id) \
        else check_string(caps, doc_id, f"{who}: the id")
    if caps.max_id_bytes is not None and size > caps.max_id_bytes:
        raise InputError(
            f"{who}: the id is {size} bytes (UTF-8); {caps.name} keeps ids of at most {caps.max_id_bytes} bytes. "
            "Use a shorter id (a hash of the long one, with the long one kept in metadata)"
        )


def prepare_records(spec: CollectionSpec, caps: Capabilities, records: Iterable[Record]) -> list[PreparedRecord]:
    """Validate every record before anything is written; the last copy of a repeated id wins.

    Errors name the record by its position in ``records`` and its id."""
    dense_names = {f.name for f in spec.dense}
    sparse_names = {f.name for f in spec.sparse}
    types = spec.payload_types()
    out: dict[str, PreparedRecord] = {}
    for pos, rec in enumerate(records):
        if not isinstance(rec, Record):
            raise InputError(f"upsert takes sdk.core.types.Record values, got {type(rec).__name__} at position {pos}")
        who = f"record {pos} (id {shown(rec.id)})"
        _check_id(caps, rec.id, who)
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
        sparse = {sf.name: _check_sparse(caps, sf, rec.sparse[sf.name], who) for sf in spec.sparse}
        text = rec.text or ""
        if not isinstance(text, str):
            raise InputError(f"{who}: text must be a string or None")
        size = len(text) if text.isascii() and (caps.text_allows_nul or "\x00" not in text) \
            else check_string(caps, text, f"{who}: the text")
        if size > caps.max_text_bytes:
            raise InputError(
                f"{who}: text is {size} bytes; the limit for {caps.name} is {caps.max_text_bytes}. "
                "Chunk the document into smaller records"
            )
        meta = _check_payload(caps, rec.metadata, types, who)
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
    if caps.max_limit is not None and q.limit > caps.max_limit:
        raise InputError(
            f"HybridQuery.limit is {q.limit}; {caps.name} returns at most {caps.max_limit} hits per query. Ask for "
            "fewer (narrow the query with a filter to reach the rest)"
        )
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
        sparse = SparseLeg(sf, _check_sparse(caps, sf, q.sparse, "query"), max(q.candidates("sparse"), q.limit))
        legs.append("sparse")
    if q.text is not None:
        if not caps.text_leg:
            raise CapabilityError(f"{caps.name} has no native text (BM25) leg; drop HybridQuery.text")
        if not isinstance(q.text, str) or not q.text.strip():
            raise InputError("HybridQuery.text must be a non-empty string")
        check_string(caps, q.text, "HybridQuery.text")
        legs.append("text")
    if len(legs) > 1:
        caps.check_fusion(q.fusion.method)
    if q.filter is not None:
        check_filter(spec, caps, q.filter)
    return QueryPlan(dense, sparse, q.text, q.filter, q.fusion, q.limit, tuple(legs))


def check_filter(spec: CollectionSpec, caps: Capabilities, f: Filter, depth: int = 0) -> None:
    """Refuse filter values the store cannot take (strings with NUL or lone surrogates, integers out of
    range, bounds on an int field beyond its range) and filters nested deeper than ``MAX_DEPTH``.
    Fields and value types are checked by ``adapters.filters.FilterTranslator``."""
    if depth >= MAX_DEPTH:
        raise InputError(f"the filter nests deeper than {MAX_DEPTH} levels; flatten it (And/Or take many filters)")
    if isinstance(f, (Eq, In)):
        for value in ((f.value,) if isinstance(f, Eq) else f.values):
            what = f"filter value for {f.field!r}"
            if isinstance(value, str):
                check_string(caps, value, what)
            elif isinstance(value, int) and not isinstance(value, bool):
                check_int(caps, value, what)
    elif isinstance(f, Range):
        if spec.payload_types().get(f.field) == "int" and caps.max_int is not None:
            for key in ("gt", "gte", "lt", "lte"):
                bound = getattr(f, key)
                if isinstance(bound, (int, float)) and not isinstance(bound, bool) and math.isfinite(bound) \
                        and not -caps.max_int - 1 <= bound <= caps.max_int:
                    raise InputError(
                        f"Range bound {key}={bound!r} on the int field {f.field!r} is beyond the integers {caps.name} "
                        f"stores ([{-caps.max_int - 1}, {caps.max_int}]); drop the bound (every stored value is "
                        "within it) or clamp it to that range"
                    )
    elif isinstance(f, (And, Or)):
        for sub in f.filters:
            check_filter(spec, caps, sub, depth + 1)
    elif isinstance(f, Not):
        check_filter(spec, caps, f.filter, depth + 1)
