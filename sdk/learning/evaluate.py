"""Scoring a serving snapshot on labelled queries, per query, through the real store (feedback labels
on condensed lists: ``condense``).

The gate compares the current and the candidate setup query by query, so scores stay per query;
both run the pipeline's own search path (native hybrid query, reranking) under the snapshot given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sdk.evaluation.metrics import ndcg_by_query

__all__ = ["condense", "hit_documents", "ndcg_per_query", "rank_queries"]


def condense(run: Mapping[str, Sequence[str]], judged: Mapping[str, set[str]]) -> dict[str, list[str]]:
    """Each ranking with the documents nobody judged removed (a "condensed list", Sakai 2007).

    Feedback only judges what was shown: a candidate that ranks an unseen document first is not
    wrong for that, it is unknown. Scoring the order of the judged documents alone removes most of
    the advantage the setup that produced the feedback would otherwise have over any challenger."""
    return {q: [d for d in ranked if d in judged.get(q, ())] for q, ranked in run.items()}


def ndcg_per_query(run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]],
                   k: int = 10) -> dict[str, float]:
    """nDCG@k of each judged query; a query with no positive is left out (the gate pairs queries)."""
    return {q: v for q, v in ndcg_by_query(run, qrels, k).items() if v is not None}


def hit_documents(hits: Sequence[Any]) -> list[str]:
    """The documents behind ranked hits, best first, each once: a chunk written by ``sdk sync`` names
    its document in metadata ("document_id"); any other hit is its own document."""
    return list(dict.fromkeys(str((h.metadata or {}).get("document_id", h.id)) for h in hits))


def rank_queries(pipeline: Any, queries: Mapping[str, str], serving: Any = None, *, limit: int = 10,
                 batch: int = 64, documents: bool = False) -> dict[str, list[str]]:
    """The ids ``pipeline`` returns for each query under ``serving`` (default: what it serves now).

    Feedback names the hits it judged (chunk ids); labelled datasets name documents: ``documents``
    maps the hits to them (``hit_documents``)."""
    qids = list(queries)
    run: dict[str, list[str]] = {}
    for start in range(0, len(qids), batch):
        chunk = qids[start:start + batch]
        results = pipeline.search_batch([queries[q] for q in chunk], limit=limit, serving=serving)
        run.update({q: hit_documents(hits) if documents else [h.id for h in hits]
                    for q, hits in zip(chunk, results, strict=True)})
    return run
