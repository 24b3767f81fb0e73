"""Retrieval evaluation over BEIR-format datasets: loading, ranking metrics and evaluators."""

from sdk.evaluation.beir import BeirDataset, load_beir
from sdk.evaluation.evaluators import (
    EvaluationResult,
    RerankerEvaluator,
    RetrievalEvaluator,
    index_dataset,
    latency_summary,
)
from sdk.evaluation.metrics import map_at_k, mrr_at_k, ndcg_at_k, recall_at_k, score_run

__all__ = [
    "BeirDataset",
    "EvaluationResult",
    "RerankerEvaluator",
    "RetrievalEvaluator",
    "index_dataset",
    "latency_summary",
    "load_beir",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "recall_at_k",
    "score_run",
]
