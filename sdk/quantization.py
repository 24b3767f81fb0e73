"""Scalar (int8 / uint8) and binary quantization of embeddings, as pure numpy functions.

Scalar quantization maps each dimension's calibration range [min, max] onto 256 buckets.
The ranges must come from a calibration set and be reused for every later call: ranges
computed from the batch at hand make a single query quantize against its own min/max,
which is meaningless (sentence-transformers#2837). So ``quantize_embeddings`` refuses
to guess: pass ``ranges`` (or ``calibration_embeddings``) explicitly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from sdk.core.errors import DimensionMismatchError, InputError

__all__ = [
    "PRECISIONS",
    "Calibration",
    "Precision",
    "calibration_ranges",
    "dequantize_embeddings",
    "quantize_embeddings",
    "search_quantized",
    "unpack_binary",
]

Precision = Literal["float32", "int8", "uint8", "binary", "ubinary"]
PRECISIONS: tuple[str, ...] = ("float32", "int8", "uint8", "binary", "ubinary")
CALIBRATION_FILE = "quantization_calibration.json"


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return precision


def calibration_ranges(embeddings: np.ndarray) -> np.ndarray:
    """Per-dimension ``[min, max]`` of a calibration set, shape (2, dim)."""
    emb = _as_2d(embeddings)
    if len(emb) == 0:
        raise InputError("calibration needs at least one embedding; pass a representative sample")
    return np.stack([emb.min(axis=0), emb.max(axis=0)]).astype(np.float32)


@dataclass(frozen=True)
class Calibration:
    """Saved scalar-quantization ranges, shape (2, dim), and whether they are for normalised vectors."""

    ranges: np.ndarray
    normalized: bool = False

    def __post_init__(self) -> None:
        r = np.asarray(self.ranges, dtype=np.float32)
        if r.ndim != 2 or r.shape[0] != 2:
            raise InputError(f"calibration ranges must have shape (2, dim), got {r.shape}")
        if not np.all(np.isfinite(r)):
            raise InputError("calibration ranges hold NaN or inf")
        object.__setattr__(self, "ranges", r)

    @property
    def dim(self) -> int:
        return int(self.ranges.shape[1])

    @classmethod
    def from_embeddings(cls, embeddings: np.ndarray, normalized: bool = False) -> Calibration:
        return cls(calibration_ranges(embeddings), normalized)

    def save(self, folder: str | Path) -> None:
        data = {"min": self.ranges[0].tolist(), "max": self.ranges[1].tolist(), "normalized": self.normalized}
        (Path(folder) / CALIBRATION_FILE).write_text(json.dumps(data), encoding="utf8")

    @classmethod
    def load(cls, folder: str | Path) -> Calibration | None:
        path = Path(folder) / CALIBRATION_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text(encoding="utf8"))
        return cls(np.array([data["min"], data["max"]], dtype=np.float32), bool(data.get("normalized", False)))

    def to_dict(self) -> dict[str, object]:
        """JSON-able form, e.g. for storing beside a collection."""
        return {"min": self.ranges[0].tolist(), "max": self.ranges[1].tolist(), "normalized": self.normalized}


def _as_2d(embeddings: np.ndarray) -> np.ndarray:
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim == 1:
        emb = emb[None, :]
    if emb.ndim != 2:
        raise InputError(f"embeddings must be 1-D or 2-D, got shape {emb.shape}")
    return emb


def _resolve_ranges(
    dim: int, ranges: np.ndarray | Calibration | None, calibration_embeddings: np.ndarray | None
) -> np.ndarray:
    if isinstance(ranges, Calibration):
        ranges = ranges.ranges
    if ranges is None:
        if calibration_embeddings is None:
            raise InputError(
                "int8/uint8 quantization needs calibration ranges; pass ranges=... or "
                "calibration_embeddings=... (a representative sample, not the batch being encoded), "
                "or call DenseEncoder.calibrate(sample_texts) once"
            )
        ranges = calibration_ranges(calibration_embeddings)
    ranges = np.asarray(ranges, dtype=np.float32)
    if ranges.shape != (2, dim):
        raise DimensionMismatchError(
            f"calibration ranges have shape {ranges.shape} but the embeddings have {dim} dims; "
            "calibrate with the same model, truncate_dim and normalisation"
        )
    return ranges


def quantize_embeddings(
    embeddings: np.ndarray,
    precision: str,
    ranges: np.ndarray | Calibration | None = None,
    calibration_embeddings: np.ndarray | None = None,
) -> np.ndarray:
    """Quantize float embeddings. Scalar precisions clip to the calibration range first,
    so a value outside it saturates instead of wrapping around."""
    check_precision(precision)
    single = np.ndim(embeddings) == 1
    emb = _as_2d(embeddings)
    if precision == "float32":
        out = emb
    elif precision in ("int8", "uint8"):
        lo, hi = _resolve_ranges(emb.shape[1], ranges, calibration_embeddings)
        steps = (hi - lo) / 255.0
        steps = np.where(steps > 0, steps, 1.0).astype(np.float32)
        buckets = np.clip(np.floor((emb - lo) / steps), 0.0, 255.0)
        out = (buckets - 128.0).astype(np.int8) if precision == "int8" else buckets.astype(np.uint8)
    else:
        packed = np.packbits(emb > 0, axis=-1)
        out = (packed.astype(np.int16) - 128).astype(np.int8) if precision == "binary" else packed
    return out[0] if single else out


def dequantize_embeddings(
    quantized: np.ndarray, precision: str, ranges: np.ndarray | Calibration | None = None, dim: int | None = None
) -> np.ndarray:
    """Approximate float vectors back: bucket midpoints for int8/uint8, ±1 for binary."""
    check_precision(precision)
    q = np.asarray(quantized)
    if precision == "float32":
        return q.astype(np.float32)
    if precision in ("binary", "ubinary"):
        bits = unpack_binary(q, precision, dim)
        return bits.astype(np.float32) * 2.0 - 1.0
    width = q.shape[-1]
    lo, hi = _resolve_ranges(width, ranges, None)
    steps = (hi - lo) / 255.0
    centre = q.astype(np.float32) + (128.5 if precision == "int8" else 0.5)  # bucket midpoints
    return (lo + centre * steps).astype(np.float32)


def unpack_binary(packed: np.ndarray, precision: str = "ubinary", dim: int | None = None) -> np.ndarray:
    """Bits (0/1, uint8) from packed binary / ubinary codes; ``dim`` drops the padding bits."""
    p = np.asarray(packed)
    raw = (p.astype(np.int16) + 128).astype(np.uint8) if precision == "binary" else p.astype(np.uint8)
    bits = np.unpackbits(raw, axis=-1)
    return bits[..., :dim] if dim is not None else bits


def _hamming_scores(query_bits: np.ndarray, doc_bits: np.ndarray) -> np.ndarray:
    """Negative hamming distance (higher is closer) between packed uint8 codes."""
    xor = np.bitwise_xor(query_bits[:, None, :], doc_bits[None, :, :])
    return -np.unpackbits(xor, axis=-1).sum(axis=-1, dtype=np.int32).astype(np.float32)


def search_quantized(
    query_embeddings: np.ndarray,
    corpus: np.ndarray,
    precision: str,
    *,
    ranges: np.ndarray | Calibration | None = None,
    top_k: int = 10,
    oversampling: float = 4.0,
    dim: int | None = None,
) -> list[list[dict[str, float | int]]]:
    """Two-stage search over a quantized corpus, then rescoring with the float query.

    Stage 1 compares the quantized query with the quantized corpus (integer dot product or
    hamming distance) and keeps ``top_k * oversampling`` candidates; stage 2 rescores them
    with the float query against the dequantized documents (dot product: use normalised
    embeddings for cosine). Returns, per query, ``[{"corpus_id", "score"}]`` best first.
    """
    check_precision(precision)
    if top_k < 1 or oversampling < 1:
        raise InputError("top_k must be >= 1 and oversampling >= 1")
    queries = _as_2d(query_embeddings)
    corpus = np.asarray(corpus)
    if corpus.ndim != 2:
        raise InputError(f"corpus must be 2-D (documents x code width), got shape {corpus.shape}")
    n_candidates = min(len(corpus), int(np.ceil(top_k * oversampling)))
    if precision in ("binary", "ubinary"):
        q_codes = quantize_embeddings(queries, "ubinary")
        d_codes = corpus if precision == "ubinary" else (corpus.astype(np.int16) + 128).astype(np.uint8)
        first = _hamming_scores(q_codes, d_codes)
    elif precision in ("int8", "uint8"):
        # centre uint8 codes like int8 ones so the integer dot product tracks the float one
        shift = 128 if precision == "uint8" else 0
        q_codes = quantize_embeddings(queries, precision, ranges=ranges).astype(np.int32) - shift
        first = (q_codes @ (corpus.astype(np.int32) - shift).T).astype(np.float64)
    else:
        first = queries @ corpus.astype(np.float32).T
    candidates = np.argpartition(-first, n_candidates - 1, axis=1)[:, :n_candidates]
    docs = dequantize_embeddings(corpus, precision, ranges=ranges, dim=dim or queries.shape[1])
    results = []
    for qi, cand in enumerate(candidates):
        scores = docs[cand] @ queries[qi]
        best = np.argsort(-scores, kind="stable")[:top_k]
        results.append([{"corpus_id": int(cand[b]), "score": float(scores[b])} for b in best])
    return results
