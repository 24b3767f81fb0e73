"""Ranking metrics (binary or graded relevance), averaged over queries."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["map_at_k", "mrr_at_k", "ndcg_at_k", "ndcg_by_query", "recall_at_k", "score_run"]

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


def recall_at_k(run: Run, qrels: Qrels, k: int = 100) -> float:
    """Share of each query's relevant documents found in its top k."""
    scores = []
    for qid, rels in qrels.items():
        relevant = {d for d, g in rels.items() if g > 0}
        if relevant:
            found = relevant.intersection(list(run.get(qid, []))[:k])
            scores.append(len(found) / len(relevant))
    return _mean(scores)


def mrr_at_k(run: Run, qrels: Qrels, k: int = 10) -> float:
    """Mean reciprocal rank of the first relevant document within the top k."""
    scores = []
    for qid, rels in qrels.items():
        rr = 0.0
        for i, doc in enumerate(list(run.get(qid, []))[:k]):
            if rels.get(doc, 0) > 0:
                rr = 1.0 / (i + 1)
                break
        scores.append(rr)
    return _mean(scores)


def map_at_k(run: Run, qrels: Qrels, k: int = 100) -> float:
    """Mean average precision: precision at each relevant hit within the top k, over all relevant.

    Normalised by ``min(#relevant, k)`` like BEIR / pytrec_eval's ``map_cut``, so a query with more
    relevant documents than ``k`` can still reach 1.0.
    """
    scores = []
    for qid, rels in qrels.items():
        relevant = {d for d, g in rels.items() if g > 0}
        if not relevant:
            continue
        found, total = 0, 0.0
        for i, doc in enumerate(list(run.get(qid, []))[:k]):
            if doc in relevant:
                found += 1
                total += found / (i + 1)
        scores.append(total / min(len(relevant), k))
    return _mean(scores)


def score_run(run: Run, qrels: Qrels) -> dict[str, float]:
    """The figures this project reports: nDCG@10, MRR@10, Recall@10, Recall@100 and MAP@100."""
    return {
        "ndcg@10": ndcg_at_k(run, qrels, 10),
        "mrr@10": mrr_at_k(run, qrels, 10),
        "recall@10": recall_at_k(run, qrels, 10),
        "recall@100": recall_at_k(run, qrels, 100),
        "map@100": map_at_k(run, qrels, 100),
    }
