"""Reranking evaluation of a CrossEncoder: MAP, MRR@k and nDCG@k over per-query candidate lists.

Each sample is ``{"query", "positive": [...], "negative": [...]}`` or ``{"query", "positive",
"documents": [...]}`` where ``documents`` is a first-stage ranking (best first). With
``documents`` the first stage's own metrics are reported too (``base_map``, ...), so the gain of
reranking is one subtraction. Values and key names equal sentence-transformers'
``CrossEncoderRerankingEvaluator``: nDCG averages the gain over tied scores and MAP is the
step-wise average precision over distinct score thresholds, as scikit-learn computes them.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sdk.core.errors import InputError
from sdk.evaluation.base import Evaluator, evaluation_mode

__all__ = ["CrossEncoderRerankingEvaluator", "average_precision", "tie_averaged_ndcg"]

logger = logging.getLogger(__name__)


def tie_averaged_ndcg(relevance: Any, scores: Any, k: int | None = None) -> float:
    """nDCG@k of a ranking by ``scores`` (descending); documents with equal scores share the mean
    gain of their group, so the value does not depend on how ties happen to be ordered."""
    rel = np.asarray(relevance, dtype=np.float64).ravel()
    s = np.asarray(scores).ravel()
    discount = 1.0 / np.log2(np.arange(len(rel)) + 2.0)
    if k is not None:
        discount[k:] = 0.0
    ideal = float(np.sort(rel)[::-1] @ discount)
    if ideal == 0.0:
        return 0.0
    _, group, sizes = np.unique(-s, return_inverse=True, return_counts=True)
    mean_gain = np.bincount(group.ravel(), weights=rel, minlength=len(sizes)) / sizes
    cumulative = np.cumsum(discount)[np.cumsum(sizes) - 1]
    group_discount = np.diff(np.r_[0.0, cumulative])
    return float(mean_gain @ group_discount) / ideal


def average_precision(relevance: Any, scores: Any) -> float:
    """Area under the step-wise precision-recall curve, with one step per distinct score."""
    rel = np.asarray(relevance, dtype=np.float64).ravel()
    s = np.asarray(scores).ravel()
    order = np.argsort(s, kind="mergesort")[::-1]
    s, rel = s[order], rel[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    hits = np.cumsum(rel)[last_of_group]
    if len(hits) == 0 or hits[-1] == 0:
        return 0.0
    precision = hits / (last_of_group + 1)
    recall = hits / hits[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _reciprocal_rank(relevance: Sequence[int], scores: np.ndarray, k: int) -> float:
    for rank, index in enumerate(np.argsort(scores)[::-1][:k]):
        if relevance[index]:
            return 1.0 / (rank + 1)
    return 0.0


class CrossEncoderRerankingEvaluator(Evaluator):
    """Scores every (query, candidate) pair with a cross-encoder and ranks the candidates by it.

    ``always_rerank_positives`` (only meaningful with ``documents``) puts every positive among the
    candidates even when the first stage missed it, so the ceiling is 1.0; with False, positives
    the first stage missed stay missing (a more realistic figure). Samples without any positive
    candidate count as 0. ``mrr_at_k`` is the deprecated spelling of ``at_k``.
    """

    def __init__(
        self,
        samples: Sequence[Mapping[str, Any]] | Mapping[Any, Mapping[str, Any]],
        at_k: int = 10,
        always_rerank_positives: bool = True,
        name: str = "",
        batch_size: int = 64,
        show_progress_bar: bool = False,
        write_csv: bool = True,
        mrr_at_k: int | None = None,
    ) -> None:
        super().__init__(name=name, write_csv=write_csv)
        if mrr_at_k is not None:
            warnings.warn(f"mrr_at_k is deprecated; use at_k={mrr_at_k}", DeprecationWarning, stacklevel=2)
            at_k = mrr_at_k
        if isinstance(at_k, bool) or not isinstance(at_k, int) or at_k < 1:
            raise InputError(f"at_k must be a positive integer, got {at_k!r}")
        self.samples = list(samples.values()) if isinstance(samples, Mapping) else list(samples)
        for i, sample in enumerate(self.samples):
            _check_sample(sample, i)
        self.at_k = at_k
        self.always_rerank_positives = always_rerank_positives
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.csv_file = f"CrossEncoderRerankingEvaluator{'_' + name if name else ''}_results_@{at_k}.csv"
        self.primary_metric = self.metric_key(f"ndcg@{at_k}")

    def _candidates(self, sample: Mapping[str, Any]) -> tuple[list[str], list[int], tuple[float, ...] | None]:
        """(documents to score, their relevance, first-stage (mrr, ndcg, ap) or None without ``documents``)."""
        positive = sample["positive"]
        positive = [positive] if isinstance(positive, str) else list(positive)
        if "documents" not in sample:
            negative = list(sample["negative"])
            return positive + negative, [1] * len(positive) + [0] * len(negative), None
        documents = list(sample["documents"])
        first_stage = [int(doc in positive) for doc in documents]
        if sum(first_stage) == 0:
            base: tuple[float, ...] = (0.0, 0.0, 0.0)
        else:  # positives the first stage missed count as ranked just after its list
            first_stage += [1] * (len(positive) - sum(first_stage))
            base = self._scores(first_stage, np.arange(len(first_stage), 0, -1))
        if self.always_rerank_positives:
            docs = positive + [doc for doc in documents if doc not in positive]
            return docs, [1] * len(positive) + [0] * (len(docs) - len(positive)), base
        return documents, [int(doc in positive) for doc in documents], base

    def _scores(self, relevance: Sequence[int], scores: np.ndarray) -> tuple[float, float, float]:
        """(MRR@k, nDCG@k, average precision) of one ranked list."""
        return (_reciprocal_rank(relevance, scores, self.at_k), tie_averaged_ndcg(relevance, scores, self.at_k),
                average_precision(relevance, scores))

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        logger.info("Reranking evaluation on %s%s", self.name or "the data", self.describe_call(epoch, steps))
        pairs: list[list[str]] = []
        plan: list[tuple[list[int], int] | None] = []
        baselines: list[tuple[float, ...]] = []
        for sample in self.samples:
            docs, relevance, base = self._candidates(sample)
            if base is not None:
                baselines.append(base)
            if sum(relevance) == 0:
                plan.append(None)
                continue
            plan.append((relevance, len(docs)))
            pairs.extend([sample["query"], doc] for doc in docs)
        scores = self._predict(model, pairs)
        per_sample: list[tuple[float, ...]] = []
        offset = 0
        for entry in plan:
            if entry is None:
                per_sample.append((0.0, 0.0, 0.0))
                continue
            relevance, count = entry
            per_sample.append(self._scores(relevance, scores[offset:offset + count]))
            offset += count
        mrr, ndcg, ap = (float(np.mean(col)) for col in zip(*per_sample, strict=True)) if per_sample else (0.0,) * 3
        metrics = {"map": ap, f"mrr@{self.at_k}": mrr, f"ndcg@{self.at_k}": ndcg}
        if baselines:
            base_mrr, base_ndcg, base_ap = (float(np.mean(col)) for col in zip(*baselines, strict=True))
            metrics.update({"base_map": base_ap, f"base_mrr@{self.at_k}": base_mrr,
                            f"base_ndcg@{self.at_k}": base_ndcg})
        self.append_csv(output_path, self.csv_file, ["epoch", "steps", "MAP", f"MRR@{self.at_k}", f"NDCG@{self.at_k}"],
                        [epoch, steps, ap, mrr, ndcg])
        return self.prefixed(metrics)

    def _predict(self, model: Any, pairs: list[list[str]]) -> np.ndarray:
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        with evaluation_mode(model):
            scores = np.asarray(model.predict(pairs, batch_size=self.batch_size,
                                              show_progress_bar=self.show_progress_bar, convert_to_numpy=True))
        if scores.ndim != 1:
            raise InputError(f"reranking needs one relevance score per pair; this model returns shape {scores.shape} "
                             "(use a 1-label cross-encoder)")
        return scores

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"at_k": self.at_k}
        if self.samples and "documents" in self.samples[0]:
            config["always_rerank_positives"] = self.always_rerank_positives
        return config


def _check_sample(sample: Any, index: int) -> None:
    if not isinstance(sample, Mapping):
        raise InputError(f"sample {index} must be a dict with 'query', 'positive' and 'negative' or 'documents'")
    for key in ("query", "positive"):
        if key not in sample:
            raise InputError(f"sample {index} has no {key!r} key; each sample needs 'query' and 'positive'")
    if ("negative" in sample) == ("documents" in sample):
        raise InputError(f"sample {index} needs exactly one of 'negative' (irrelevant documents) or 'documents' "
                         "(a first-stage ranking that includes the positives)")
