"""Evaluators built from a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).

``max_corpus`` shrinks large corpora for evaluation during training: every document relevant to
an evaluated query is kept, then others until the limit, so every query can still find its
answers. ``max_queries`` keeps that many queries. Both take the first ones in file order, or a
seeded random sample (kept in file order) when ``seed`` is given; either way the subset is the
same on every call. Graded relevance becomes binary (grade > 0), which is what the
training-time evaluators measure.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from sdk.core.errors import InputError
from sdk.evaluation.beir import BeirDataset, load_beir
from sdk.evaluation.information_retrieval import InformationRetrievalEvaluator
from sdk.evaluation.reranking import CrossEncoderRerankingEvaluator

__all__ = ["dev_evaluator", "ir_evaluator_from_beir", "reranking_evaluator_from_beir"]


def _check_limit(value: int | None, what: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InputError(f"{what} must be a positive integer or None, got {value!r}")
    return value


def _pick(items: list[str], count: int | None, seed: int | None) -> list[str]:
    """``count`` of ``items`` (all when None): the first ones, or a seeded sample kept in order."""
    if count is None or count >= len(items):
        return items
    if seed is None:
        return items[:count]
    chosen = set(random.Random(seed).sample(items, count))
    return [item for item in items if item in chosen]


def _subset(folder: str | Path, split: str, max_corpus: int | None, max_queries: int | None,
            seed: int | None = None) -> tuple[dict[str, str], dict[str, str], dict[str, set[str]]]:
    """(queries, corpus, relevant ids) of a BEIR split, shrunk as the module docstring says."""
    _check_limit(max_corpus, "max_corpus")
    _check_limit(max_queries, "max_queries")
    data: BeirDataset = load_beir(folder, split)
    relevant = {q: {d for d, grade in data.qrels.get(q, {}).items() if grade > 0} for q in data.queries}
    qids = _pick([q for q in data.queries if relevant[q]], max_queries, seed)
    if not qids:
        raise InputError(f"{folder} has no query with a relevant document in split {split!r}")
    queries = {q: data.queries[q] for q in qids}
    relevant = {q: relevant[q] for q in qids}
    if max_corpus is None:
        return queries, dict(data.corpus), relevant
    needed = set().union(*relevant.values())
    others = [d for d in data.corpus if d not in needed]
    keep = needed.union(_pick(others, max(0, max_corpus - len(needed & data.corpus.keys())), seed))
    return queries, {d: text for d, text in data.corpus.items() if d in keep}, relevant


def ir_evaluator_from_beir(folder: str | Path, split: str = "test", name: str | None = None,
                           max_corpus: int | None = None, max_queries: int | None = None,
                           seed: int | None = None, **kwargs: Any) -> InformationRetrievalEvaluator:
    """An ``InformationRetrievalEvaluator`` over a BEIR split; ``name`` defaults to the folder's name.

    Further keyword arguments go to ``InformationRetrievalEvaluator`` (k lists, prompts, ...).
    """
    queries, corpus, relevant = _subset(folder, split, max_corpus, max_queries, seed)
    return InformationRetrievalEvaluator(queries, corpus, relevant,
                                         name=Path(folder).name if name is None else name, **kwargs)


def reranking_evaluator_from_beir(folder: str | Path, split: str = "test", retriever_encoder: Any = None,
                                  top_k: int = 100, name: str | None = None, max_corpus: int | None = None,
                                  max_queries: int | None = None, seed: int | None = None, at_k: int = 10,
                                  always_rerank_positives: bool = True, batch_size: int = 64,
                                  encode_batch_size: int = 32, **kwargs: Any) -> CrossEncoderRerankingEvaluator:
    """A ``CrossEncoderRerankingEvaluator`` whose candidates are ``retriever_encoder``'s top ``top_k``.

    The retriever (a DenseEncoder or SparseEncoder) runs once, here: each sample's ``documents`` is
    its ranking and ``positive`` the texts of the relevant documents in the corpus, so the result
    reports the first stage (``base_*``) next to the reranked figures. Further keyword arguments
    go to ``CrossEncoderRerankingEvaluator``.
    """
    if retriever_encoder is None:
        raise InputError("reranking_evaluator_from_beir needs retriever_encoder (a DenseEncoder or SparseEncoder)")
    _check_limit(top_k, "top_k")
    queries, corpus, relevant = _subset(folder, split, max_corpus, max_queries, seed)
    first_stage = InformationRetrievalEvaluator(
        queries, corpus, relevant, mrr_at_k=[top_k], ndcg_at_k=[top_k], accuracy_at_k=[top_k],
        precision_recall_at_k=[top_k], map_at_k=[top_k], batch_size=encode_batch_size, write_csv=False,
    )
    ranked = next(iter(first_stage.search(retriever_encoder).values()))[0].tolist()
    samples = []
    for qid, hits in zip(first_stage.query_ids, ranked, strict=True):
        samples.append({
            "query": queries[qid],
            "positive": [corpus[d] for d in sorted(relevant[qid]) if d in corpus],
            "documents": [first_stage.corpus[i] for i in hits],
        })
    return CrossEncoderRerankingEvaluator(samples, at_k=at_k, always_rerank_positives=always_rerank_positives,
                                          name=Path(folder).name if name is None else name,
                                          batch_size=batch_size, **kwargs)


def dev_evaluator(kind: str, folder: str | Path, split: str, max_queries: int | None = None,
                  max_corpus: int | None = None, retriever: Any = None, top_k: int = 100, name: str = "dev",
                  seed: int | None = None, **kwargs: Any) -> InformationRetrievalEvaluator | CrossEncoderRerankingEvaluator:
    """The dev-set evaluator for a model kind: retrieval metrics for "dense" / "sparse" models,
    reranking of ``retriever``'s top ``top_k`` for "cross" (cross-encoders)."""
    if kind in ("dense", "sparse"):
        return ir_evaluator_from_beir(folder, split, name=name, max_corpus=max_corpus, max_queries=max_queries,
                                      seed=seed, **kwargs)
    if kind == "cross":
        return reranking_evaluator_from_beir(folder, split, retriever, top_k=top_k, name=name, max_corpus=max_corpus,
                                             max_queries=max_queries, seed=seed, **kwargs)
    raise InputError(f"unknown model kind {kind!r}; use 'dense', 'sparse' or 'cross'")
