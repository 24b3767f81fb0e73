"""Hard-negative mining: (anchor, positive) pairs in, triplets / n-tuples / labeled rows out.

The selection rules are those of sentence-transformers' ``util.mine_hard_negatives`` (ST 6.2), so
a dataset mined here with one of our encoders equals the one ST mines with the same weights: the
corpus is the positives plus any extra documents, de-duplicated by text (so a text identical to a
positive *is* that positive); every positive of an anchor text, over all its rows, is excluded
before candidates are ranked; the margins compare against the anchor's weakest positive.

Search is exact (blocked matrix products + top-k in torch, on the encoder's device) unless a
``store`` is given: then the store only proposes the candidates and their scores are recomputed
here, so filters and margins see the same numbers as in exact search.
"""

from __future__ import annotations

import logging
import random
import sys
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from sdk.core.errors import InputError

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = ["OUTPUT_FORMATS", "mine_hard_negatives"]

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = ("triplet", "n-tuple", "labeled-pair", "labeled-list")
_STRATEGIES = ("top", "random")
_BLOCK = 1 << 25  # score elements per search block (128 MiB of float32)
_CORPUS_BLOCK = 1 << 20  # documents per block; larger corpora are merged block by block
_INF = float("inf")


def mine_hard_negatives(
    dataset: Dataset,
    model: Any,
    anchor_column_name: str | None = None,
    positive_column_name: str | None = None,
    corpus: Sequence[str] | None = None,
    cross_encoder: Any = None,
    range_min: int = 0,
    range_max: int | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    num_negatives: int = 3,
    sampling_strategy: Literal["random", "top"] = "top",
    query_prompt_name: str | None = None,
    query_prompt: str | None = None,
    corpus_prompt_name: str | None = None,
    corpus_prompt: str | None = None,
    include_positives: bool = False,
    output_format: Literal["triplet", "n-tuple", "labeled-pair", "labeled-list"] = "triplet",
    output_scores: bool = False,
    batch_size: int = 32,
    verbose: bool = True,
    *,
    store: Any = None,
    seed: int | None = None,
) -> Dataset:
    """Add hard negatives to ``dataset``'s (anchor, positive) pairs; arguments as in sentence-transformers.

    ``model`` is a DenseEncoder (embeddings L2-normalised, scored with its similarity) or a
    SparseEncoder (its own dot/cosine scores); ``cross_encoder`` (1 label) rescores the candidates
    when a margin or score bound is set. Candidates are ranked, ``range_min`` skipped, and
    ``num_negatives`` taken from the best ``range_max`` ("top") or sampled among the valid ones
    ("random", reproducible with ``seed``). ``store`` (a ``VectorStore`` or URL) searches through a
    temporary collection instead of exact search. Rows that get no valid negative are dropped
    (triplet / n-tuple: each row needs its negatives). Raises ``InputError`` on bad arguments.
    """
    anchor_col, positive_col = _pick_columns(dataset, anchor_column_name, positive_column_name)
    scalars = {"max_score": max_score, "min_score": min_score, "absolute_margin": absolute_margin,
               "relative_margin": relative_margin}
    output_format = _check_arguments(num_negatives, range_min, range_max, batch_size, scalars, sampling_strategy,
                                      output_format, seed, include_positives, cross_encoder)
    anchors = _texts(dataset[anchor_col], f"column {anchor_col!r}")
    positives = _texts(dataset[positive_col], f"column {positive_col!r}")
    if not anchors:
        raise InputError("dataset has no rows; pass at least one (anchor, positive) pair")
    rows_per_anchor = Counter(anchors)
    max_positives = max(rows_per_anchor.values())
    filtering = absolute_margin is not None or relative_margin is not None or max_score is not None
    if range_max is None:
        widen = filtering or (cross_encoder is not None and min_score is not None)
        range_max = range_min + num_negatives * (10 if widen else 1) + max_positives
        if verbose:
            print(f"Setting range_max to {range_max} based on the provided parameters.")
    if range_min >= range_max:
        raise InputError(f"range_min ({range_min}) must be smaller than range_max ({range_max})")
    if num_negatives > range_max - range_min:
        raise InputError(f"cannot mine {num_negatives} negatives per anchor: only {range_max - range_min} "
                         f"candidates remain between range_min={range_min} and range_max={range_max}; lower "
                         "num_negatives or range_min, or raise range_max")

    # the corpus: extra documents then positives, each distinct text once; anchors likewise
    docs = list(dict.fromkeys([*([] if corpus is None else _texts(corpus, "corpus")), *positives]))
    queries = list(dict.fromkeys(anchors))
    if verbose and len(queries) != len(anchors):
        print(f"Found {len(queries)} unique queries out of {len(anchors)} total queries.")
    if verbose and max_positives > 1:
        print(f"Found an average of {np.mean(list(rows_per_anchor.values())):.3f} positives per query.")
    pair_query, pair_doc = _distinct_pairs(anchors, positives, queries, docs)

    space = _space_for(model)
    c_emb = space.encode(docs, "document", corpus_prompt_name, corpus_prompt, batch_size, verbose)
    q_emb = space.encode(queries, "query", query_prompt_name, query_prompt, batch_size, verbose)
    width = range_max + max_positives  # room for the positives, masked below
    if store is None:
        scores, indices = _exact_search(space, q_emb, c_emb, min(width, len(docs)))
    else:
        scores, indices = _store_search(store, space, q_emb, c_emb, width, verbose)
    if scores.size(1) < width:  # fewer documents than wanted: pad, as ST does
        pad = width - scores.size(1)
        scores = torch.cat([scores, scores.new_full((scores.size(0), pad), -_INF)], dim=1)
        indices = torch.cat([indices, indices.new_full((indices.size(0), pad), -1)], dim=1)
    pos_scores = space.pair_scores(q_emb, pair_query, c_emb, pair_doc)
    if cross_encoder is not None and (filtering or min_score is not None):
        scores, pos_scores = _rescore(cross_encoder, queries, docs, indices, pair_query, pair_doc, batch_size,
                                      verbose)
    scores[indices < 0] = -_INF
    if not include_positives:  # every positive of the anchor text, over all of its rows
        keys = torch.arange(len(queries)).unsqueeze(1) * len(docs) + indices
        scores[torch.isin(keys, pair_query * len(docs) + pair_doc) & (indices >= 0)] = -_INF
    skipped = _apply_filters(scores, pos_scores, pair_query, len(queries), **scalars)

    neg_scores, order = torch.topk(scores, k=range_max, dim=1)
    neg_idx, neg_scores = indices.gather(1, order)[:, range_min:], neg_scores[:, range_min:]
    if sampling_strategy == "top":
        neg_idx, neg_scores = neg_idx[:, :num_negatives], neg_scores[:, :num_negatives]
    else:  # draw among the valid candidates (all of the window when too few), then best first again
        rng: Any = random.Random(seed) if seed is not None else random
        options = (neg_scores.size(1) - neg_scores.isinf().sum(1)).clamp(min=num_negatives)
        picks = torch.tensor([rng.sample(range(int(n)), k=num_negatives) for n in options], dtype=torch.long)
        neg_scores, order = neg_scores.gather(1, picks).sort(dim=1, descending=True)
        neg_idx = neg_idx.gather(1, picks).gather(1, order)
    if verbose:
        print("Negative candidates mined, preparing dataset...")

    data, kept_neg, kept_gap, possible = _rows(output_format, output_scores, anchor_col, positive_col, queries,
                                               docs, pair_query, pair_doc, pos_scores, neg_idx, neg_scores,
                                               len(anchors))
    from datasets import Dataset

    out = Dataset.from_dict(data)
    if verbose:
        _report(pos_scores, kept_neg, kept_gap, skipped, possible - len(out), possible, scalars, range_min)
    return out


