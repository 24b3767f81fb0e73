"""Fitting the fusion of the hybrid legs to what users chose.

Each training query runs once per leg, natively and alone, as deep as the native hybrid query
would fetch that leg (``HybridQuery.candidates``). Every fusion the store can run natively is then
replayed on those rankings with ``sdk.core.fusion`` (the formulas the exact in-memory reference
adapter uses) and scored by nDCG@10 against the feedback labels: each single leg, each native
method, and per-leg weights on a grid where the store's native form takes weights. The best one
becomes a candidate; the gate then measures it with real native queries on held-out queries.

Single legs are always among the choices, so the fitted setting is never below the best single leg
on the data it was fitted on; that is what keeps a weak leg from dragging a strong one down.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sdk.core.fusion import fuse
from sdk.core.types import Fusion, FusionMethod, HybridQuery
from sdk.learning.evaluate import condense, ndcg_per_query
from sdk.retrieval.fusion import native_weights, single_leg_queries

__all__ = ["FusionFit", "fit_fusion", "fusion_choices"]

WEIGHT_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class FusionFit:
    """The best setting on the training queries, as a serving-state change, with what was tried."""

    change: dict[str, Any]
    train_ndcg: float
    current_ndcg: float
    tried: int
    table: list[tuple[str, float]] = field(default_factory=list)  # (setting, nDCG@10), best first


def _describe(change: Mapping[str, Any]) -> str:
    legs = change.get("legs")
    if legs is not None and len(legs) == 1:
        return f"{legs[0]} only"
    f = change["fusion"]
    weights = ", ".join(f"{k}={v:g}" for k, v in sorted(f["weights"].items())) or "equal"
    return f"{f['method']} k={f['k']} ({weights})"


def fusion_choices(caps: Any, legs: Sequence[str], current: Fusion) -> list[dict[str, Any]]:
    """Every serving change the store can run natively: single legs, methods, weight grids."""
    out: list[dict[str, Any]] = [{"legs": [leg], "fusion": None} for leg in legs]
    for method in sorted(caps.fusions, key=lambda m: m.value):
        k = int(caps.rrf_k or (current.k if current.method is FusionMethod.RRF else 60))
        grids: list[dict[str, float]] = [{}]
        if native_weights(caps, method) and len(legs) == 2:
            grids += [{legs[0]: w, legs[1]: round(1.0 - w, 2)} for w in WEIGHT_GRID]
        for weights in grids:
            out.append({"legs": list(legs), "fusion": {"method": method.value, "k": k, "weights": weights}})
    return out


def _replay(leg_runs: Mapping[str, Mapping[str, list[tuple[str, float]]]], change: Mapping[str, Any],
            kinds: Mapping[str, str], limit: int) -> dict[str, list[str]]:
    legs = change["legs"]
    qids = next(iter(leg_runs.values())).keys()
    if len(legs) == 1:
        return {q: [d for d, _ in leg_runs[legs[0]][q][:limit]] for q in qids}
    f = change["fusion"]
    method = FusionMethod(f["method"])
    return {q: [d for d, _ in fuse({leg: leg_runs[leg][q] for leg in legs}, method, f["k"], f["weights"], kinds, limit)]
            for q in qids}


def leg_rankings(pipeline: Any, queries: Mapping[str, str], *, limit: int = 10,
                 serving: Any = None) -> dict[str, dict[str, list]]:
    """Each leg's native ranking of every query, as deep as a hybrid query fetches it.

    ``serving`` is the snapshot to rank with (``pipeline.serving_for(state)``; default: the
    pipeline's configured models and collection): after an encoder promotion its queries must be
    encoded by the promoted encoder and sent to the collection version built with it. Every query
    carries the snapshot's checked spec (``expect``), as the pipeline's own searches do."""
    snap = serving if serving is not None else pipeline._base
    qids = list(queries)
    texts = [queries[q] for q in qids]
    dense = list(np.asarray(snap.dense.encode_query(texts))) if snap.dense is not None else None
    sparse = list(snap.sparse.encode_query(texts)) if snap.sparse is not None else None
    expect = pipeline._expected(snap)
    out: dict[str, dict[str, list]] = {leg: {} for leg in snap.legs}
    fetch = max(limit, pipeline.rerank_top) if snap.reranker is not None else limit  # as build_query does
    common = {"dense_field": pipeline.dense_field, "sparse_field": pipeline.sparse_field, "filter": pipeline.filter,
              "limit": fetch, "candidate_limits": pipeline.candidate_limits}
    for i, qid in enumerate(qids):
        query = HybridQuery(dense=np.asarray(dense[i], np.float32) if dense is not None else None,
                            sparse=sparse[i] if sparse is not None else None,
                            text=texts[i] if "text" in snap.legs else None, **common)
        for leg, single in single_leg_queries(query, min_legs=1).items():  # the same legs client fusion runs
            out[leg][qid] = [(h.id, h.score) for h in pipeline.adapter.query(snap.target, single, expect=expect)]
    return out


def fit_fusion(pipeline: Any, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]], *,
               current: Mapping[str, Any] | None = None, limit: int = 10,
               judged: Mapping[str, set[str]] | None = None, serving: Any = None) -> FusionFit | None:
    """The best native fusion for ``queries`` (``None`` when the pipeline has fewer than two legs).

    ``serving``: a snapshot with every leg (see ``leg_rankings``). With ``judged`` (feedback: the
    documents shown or judged per query) every replayed ranking is condensed to them before scoring
    (``sdk.learning.evaluate.condense``), as the gate does."""
    legs = pipeline._base.legs
    if len(legs) < 2:
        return None
    snap = serving if serving is not None else pipeline._base
    runs = leg_rankings(pipeline, queries, limit=limit, serving=snap)
    sim = getattr(getattr(snap.dense, "similarity_fn_name", None), "value", None) or "cosine"
    kinds = {leg: (sim if leg == "dense" else "sparse") for leg in legs}
    choices = fusion_choices(pipeline.adapter.capabilities, legs, pipeline._base.fusion)
    scored = []
    def score(change: Mapping[str, Any]) -> dict[str, float]:
        run = _replay(runs, change, kinds, limit)  # what would be shown, then (feedback) condensed
        return ndcg_per_query(condense(run, judged) if judged else run, qrels)

    for change in choices:
        per_query = score(change)
        scored.append((float(np.mean(list(per_query.values()))) if per_query else 0.0, change))
    cur = dict(current or {})
    if cur.get("legs") is None:
        f = pipeline._base.fusion
        cur = {"legs": list(legs), "fusion": cur.get("fusion") or {"method": f.method.value, "k": f.k,
                                                                     "weights": dict(f.weights)}}
    if len(cur["legs"]) > 1 and cur.get("fusion") is None:
        f = pipeline._base.fusion
        cur["fusion"] = {"method": f.method.value, "k": f.k, "weights": dict(f.weights)}
    cur_q = score(cur)
    current_ndcg = float(np.mean(list(cur_q.values()))) if cur_q else 0.0
    # Best first; among equals, the order of fusion_choices (single legs, then simple before weighted).
    ranked = sorted(range(len(scored)), key=lambda i: (-round(scored[i][0], 6), i))
    best_score, best = scored[ranked[0]]
    return FusionFit(best, best_score, current_ndcg, len(scored),
                     [(_describe(scored[i][1]), round(scored[i][0], 4)) for i in ranked])
