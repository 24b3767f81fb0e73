"""Semantic-similarity evaluation: how well embedding similarities track gold pair scores (STS-style).

Pearson and Spearman correlations between gold scores and the pairwise similarity of the two
sentences' embeddings, for cosine, dot, euclidean and manhattan. Key names and values equal
sentence-transformers' ``EmbeddingSimilarityEvaluator`` (``{name}_pearson_cosine``,
``{name}_spearman_cosine``, ...), including its quantized-precision variants. The correlations
are computed here in float64 (Spearman with average ranks for ties) so scipy is not needed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from sdk.core.errors import InputError
from sdk.core.similarity import Similarity
from sdk.evaluation.base import Evaluator, evaluation_mode

__all__ = ["EmbeddingSimilarityEvaluator", "pearson_correlation", "spearman_correlation"]

logger = logging.getLogger(__name__)

_FUNCTIONS = ("cosine", "dot", "euclidean", "manhattan")
_PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")


def pearson_correlation(x: Any, y: Any) -> float:
    """Pearson's r in float64; NaN when either side is constant (no linear relation is defined)."""
    a, b = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if len(a) != len(b) or len(a) < 2:
        raise InputError(f"correlation needs two equally long series of at least 2 values, got {len(a)} and {len(b)}")
    a, b = a - a.mean(), b - b.mean()
    norm_a, norm_b = np.linalg.norm(a), np.linalg.norm(b)
    if norm_a == 0 or norm_b == 0 or not np.isfinite(norm_a * norm_b):
        return float("nan")
    return float(np.clip(np.dot(a / norm_a, b / norm_b), -1.0, 1.0))


