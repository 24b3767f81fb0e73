"""Retrieval evaluation over BEIR-format datasets: loading and ranking metrics."""

from sdk.evaluation.beir import BeirDataset, load_beir
from sdk.evaluation.metrics import mrr_at_k, ndcg_at_k, recall_at_k, score_run

__all__ = ["BeirDataset", "load_beir", "mrr_at_k", "ndcg_at_k", "recall_at_k", "score_run"]
