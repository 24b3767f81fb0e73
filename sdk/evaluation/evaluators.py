"""Evaluators: run a BEIR split through a retrieval pipeline, or a reranker over fixed candidates.

Both return an ``EvaluationResult`` with the project's metrics (``score_run``) and per-query
latency percentiles, so ``sdk eval``, benchmarks and model selection after fine-tuning all read
the same figures. Latency is measured per query with single-query calls (what a user waits for:
encoding + native query + reranking), never amortised over a batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sdk.core.errors import InputError
from sdk.evaluation.beir import BeirDataset
from sdk.evaluation.metrics import score_run

__all__ = ["EvaluationResult", "RerankerEvaluator", "RetrievalEvaluator", "index_dataset", "latency_summary"]

SearchFn = Callable[[str, str], Sequence[Any]]  # (query id, query text) -> hits with ``.id``, best first


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p95 / mean of per-query latencies, in milliseconds."""
    if not seconds:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "mean_ms": 0.0}
    arr = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)),
            "mean_ms": float(arr.mean())}


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics of one run, its latency percentiles and the run itself (query id -> doc ids)."""

    metrics: dict[str, float]
    latency: dict[str, float]
    queries: int
    run: dict[str, list[str]] = field(repr=False, default_factory=dict)
    baseline: dict[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.metrics, **self.latency, "queries": self.queries}
        if self.baseline is not None:
            out["baseline"] = dict(self.baseline)
        return out


def index_dataset(pipeline: Any, dataset: BeirDataset, *, progress: bool | None = None,
                  chunk_size: int = 256) -> int:
    """Index a dataset's whole corpus through ``pipeline.add_documents``; returns how many."""
    from sdk.core.types import Document

    docs = [Document(doc_id, text) for doc_id, text in dataset.corpus.items()]
    return int(pipeline.add_documents(docs, chunk_size=chunk_size, progress=progress))


class RetrievalEvaluator:
    """Every query of a split through a search function or a ``RetrievalPipeline``, then scored.

    ``max_queries`` keeps the first N queries (in file order) for quick checks.
    """

    def __init__(self, dataset: BeirDataset, *, limit: int = 100, max_queries: int | None = None,
                 progress: bool | None = None) -> None:
        if limit < 1:
            raise InputError(f"limit must be >= 1, got {limit}")
        if max_queries is not None and (isinstance(max_queries, bool) or not isinstance(max_queries, int)
                                        or max_queries < 1):
            raise InputError(f"max_queries must be a positive integer or None, got {max_queries!r}")
        self.dataset, self.limit, self.progress = dataset, limit, progress
        items = list(dataset.queries.items())
        self.queries = items[:max_queries] if max_queries is not None else items

    def evaluate(self, search: SearchFn) -> EvaluationResult:
        """Time and score ``search`` over the queries."""
        from sdk.core.progress import progress_bar

        run: dict[str, list[str]] = {}
        took: list[float] = []
        bar = progress_bar(len(self.queries), "querying", self.progress)
        try:
            for qid, text in self.queries:
                t0 = time.perf_counter()
                hits = search(qid, text)
                took.append(time.perf_counter() - t0)
                run[qid] = [h.id for h in hits]
                bar.update(1)
        finally:
            bar.close()
        qrels = {q: self.dataset.qrels[q] for q, _ in self.queries}
        return EvaluationResult(score_run(run, qrels), latency_summary(took), len(run), run)

    def __call__(self, pipeline: Any) -> EvaluationResult:
        """Evaluate a ``RetrievalPipeline``: one ``search`` call per query with ``limit`` hits."""
        return self.evaluate(lambda _qid, text: pipeline.search(text, limit=self.limit))


class RerankerEvaluator:
    """A cross-encoder re-sorting fixed first-stage candidates (for example a pipeline's run).

    ``candidates`` maps query id -> ranked doc ids; the first ``top_n`` are rescored with
    ``(query, document text)`` pairs and the rest keep their order behind them. The result's
    ``baseline`` holds the first stage's metrics on the same queries, so the gain is one subtraction.
    """

    def __init__(self, dataset: BeirDataset, candidates: Mapping[str, Sequence[str]], *, top_n: int = 100,
                 batch_size: int = 32, progress: bool | None = None) -> None:
        missing = [q for q in candidates if q not in dataset.queries]
        if missing:
            raise InputError(f"candidates name {len(missing)} queries not in the dataset split (e.g. {missing[0]!r})")
        self.dataset, self.top_n, self.batch_size, self.progress = dataset, top_n, batch_size, progress
        self.candidates = {q: list(ids) for q, ids in candidates.items()}

    def __call__(self, reranker: Any) -> EvaluationResult:
        def rerank(qid: str, text: str) -> list[Any]:
            ids = self.candidates[qid]
            head, tail = ids[: self.top_n], ids[self.top_n:]
            pairs = [(text, self.dataset.corpus.get(d, "")) for d in head]
            scores = np.asarray(reranker.predict(pairs, batch_size=self.batch_size), dtype=np.float64).reshape(-1) \
                if pairs else np.zeros(0)
            order = sorted(range(len(head)), key=lambda i: -scores[i])
            return [_Id(head[i]) for i in order] + [_Id(d) for d in tail]

        evaluator = RetrievalEvaluator(self.dataset, progress=self.progress)
        evaluator.queries = [(q, self.dataset.queries[q]) for q in self.candidates]
        result = evaluator.evaluate(rerank)
        qrels = {q: self.dataset.qrels[q] for q in self.candidates}
        return EvaluationResult(result.metrics, result.latency, result.queries, result.run,
                                baseline=score_run(self.candidates, qrels))


@dataclass(frozen=True)
class _Id:
    id: str
