"""What a collection holds: ``CollectionSpec`` and its dense, sparse and payload fields.

Frozen values validated on construction, so an impossible schema fails where it is written
instead of deep inside a driver. The spec serialises to JSON because every adapter stores it in
the database itself: the collection remembers which encoder, dimensions, similarities and
storage types wrote it, and the guard in ``adapters.guard`` compares against that record.

Vocabulary: a field's ``storage`` type (float32, float16, int8, binary) is how the database keeps
the numbers; it is not the encoder's output ``precision`` (``sdk.quantization``), although an
int8 encoder output is naturally stored in an int8 field.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sdk.core.errors import InputError
from sdk.core.similarity import Similarity

__all__ = [
    "NAME_RULE",
    "SCHEMA_VERSION",
    "STORAGE_TYPES",
    "CollectionSpec",
    "DenseField",
    "IndexParams",
    "PayloadField",
    "SparseField",
    "StorageType",
    "check_name",
]

SCHEMA_VERSION = 1
NAME_RULE = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
_NAME_RE = re.compile(NAME_RULE)
# Names the adapters use for their own columns / payload keys; a user field may not take them.
RESERVED_NAMES = frozenset({"id", "pk", "doc_id", "text", "metadata", "score", "distance"})
STORAGE_TYPES = ("float32", "float16", "int8", "binary")
StorageType = Literal["float32", "float16", "int8", "binary"]
PAYLOAD_TYPES = ("keyword", "int", "float", "bool")
INDEX_KINDS = ("auto", "flat", "hnsw", "ivf_flat")
QUANTIZATIONS = ("int8", "binary", "pq")
_FLOAT_METRICS = frozenset({Similarity.COSINE, Similarity.DOT, Similarity.EUCLIDEAN, Similarity.MANHATTAN})
_BINARY_METRICS = frozenset({Similarity.HAMMING, Similarity.JACCARD})


def check_name(name: object, what: str = "name") -> str:
    """Validate an identifier (collection, alias, field) so it is inert in every query language."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InputError(
            f"invalid {what} {name!r}: it must match {NAME_RULE} (a letter or underscore, then up to "
            "62 letters, digits or underscores); rename it"
        )
    return name


def _field_name(name: object, what: str) -> str:
    check_name(name, what)
    if name in RESERVED_NAMES or "__" in str(name):
        raise InputError(
            f"{what} {name!r} is reserved (reserved: {', '.join(sorted(RESERVED_NAMES))}, and any name "
            "containing '__'); choose another name"
        )
    return str(name)


@dataclass(frozen=True)
class IndexParams:
    """Index and compression settings. They change speed and memory, never which vectors are stored.

    ``quantization`` compresses the index (Qdrant scalar/binary, Weaviate SQ/BQ/PQ, pgvector
    ``binary_quantize``); searches then ``rescore`` the ``oversampling`` x limit candidates with the
    original vectors so the ranking stays that of the full-precision vectors.
    """

    kind: str = "auto"
    m: int = 16
    ef_construct: int = 100
    ef_search: int | None = None
    nlist: int = 128
    nprobe: int = 16
    quantization: str | None = None
    rescore: bool = True
    oversampling: float = 2.0

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise InputError(f"unknown index kind {self.kind!r}; use one of {', '.join(INDEX_KINDS)}")
        if self.quantization is not None and self.quantization not in QUANTIZATIONS:
            raise InputError(
                f"unknown quantization {self.quantization!r}; use None or one of {', '.join(QUANTIZATIONS)}"
            )
        for key in ("m", "ef_construct", "nlist", "nprobe"):
            if int(getattr(self, key)) < 1:
                raise InputError(f"IndexParams.{key} must be >= 1")
        if self.ef_search is not None and self.ef_search < 1:
            raise InputError("IndexParams.ef_search must be >= 1 or None")
        if not 1.0 <= float(self.oversampling) <= 100.0:
            raise InputError("IndexParams.oversampling must be between 1 and 100")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True, init=False)
