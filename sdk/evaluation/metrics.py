"""Ranking metrics (binary or graded relevance), averaged over queries."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "map_at_k", "map_by_query", "mrr_at_k", "mrr_by_query", "ndcg_at_k", "ndcg_by_query", "recall_at_k",
    "recall_by_query", "recall_curve", "score_by_query", "score_run",
]

Run = Mapping[str, Sequence[str]]
Qrels = Mapping[str, Mapping[str, int]]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def ndcg_by_query(run: Run, qrels: Qrels, k: int = 10) -> dict[str, float | None]:
    """nDCG@k of each query of ``qrels`` (gains = relevance grades); ``None`` for a query without a
    positive judgement, which no ranking can score."""
    out: dict[str, float | None] = {}
    for qid, rels in qrels.items():
        ranked = list(run.get(qid, []))[:k]
        dcg = sum(rels.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked))
        ideal = sorted((g for g in rels.values() if g > 0), reverse=True)[:k]
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
        out[qid] = dcg / idcg if idcg > 0 else None
    return out


def ndcg_at_k(run: Run, qrels: Qrels, k: int = 10) -> float:
    """Normalised discounted cumulative gain with gains equal to the relevance grade (a query
    without a positive judgement counts as 0)."""
    return _mean([v or 0.0 for v in ndcg_by_query(run, qrels, k).values()])


def _relevant(rels: Mapping[str, int]) -> set[str]:
    return {d for d, g in rels.items() if g > 0}


def recall_by_query(run: Run, qrels: Qrels, k: int = 100) -> dict[str, float | None]:
    """Share of each query's relevant documents found in its top k; ``None`` for a query without
    a relevant document (the average skips it)."""
    out: dict[str, float | None] = {}
    for qid, rels in qrels.items():
        relevant = _relevant(rels)
        out[qid] = len(relevant.intersection(list(run.get(qid, []))[:k])) / len(relevant) if relevant else None
    return out


def recall_at_k(run: Run, qrels: Qrels, k: int = 100) -> float:
    """Share of each query's relevant documents found in its top k."""
    return _mean([v for v in recall_by_query(run, qrels, k).values() if v is not None])


def recall_curve(run: Run, qrels: Qrels, depth: int = 100) -> list[float]:
    """``recall_at_k`` for k = 1..depth (element k-1 is Recall@k) in one pass over each ranking, for
    recall plots; the same per-query fractions, so each point equals ``recall_at_k`` exactly."""
    found: list[list[int]] = []  # per query with a relevant document: relevant found within the top k
    sizes: list[int] = []
    for qid, rels in qrels.items():
        relevant = _relevant(rels)
        if not relevant:
            continue
        ranked = list(run.get(qid, []))[:depth]
        row, hits = [], set()
        for k in range(depth):
            if k < len(ranked) and ranked[k] in relevant:
                hits.add(ranked[k])
            row.append(len(hits))
        found.append(row)
        sizes.append(len(relevant))
    return [_mean([row[k] / n for row, n in zip(found, sizes, strict=True)]) for k in range(depth)]


def mrr_by_query(run: Run, qrels: Qrels, k: int = 10) -> dict[str, float]:
    """Reciprocal rank of each query's first relevant document within the top k (0 when none)."""
    out: dict[str, float] = {}
    for qid, rels in qrels.items():
        ranked = list(run.get(qid, []))[:k]
        out[qid] = next((1.0 / (i + 1) for i, doc in enumerate(ranked) if rels.get(doc, 0) > 0), 0.0)
    return out


def mrr_at_k(run: Run, qrels: Qrels, k: int = 10) -> float:
    """Mean reciprocal rank of the first relevant document within the top k."""
    return _mean(list(mrr_by_query(run, qrels, k).values()))


def map_by_query(run: Run, qrels: Qrels, k: int = 100) -> dict[str, float | None]:
    """Average precision of each query within the top k; ``None`` without a relevant document."""
    out: dict[str, float | None] = {}
    for qid, rels in qrels.items():
        relevant = _relevant(rels)
        if not relevant:
            out[qid] = None
            continue
        found, total = 0, 0.0
        for i, doc in enumerate(list(run.get(qid, []))[:k]):
            if doc in relevant:
                found += 1
                total += found / (i + 1)
        out[qid] = total / min(len(relevant), k)
    return out


def map_at_k(run: Run, qrels: Qrels, k: int = 100) -> float:
    """Mean average precision: precision at each relevant hit within the top k, over all relevant.

    Normalised by ``min(#relevant, k)`` like BEIR / pytrec_eval's ``map_cut``, so a query with more
    relevant documents than ``k`` can still reach 1.0.
    """
    return _mean([v for v in map_by_query(run, qrels, k).values() if v is not None])


_FIGURES: dict[str, tuple[Callable[[Run, Qrels, int], Mapping[str, float | None]], int]] = {
    "ndcg@10": (ndcg_by_query, 10), "mrr@10": (mrr_by_query, 10), "recall@10": (recall_by_query, 10),
    "recall@100": (recall_by_query, 100), "map@100": (map_by_query, 100),
}


def score_by_query(run: Run, qrels: Qrels) -> dict[str, dict[str, float | None]]:
    """``score_run``'s figures for each query of ``qrels`` (``None`` where the query has no relevant
    document: ``score_run`` counts it 0 in nDCG and MRR and leaves it out of recall and MAP)."""
    columns = {key: by_query(run, qrels, k) for key, (by_query, k) in _FIGURES.items()}
    return {qid: {key: column[qid] for key, column in columns.items()} for qid in qrels}


def score_run(run: Run, qrels: Qrels) -> dict[str, float]:
    """The figures this project reports: nDCG@10, MRR@10, Recall@10, Recall@100 and MAP@100."""
    return {
        "ndcg@10": ndcg_at_k(run, qrels, 10),
        "mrr@10": mrr_at_k(run, qrels, 10),
        "recall@10": recall_at_k(run, qrels, 10),
        "recall@100": recall_at_k(run, qrels, 100),
        "map@100": map_at_k(run, qrels, 100),
    }
