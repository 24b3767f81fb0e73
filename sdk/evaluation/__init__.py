"""Retrieval evaluation over BEIR-format datasets: loading, ranking metrics and evaluators.

``RetrievalEvaluator`` / ``RerankerEvaluator`` measure a whole pipeline (database included);
the model evaluators (``InformationRetrievalEvaluator``, ``EmbeddingSimilarityEvaluator``,
``CrossEncoderRerankingEvaluator``, combined with ``SequentialEvaluator``) score a model
directly and are what training calls.
"""

from sdk.evaluation.base import Evaluator, SequentialEvaluator
from sdk.evaluation.beir import BeirDataset, load_beir
from sdk.evaluation.correlation import EmbeddingSimilarityEvaluator
from sdk.evaluation.evaluators import (
    EvaluationResult,
    RerankerEvaluator,
    RetrievalEvaluator,
    index_dataset,
    latency_summary,
)
from sdk.evaluation.from_beir import dev_evaluator, ir_evaluator_from_beir, reranking_evaluator_from_beir
from sdk.evaluation.information_retrieval import InformationRetrievalEvaluator
from sdk.evaluation.metrics import map_at_k, mrr_at_k, ndcg_at_k, recall_at_k, score_run
from sdk.evaluation.reranking import CrossEncoderRerankingEvaluator

__all__ = [
    "BeirDataset",
    "CrossEncoderRerankingEvaluator",
    "EmbeddingSimilarityEvaluator",
    "EvaluationResult",
    "Evaluator",
    "InformationRetrievalEvaluator",
    "RerankerEvaluator",
    "RetrievalEvaluator",
    "SequentialEvaluator",
    "dev_evaluator",
    "index_dataset",
    "ir_evaluator_from_beir",
    "latency_summary",
    "load_beir",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "recall_at_k",
    "reranking_evaluator_from_beir",
    "score_run",
]