def average_ranks(values: Any) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of the ranks they span."""
    v = np.asarray(values).ravel()
    order = np.argsort(v, kind="mergesort")
    ordered = v[order]
    starts_group = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    sizes = np.diff(np.r_[starts, len(v)])
    ranks = np.empty(len(v), dtype=np.float64)
    ranks[order] = (starts + (sizes + 1) / 2.0)[group]
    return ranks


def spearman_correlation(x: Any, y: Any) -> float:
    """Spearman's rho: Pearson's r of the average ranks; NaN if either side holds a NaN."""
    a, b = np.asarray(x).ravel(), np.asarray(y).ravel()
    if np.isnan(a.astype(np.float64)).any() or np.isnan(b.astype(np.float64)).any():
        return float("nan")
    return pearson_correlation(average_ranks(a), average_ranks(b))


class EmbeddingSimilarityEvaluator(Evaluator):
    """Correlation of ``similarity(embed(sentences1[i]), embed(sentences2[i]))`` with ``scores[i]``.

    ``similarity_fn_names`` picks the functions (default: ``main_similarity``, else the model's
    own, resolved per call). With several, ``pearson_max`` / ``spearman_max`` are added and are the
    primary metric unless ``main_similarity`` is set. ``precision`` quantizes normalised
    embeddings first (int8/uint8 ranges from all the evaluated embeddings together), to see what
    quantized storage costs.
    """

    def __init__(
        self,
        sentences1: Sequence[str],
        sentences2: Sequence[str],
        scores: Sequence[float],
        batch_size: int = 16,
        main_similarity: str | Similarity | None = None,
        similarity_fn_names: Sequence[str] | None = None,
        name: str = "",
        show_progress_bar: bool = False,
        write_csv: bool = True,
        precision: str | None = None,
        truncate_dim: int | None = None,
    ) -> None:
        super().__init__(name=name, write_csv=write_csv)
        self.sentences1, self.sentences2 = list(sentences1), list(sentences2)
        self.scores = [float(s) for s in scores]
        if not (len(self.sentences1) == len(self.sentences2) == len(self.scores)):
            raise InputError(f"sentences1, sentences2 and scores must be equally long, got {len(self.sentences1)}, "
                             f"{len(self.sentences2)} and {len(self.scores)}")
        if len(self.scores) < 2:
            raise InputError("a correlation needs at least 2 scored pairs")
        if precision is not None and precision not in _PRECISIONS:
            raise InputError(f"unknown precision {precision!r}; use one of {', '.join(_PRECISIONS)} or None")
        self.main_similarity = _function_name(main_similarity) if main_similarity else None
        names = [_function_name(n) for n in similarity_fn_names or []]
        if not names and self.main_similarity is not None:
            names = [self.main_similarity]
        self.similarity_fn_names = list(dict.fromkeys(names))
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.precision = precision
        self.truncate_dim = truncate_dim
        self.csv_file = ("similarity_evaluation" + (f"_{name}" if name else "")
                         + (f"_{precision}" if precision else "") + "_results.csv")
        self.primary_metric = self._primary(self.similarity_fn_names) if self.similarity_fn_names else None

    def _primary(self, names: list[str]) -> str:
        if self.main_similarity is not None:
            return self.metric_key(f"spearman_{self.main_similarity}")
        return self.metric_key("spearman_max" if len(names) > 1 else f"spearman_{names[0]}")

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        logger.info("Embedding similarity evaluation on %s%s", self.name or "the data", self.describe_call(epoch, steps))
        names = self.similarity_fn_names or [_function_name(model.similarity_fn_name)]
        left, right = self._embed(model)
        from sdk.util import similarity_function

        metrics: dict[str, float] = {}
        for fn in names:
            sims = similarity_function(fn, pairwise=True)(left, right).detach().cpu().numpy()
            metrics[f"pearson_{fn}"] = pearson_correlation(self.scores, sims)
            metrics[f"spearman_{fn}"] = spearman_correlation(self.scores, sims)
        header = ["epoch", "steps"] + [f"{fn}_{m}" for fn in names for m in ("pearson", "spearman")]
        row = [epoch, steps] + [metrics[f"{m}_{fn}"] for fn in names for m in ("pearson", "spearman")]
        self.append_csv(output_path, self.csv_file, header, row)
        if len(names) > 1:
            metrics["pearson_max"] = max(metrics[f"pearson_{fn}"] for fn in names)
            metrics["spearman_max"] = max(metrics[f"spearman_{fn}"] for fn in names)
        self.primary_metric = self._primary(names)
        return self.prefixed(metrics)

    def _embed(self, model: Any) -> tuple[np.ndarray, np.ndarray]:
        """Both sides' embeddings, quantized (and unpacked to 0/1 bits) when ``precision`` is set."""
        from sdk.quantization import calibration_ranges, quantize_embeddings

        n = len(self.sentences1)
        with evaluation_mode(model):
            emb = np.asarray(model.encode(
                self.sentences1 + self.sentences2, batch_size=self.batch_size,
                show_progress_bar=self.show_progress_bar, convert_to_numpy=True,
                normalize_embeddings=self.precision is not None, truncate_dim=self.truncate_dim,
            ), dtype=np.float32)
        if self.precision in (None, "float32"):
            return emb[:n], emb[n:]
        if self.precision in ("int8", "uint8"):
            quantized = quantize_embeddings(emb, self.precision, ranges=calibration_ranges(emb))
            return quantized[:n].astype(np.float32), quantized[n:].astype(np.float32)
        bits = quantize_embeddings(emb, self.precision)
        if self.precision == "binary":  # signed bytes back to the packed unsigned ones
            bits = (bits.astype(np.int16) + 128).astype(np.uint8)
        unpacked = np.unpackbits(bits.astype(np.uint8), axis=1).astype(np.float32)
        return unpacked[:n], unpacked[n:]

    @property
    def description(self) -> str:
        return "Semantic Similarity"

    def get_config_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("truncate_dim", "precision") if getattr(self, k) is not None}


def _function_name(value: Any) -> str:
    name = Similarity.parse(value).value
    if name not in _FUNCTIONS:
        raise InputError(f"similarity {name!r} cannot be evaluated on float embeddings; use {', '.join(_FUNCTIONS)}")
    return name