# ---- arguments -------------------------------------------------------------------------------


def _pick_columns(dataset: Any, anchor: str | None, positive: str | None) -> tuple[str, str]:
    columns = getattr(dataset, "column_names", None)
    if not isinstance(columns, list):
        raise InputError(f"dataset must be a datasets.Dataset of (anchor, positive) columns, got "
                         f"{type(dataset).__name__}")
    for name, value in (("anchor_column_name", anchor), ("positive_column_name", positive)):
        if value is not None and value not in columns:
            raise InputError(f"{name}={value!r} is not a column of the dataset (columns: {columns})")
    if anchor is None or positive is None:
        if len(columns) < 2:
            raise InputError(f"dataset needs an anchor and a positive column, it has {columns}")
    anchor = anchor if anchor is not None else columns[0]
    positive = positive if positive is not None else next(c for c in columns if c != anchor)
    if anchor == positive:
        raise InputError(f"anchor and positive columns are both {anchor!r}; name two different columns")
    return anchor, positive


def _check_arguments(num_negatives: Any, range_min: Any, range_max: Any, batch_size: Any,
                     scalars: dict[str, Any], sampling_strategy: Any, output_format: Any, seed: Any,
                     include_positives: bool, cross_encoder: Any) -> str:
    """Everything that can be checked before encoding; returns the output format to use."""
    _check_int("num_negatives", num_negatives, 1)
    _check_int("range_min", range_min, 0)
    _check_int("batch_size", batch_size, 1)
    if range_max is not None:
        _check_int("range_max", range_max, 1)
    for name, value in scalars.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InputError(f"{name} must be a number or None, got {value!r}")
    if sampling_strategy not in _STRATEGIES:
        raise InputError(f"unknown sampling_strategy {sampling_strategy!r}; use 'top' or 'random'")
    if output_format not in OUTPUT_FORMATS:
        raise InputError(f"unknown output_format {output_format!r}; use one of {', '.join(OUTPUT_FORMATS)}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InputError(f"seed must be an int or None, got {seed!r}")
    if cross_encoder is not None:
        if not callable(getattr(cross_encoder, "predict", None)):
            raise InputError(f"cross_encoder must be a CrossEncoder, got {type(cross_encoder).__name__}")
        if getattr(cross_encoder, "num_labels", 1) != 1:
            raise InputError(f"cross_encoder must give one score per pair, this one has {cross_encoder.num_labels}")
    if include_positives:
        if range_min or range_max is not None or any(v is not None for v in scalars.values()) \
                or sampling_strategy != "top":
            logger.warning("include_positives=True with range_min, range_max, score bounds, margins or random "
                           "sampling set may still drop the positives from the candidates")
        if output_format != "n-tuple":
            logger.warning('include_positives=True keeps the ranking order: output_format is set to "n-tuple"')
        return "n-tuple"
    return str(output_format)


def _distinct_pairs(anchors: list[str], positives: list[str], queries: list[str],
                    docs: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(query index, document index) of each distinct pair, grouped by query in first-seen order."""
    doc_of = {text: i for i, text in enumerate(docs)}
    query_of = {text: i for i, text in enumerate(queries)}
    by_query: list[dict[int, None]] = [{} for _ in queries]
    for anchor, positive in zip(anchors, positives, strict=True):
        by_query[query_of[anchor]][doc_of[positive]] = None
    pair_query = torch.repeat_interleave(torch.arange(len(queries)), torch.tensor([len(p) for p in by_query]))
    return pair_query, torch.tensor([d for own in by_query for d in own], dtype=torch.long)


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")


def _texts(values: Any, what: str) -> list[str]:
    texts = list(values)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"{what} holds a {type(text).__name__} at row {i}; every entry must be a string")
    return texts


# ---- embedding spaces ------------------------------------------------------------------------


class _DenseSpace:
    """Unit-length dense embeddings scored with the model's similarity, as ST mines them."""

    leg = "dense"

    def __init__(self, model: Any) -> None:
        self.model = model
        self.device = getattr(model, "device", torch.device("cpu"))

    def encode(self, texts: list[str], role: str, prompt_name: str | None, prompt: str | None,
               batch_size: int, verbose: bool) -> torch.Tensor:
        fn = self.model.encode_query if role == "query" else self.model.encode_document
        emb = fn(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_tensor=True,
                 show_progress_bar=verbose, **_prompt_kwargs(prompt_name, prompt))
        return torch.as_tensor(emb).to(self.device)

    def row_cost(self, emb: torch.Tensor) -> int:
        """Extra score-block elements per query row (a sparse block densifies its queries)."""
        return 0

    def block(self, q_emb: torch.Tensor, q: slice, c_emb: torch.Tensor, c: slice) -> torch.Tensor:
        return self.model.similarity(q_emb[q], c_emb[c])

    def pair_scores(self, q_emb: torch.Tensor, qi: torch.Tensor, c_emb: torch.Tensor,
                    ci: torch.Tensor) -> torch.Tensor:
        qi, ci = qi.to(q_emb.device), ci.to(c_emb.device)
        return self.model.similarity_pairwise(q_emb[qi], c_emb[ci]).float().cpu()

    def store_rows(self, emb: torch.Tensor) -> list[Any]:
        return list(emb.float().cpu().numpy())

    def field(self, emb: torch.Tensor) -> Any:
        from sdk.core.similarity import Similarity
        from sdk.core.spec import DenseField

        name = getattr(self.model, "similarity_fn_name", None) or "cosine"
        return DenseField("dense", int(emb.size(1)), Similarity.parse(getattr(name, "value", name)))


class _SparseSpace(_DenseSpace):
    """SPLADE vectors as sparse COO matrices: dot product (or cosine), never densified whole."""

    leg = "sparse"

    def encode(self, texts: list[str], role: str, prompt_name: str | None, prompt: str | None,
               batch_size: int, verbose: bool) -> torch.Tensor:
        fn = self.model.encode_query if role == "query" else self.model.encode_document
        emb = fn(texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=verbose,
                 **_prompt_kwargs(prompt_name, prompt))
        emb = emb.to_sparse().coalesce().float().to(self.device)
        if getattr(self.model.similarity_fn_name, "value", "dot") == "cosine":
            norms = torch.sparse.sum(emb * emb, dim=1).to_dense().sqrt().clamp_min(1e-12)
            emb = torch.sparse_coo_tensor(emb.indices(), emb.values() / norms[emb.indices()[0]], emb.shape,
                                          is_coalesced=True)
        return emb

    def row_cost(self, emb: torch.Tensor) -> int:
        return int(emb.size(1))

    @staticmethod
    def _take(emb: torch.Tensor, rows: torch.Tensor | slice) -> torch.Tensor:
        if isinstance(rows, slice):
            if (rows.start, rows.stop) == (0, emb.size(0)):
                return emb
            rows = torch.arange(emb.size(0))[rows]
        return emb.index_select(0, rows.to(emb.device))

    def block(self, q_emb: torch.Tensor, q: slice, c_emb: torch.Tensor, c: slice) -> torch.Tensor:
        return torch.sparse.mm(self._take(c_emb, c), self._take(q_emb, q).to_dense().T).T

    def pair_scores(self, q_emb: torch.Tensor, qi: torch.Tensor, c_emb: torch.Tensor,
                    ci: torch.Tensor) -> torch.Tensor:
        step = max(1, _BLOCK // max(1, self.row_cost(q_emb)))
        parts = [(self._take(q_emb, qi[s:s + step]).to_dense() * self._take(c_emb, ci[s:s + step]).to_dense()
                  ).sum(1).float().cpu() for s in range(0, len(qi), step)]
        return torch.cat(parts) if parts else torch.zeros(0)

    def store_rows(self, emb: torch.Tensor) -> list[Any]:
        from sdk.core.types import SparseVector

        emb = emb.coalesce().cpu()
        counts = torch.bincount(emb.indices()[0], minlength=emb.size(0)).tolist()
        cols, vals = emb.indices()[1].split(counts), emb.values().split(counts)
        return [SparseVector(tuple(c.tolist()), tuple(v.tolist())) for c, v in zip(cols, vals, strict=True)]

    def field(self, emb: torch.Tensor) -> Any:
        from sdk.core.spec import SparseField

        return SparseField("sparse")


def _prompt_kwargs(prompt_name: str | None, prompt: str | None) -> dict[str, Any]:
    """Only the prompts the caller chose: leaving them out lets the encoder pick its role prompt."""
    return {k: v for k, v in (("prompt_name", prompt_name), ("prompt", prompt)) if v is not None}


def _space_for(model: Any) -> _DenseSpace:
    sparse = sys.modules.get("sdk.encoders.sparse")  # not loaded: the model cannot be one (and no import cost)
    if sparse is not None and isinstance(model, sparse.SparseEncoder):
        return _SparseSpace(model)
    for attr in ("encode_query", "encode_document", "similarity", "similarity_pairwise"):
        if not callable(getattr(model, attr, None)):
            raise InputError(f"model must be a DenseEncoder or SparseEncoder (it needs {attr}), got "
                             f"{type(model).__name__}")
    return _DenseSpace(model)


# ---- search ----------------------------------------------------------------------------------


def _exact_search(space: _DenseSpace, q_emb: torch.Tensor, c_emb: torch.Tensor,
                  k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` scores and corpus indices per query, best first, over blocks of queries x documents."""
    n_q, n_c = q_emb.size(0), c_emb.size(0)
    c_step = min(n_c, _CORPUS_BLOCK)
    q_step = max(1, _BLOCK // (c_step + space.row_cost(q_emb)))
    all_scores, all_idx = [], []
    for qs in range(0, n_q, q_step):
        q = slice(qs, min(qs + q_step, n_q))
        best_s = best_i = None
        for cs in range(0, n_c, c_step):
            block = space.block(q_emb, q, c_emb, slice(cs, min(cs + c_step, n_c)))
            top_s, top_i = torch.topk(block, k=min(k, block.size(1)), dim=1)
            top_i = top_i + cs
            if best_s is not None:  # merge with the best of the earlier corpus blocks
                top_s, top_i = torch.cat([best_s, top_s], 1), torch.cat([best_i, top_i], 1)
                top_s, pos = torch.topk(top_s, k=min(k, top_s.size(1)), dim=1)
                top_i = top_i.gather(1, pos)
            best_s, best_i = top_s, top_i
        all_scores.append(best_s.float().cpu())
        all_idx.append(best_i.cpu())
    return torch.cat(all_scores), torch.cat(all_idx)


def _store_search(store: Any, space: _DenseSpace, q_emb: torch.Tensor, c_emb: torch.Tensor, k: int,
                  verbose: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates from a temporary collection in ``store``; scores recomputed exactly, best first."""
    from sdk.core.progress import progress_bar
    from sdk.core.spec import CollectionSpec
    from sdk.core.types import HybridQuery, Record
    from sdk.retrieval.pipeline import resolve_store

    adapter, owned = resolve_store(store)
    name, leg = f"hard_negatives_{uuid.uuid4().hex[:16]}", space.leg
    n_q, n_c = q_emb.size(0), c_emb.size(0)
    rows: list[list[int]] = []
    try:
        spec = CollectionSpec(name, **{leg: (space.field(c_emb),)})
        adapter.ensure_collection(spec)
        field = "vectors" if leg == "dense" else "sparse"
        docs = space.store_rows(c_emb)
        adapter.upsert(name, (Record(str(i), **{field: {leg: row}}) for i, row in enumerate(docs)), expect=spec)
        bar = progress_bar(n_q, "Querying the store", verbose, unit="query")
        for row in space.store_rows(q_emb):
            found = [int(h.id) for h in adapter.query(name, HybridQuery(**{leg: row}, limit=k), expect=spec)
                     if h.id.isdigit() and int(h.id) < n_c]
            found = list(dict.fromkeys(found))[:k]
            rows.append(found + [-1] * (k - len(found)))
            bar.update(1)
        bar.close()
    finally:
        try:
            adapter.drop(name)
        finally:
            if owned:
                adapter.close()
    indices = torch.tensor(rows, dtype=torch.long).reshape(n_q, k)
    scores = torch.full(indices.shape, -_INF)
    valid = indices >= 0
    qi, col = valid.nonzero(as_tuple=True)
    scores[qi, col] = space.pair_scores(q_emb, qi, c_emb, indices[qi, col])
    scores, order = scores.sort(dim=1, descending=True, stable=True)
    return scores, indices.gather(1, order)


# ---- rescoring and filters -------------------------------------------------------------------


def _rescore(cross_encoder: Any, queries: list[str], docs: list[str], indices: torch.Tensor,
             pair_query: torch.Tensor, pair_doc: torch.Tensor, batch_size: int,
             verbose: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-encoder scores of every candidate and every positive pair (one predict call each)."""
    qi, col = (indices >= 0).nonzero(as_tuple=True)
    pairs = [(queries[q], docs[d]) for q, d in zip(qi.tolist(), indices[qi, col].tolist(), strict=True)]
    scores = torch.full(indices.shape, -_INF)
    if pairs:
        scores[qi, col] = _predict(cross_encoder, pairs, batch_size, verbose)
    positives = [(queries[q], docs[d]) for q, d in zip(pair_query.tolist(), pair_doc.tolist(), strict=True)]
    return scores, _predict(cross_encoder, positives, batch_size, verbose)


def _predict(cross_encoder: Any, pairs: list[tuple[str, str]], batch_size: int, verbose: bool) -> torch.Tensor:
    out = cross_encoder.predict(pairs, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=verbose)
    return torch.as_tensor(out).float().cpu().reshape(len(pairs))


def _apply_filters(scores: torch.Tensor, pos_scores: torch.Tensor, pair_query: torch.Tensor, n_queries: int, *,
                   max_score: float | None, min_score: float | None, absolute_margin: float | None,
                   relative_margin: float | None) -> dict[str, tuple[int, float]]:
    """Set excluded candidates to -inf in place; returns (count, share) skipped per rule (for the report)."""
    skipped: dict[str, tuple[int, float]] = {}
    total = scores.numel()

    def drop(name: str, removed: torch.Tensor, shrink: bool) -> None:
        nonlocal total
        count = int(removed.sum())
        scores[removed] = -_INF
        if count:
            skipped[name] = (count, count / total if total else 0.0)
            total -= count if shrink else 0

    if absolute_margin is not None or relative_margin is not None:
        # the margin is taken from the anchor's weakest positive: the safe choice with several
        weakest = torch.full((n_queries,), _INF, dtype=pos_scores.dtype)
        weakest = weakest.scatter_reduce(0, pair_query, pos_scores, reduce="amin").unsqueeze(1)
        if absolute_margin is not None:
            drop("absolute_margin", scores + absolute_margin > weakest, True)
        if relative_margin is not None:
            drop("relative_margin", scores > weakest - weakest.abs() * relative_margin, True)
    if max_score is not None:
        drop("max_score", scores > max_score, False)
    if min_score is not None:
        drop("min_score", scores < min_score, False)
    return skipped


# ---- output ----------------------------------------------------------------------------------


def _rows(fmt: str, with_scores: bool, anchor_col: str, positive_col: str, queries: list[str], docs: list[str],
          pair_query: torch.Tensor, pair_doc: torch.Tensor, pos_scores: torch.Tensor, neg_idx: torch.Tensor,
          neg_scores: torch.Tensor, n_rows: int) -> tuple[dict[str, list[Any]], torch.Tensor, torch.Tensor, int]:
    """The output columns, plus the kept negative scores, positive-negative gaps and row budget."""
    per_pair_idx, per_pair_s = neg_idx[pair_query], neg_scores[pair_query]  # (pairs, n)
    keep = per_pair_s != -_INF
    anchors = [queries[q] for q in pair_query.tolist()]
    positives = [docs[d] for d in pair_doc.tolist()]
    gaps_all = pos_scores.unsqueeze(1) - per_pair_s
    kept_neg, kept_gap = per_pair_s[keep], gaps_all[keep]
    data: dict[str, list[Any]]
    if fmt == "triplet":
        r, j = keep.nonzero(as_tuple=True)
        data = {anchor_col: [anchors[i] for i in r.tolist()], positive_col: [positives[i] for i in r.tolist()],
                "negative": [docs[d] for d in per_pair_idx[r, j].tolist()]}
        if with_scores:
            data["scores"] = torch.stack([pos_scores[r], per_pair_s[r, j]], 1).tolist()
        return data, kept_neg, kept_gap, keep.numel()
    if fmt == "labeled-pair":  # per anchor: its positives, then its kept negatives
        key = "score" if with_scores else "label"
        data = {anchor_col: [], positive_col: [], key: []}
        first = torch.searchsorted(pair_query, torch.arange(len(queries) + 1)).tolist()
        for q, query in enumerate(queries):
            ps = range(first[q], first[q + 1])
            ns = [(docs[d], s) for d, s in zip(neg_idx[q].tolist(), neg_scores[q].tolist(), strict=True) if s != -_INF]
            data[anchor_col] += [query] * (len(ps) + len(ns))
            data[positive_col] += [positives[p] for p in ps] + [d for d, _ in ns]
            data[key] += ([float(pos_scores[p]) for p in ps] + [s for _, s in ns] if with_scores
                          else [1] * len(ps) + [0] * len(ns))
        return data, kept_neg, kept_gap, len(queries) * neg_idx.size(1) + n_rows
    if fmt == "n-tuple":
        full = keep.all(dim=1)
        rows = full.nonzero(as_tuple=True)[0].tolist()
        data = {anchor_col: [anchors[i] for i in rows], positive_col: [positives[i] for i in rows]}
        for n in range(neg_idx.size(1)):
            data[f"negative_{n + 1}"] = [docs[d] for d in per_pair_idx[full, n].tolist()]
        if with_scores:
            data["scores"] = torch.cat([pos_scores[full].unsqueeze(1), per_pair_s[full]], 1).tolist()
        return data, per_pair_s[full].flatten(), gaps_all[full].flatten(), len(anchors)
    # labeled-list: the positive first, then every kept negative
    rows = keep.any(dim=1).nonzero(as_tuple=True)[0].tolist()
    data = {anchor_col: [anchors[i] for i in rows],
            positive_col: [[positives[i]] + [docs[d] for d in per_pair_idx[i][keep[i]].tolist()] for i in rows]}
    if with_scores:
        data["scores"] = [[float(pos_scores[i])] + per_pair_s[i][keep[i]].tolist() for i in rows]
    else:
        data["labels"] = [[1] + [0] * int(keep[i].sum()) for i in rows]
    return data, kept_neg, kept_gap, len(anchors)


def _report(pos: torch.Tensor, neg: torch.Tensor, gap: torch.Tensor, skipped: dict[str, tuple[int, float]],
            missing: int, possible: int, params: dict[str, float | None], range_min: int) -> None:
    """Print the score statistics and what was skipped, like ST's summary."""
    line = "{:<6} {:>14} {:>14} {:>14}"
    print(line.format("Metric", "Positive", "Negative", "Difference"))
    print(line.format("Count", f"{len(pos):,}", f"{len(neg):,}", ""))
    stats = [("Mean", torch.mean), ("Median", torch.median), ("Std", torch.std), ("Min", torch.min),
             ("25%", lambda t: torch.quantile(t, 0.25)), ("50%", lambda t: torch.quantile(t, 0.5)),
             ("75%", lambda t: torch.quantile(t, 0.75)), ("Max", torch.max)]
    for label, fn in stats:
        cells = [f"{float(fn(t.float())):.4f}" if t.numel() else "nan" for t in (pos, neg, gap)]
        print(line.format(label, *cells))
    for name, (count, share) in skipped.items():
        print(f"Skipped {count:,} potential negatives ({share:.2%}) due to the {name} of {params[name]}.")
    if missing > 0:
        knobs = ["range_max"] + (["range_min"] if range_min else [])
        knobs += [k for k in ("absolute_margin", "relative_margin", "max_score") if params[k] is not None]
        print(f"Could not find enough negatives for {missing} samples ({missing / possible:.2%}). Consider "
              f"adjusting {', '.join(knobs)} if you'd like to find more valid negatives.")