class DenseField:
    """A named dense vector: width, similarity and storage type.

    ``storage`` is what the caller passes and what is stored exactly: ``float32``; ``float16``
    (half precision storage); ``int8`` (integers in [-128, 127], e.g. from the SDK's calibrated
    quantizer, stored without loss); ``binary`` (``dim`` bits, given as 0/1 values or packed into
    ``dim // 8`` uint8 bytes; compared with hamming or jaccard). ``matryoshka_dim`` adds a prefix
    vector of that width searched first, with the full vector used to rescore the candidates.
    ``precision=`` is the deprecated name of ``storage``.
    """

    name: str
    dim: int
    similarity: Similarity
    storage: StorageType
    matryoshka_dim: int | None
    index: IndexParams

    def __init__(self, name: str, dim: int, similarity: Similarity | str = Similarity.COSINE,
                 storage: StorageType = "float32", matryoshka_dim: int | None = None,
                 index: IndexParams | None = None, *, precision: StorageType | None = None) -> None:
        if precision is not None:
            warnings.warn("DenseField(precision=...) is deprecated; use storage=... (the storage type)",
                          DeprecationWarning, stacklevel=2)
            storage = precision
        for key, value in (("name", name), ("dim", dim), ("similarity", similarity), ("storage", storage),
                           ("matryoshka_dim", matryoshka_dim), ("index", IndexParams() if index is None else index)):
            object.__setattr__(self, key, value)
        self.__post_init__()

    @property
    def precision(self) -> str:
        """Deprecated name of ``storage``."""
        warnings.warn("DenseField.precision is deprecated; read .storage", DeprecationWarning, stacklevel=2)
        return self.storage

    def __post_init__(self) -> None:
        _field_name(self.name, "dense field name")
        object.__setattr__(self, "similarity", Similarity.parse(self.similarity))
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or not 1 <= self.dim <= 65_536:
            raise InputError(f"dense field {self.name!r}: dim must be an int in 1..65536, got {self.dim!r}")
        if self.storage not in STORAGE_TYPES:
            raise InputError(
                f"dense field {self.name!r}: unknown storage type {self.storage!r}; use one of {STORAGE_TYPES}"
            )
        binary = self.storage == "binary"
        if binary and self.similarity not in _BINARY_METRICS:
            raise InputError(
                f"dense field {self.name!r}: binary vectors are compared with hamming or jaccard, "
                f"not {self.similarity.value}; set similarity='hamming'"
            )
        if not binary and self.similarity not in _FLOAT_METRICS:
            raise InputError(
                f"dense field {self.name!r}: {self.similarity.value} needs storage='binary'"
            )
        if binary and self.dim % 8:
            raise InputError(f"dense field {self.name!r}: binary dim must be a multiple of 8, got {self.dim}")
        if self.matryoshka_dim is not None:
            if binary:
                raise InputError(f"dense field {self.name!r}: Matryoshka prefixes need a non-binary storage type")
            if not 1 <= int(self.matryoshka_dim) < self.dim:
                raise InputError(
                    f"dense field {self.name!r}: matryoshka_dim must be in 1..{self.dim - 1}, "
                    f"got {self.matryoshka_dim}"
                )
        if not isinstance(self.index, IndexParams):
            raise InputError(f"dense field {self.name!r}: index must be an IndexParams")

    @property
    def prefix_name(self) -> str | None:
        """Storage name of the Matryoshka prefix vector (``None`` without one)."""
        return f"{self.name}__mrl{self.matryoshka_dim}" if self.matryoshka_dim else None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "similarity": self.similarity.value,
                "storage": self.storage, "matryoshka_dim": self.matryoshka_dim,
                "index": self.index.to_dict()}


@dataclass(frozen=True)
class SparseField:
    """A named sparse (SPLADE-like) vector compared by dot product; ``idf`` weights terms by IDF."""

    name: str
    idf: bool = False

    def __post_init__(self) -> None:
        _field_name(self.name, "sparse field name")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "idf": self.idf}


@dataclass(frozen=True)
class PayloadField:
    """A metadata key that filters may use, with its type (keyword, int, float, bool)."""

    name: str
    type: str = "keyword"

    def __post_init__(self) -> None:
        _field_name(self.name, "payload field name")
        if self.type not in PAYLOAD_TYPES:
            raise InputError(f"payload field {self.name!r}: unknown type {self.type!r}; use one of {PAYLOAD_TYPES}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type}


@dataclass(frozen=True)
class CollectionSpec:
    """Everything a collection holds and what wrote it; stored in the database as JSON.

    ``calibration`` maps an int8 field to its quantizer's ``(mins, maxs)`` so that queries are
    quantized with the same ranges as the documents. ``encoder`` is an opaque fingerprint of the
    model(s) that produced the vectors.
    """

    name: str
    dense: tuple[DenseField, ...] = ()
    sparse: tuple[SparseField, ...] = ()
    payload: tuple[PayloadField, ...] = ()
    encoder: str | None = None
    calibration: Mapping[str, tuple[tuple[float, ...], tuple[float, ...]]] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        check_name(self.name, "collection name")
        object.__setattr__(self, "dense", tuple(self.dense))
        object.__setattr__(self, "sparse", tuple(self.sparse))
        object.__setattr__(self, "payload", tuple(self.payload))
        if not self.dense and not self.sparse:
            raise InputError(f"collection {self.name!r} needs at least one dense or sparse field")
        names: list[str] = []
        for f in (*self.dense, *self.sparse, *self.payload):
            if not isinstance(f, (DenseField, SparseField, PayloadField)):
                raise InputError(f"collection {self.name!r}: {f!r} is not a DenseField/SparseField/PayloadField")
            names.append(f.name)
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InputError(f"collection {self.name!r}: field names used twice: {dup}; names must be unique")
        cal: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {}
        for key, (lo, hi) in dict(self.calibration).items():
            dense = self.dense_field(key)
            if dense.storage != "int8":
                raise InputError(f"calibration given for {key!r}, which is not an int8 field")
            lo_t, hi_t = tuple(float(x) for x in lo), tuple(float(x) for x in hi)
            if len(lo_t) != dense.dim or len(hi_t) != dense.dim:
                raise InputError(f"calibration for {key!r} needs {dense.dim} mins and maxs")
            cal[key] = (lo_t, hi_t)
        object.__setattr__(self, "calibration", cal)

    def dense_field(self, name: str) -> DenseField:
        return self._find("dense", self.dense, name)

    def sparse_field(self, name: str) -> SparseField:
        return self._find("sparse", self.sparse, name)

    def _find(self, kind: str, fields: tuple[Any, ...], name: str) -> Any:
        for f in fields:
            if f.name == name:
                return f
        known = ", ".join(f.name for f in fields) or "none"
        raise InputError(f"collection {self.name!r} has no {kind} field {name!r} ({kind} fields: {known})")

    def payload_types(self) -> dict[str, str]:
        return {p.name: p.type for p in self.payload}

    def renamed(self, name: str) -> CollectionSpec:
        """The same schema under another collection name (blue/green re-indexing)."""
        return CollectionSpec(name, self.dense, self.sparse, self.payload, self.encoder,
                              self.calibration, self.schema_version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dense": [f.to_dict() for f in self.dense],
            "sparse": [f.to_dict() for f in self.sparse],
            "payload": [f.to_dict() for f in self.payload],
            "encoder": self.encoder,
            "calibration": {k: [list(lo), list(hi)] for k, (lo, hi) in sorted(self.calibration.items())},
            "schema_version": self.schema_version,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CollectionSpec:
        try:
            return cls(
                name=data["name"],
                dense=tuple(
                    DenseField(d["name"], int(d["dim"]), Similarity.parse(d["similarity"]),
                               d["storage"] if "storage" in d else d["precision"],  # "precision": before 0.2
                               d.get("matryoshka_dim"), IndexParams(**d.get("index", {})))
                    for d in data.get("dense", ())
                ),
                sparse=tuple(SparseField(s["name"], bool(s.get("idf", False))) for s in data.get("sparse", ())),
                payload=tuple(PayloadField(p["name"], p["type"]) for p in data.get("payload", ())),
                encoder=data.get("encoder"),
                calibration={k: (tuple(v[0]), tuple(v[1])) for k, v in data.get("calibration", {}).items()},
                schema_version=int(data.get("schema_version", SCHEMA_VERSION)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"stored collection spec is unreadable ({exc}); was it written by this SDK?") from exc

    @classmethod
    def from_json(cls, text: str) -> CollectionSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"stored collection spec is not JSON ({exc})") from exc
        return cls.from_dict(data)
