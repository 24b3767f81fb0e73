"""Exact retrieval evaluation of a DenseEncoder or SparseEncoder, straight from the model (no database).

Queries and corpus are encoded with ``encode_query`` / ``encode_document``, every query is scored
against the whole corpus (in corpus chunks and query blocks, so memory stays bounded on large
corpora), and the top hits are ranked by score with ties broken by ascending corpus id, which makes
the result independent of chunk sizes. The metrics and their key names equal sentence-transformers'
``InformationRetrievalEvaluator`` (dense) and ``SparseInformationRetrievalEvaluator`` (sparse, which
adds active-dimension statistics and the average FLOPS of a query-document product).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from sdk.core.errors import InputError
from sdk.core.similarity import Similarity
from sdk.evaluation.base import Evaluator, evaluation_mode

__all__ = ["InformationRetrievalEvaluator"]

logger = logging.getLogger(__name__)

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: scores held at once per (query block x corpus chunk); bounds memory on large corpora
_SCORE_CELLS = 1 << 24
_METRICS = ("accuracy", "precision", "recall", "ndcg", "mrr", "map")


def _check_ks(values: Iterable[int], what: str) -> list[int]:
    ks = list(values)
    if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
        raise InputError(f"{what} must be a non-empty list of positive integers, got {values!r}")
    return list(dict.fromkeys(int(k) for k in ks))


def is_sparse_model(model: Any) -> bool:
    """True for SparseEncoder-like models (vocabulary-sized sparse vectors scored by dot product)."""
    module = sys.modules.get("sdk.encoders.sparse")  # not imported yet: no SparseEncoder exists
    if module is not None and isinstance(model, module.SparseEncoder):
        return True
    return type(model).__name__ == "SparseEncoder"


def _row_block(embeddings: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    if embeddings.is_sparse:
        return embeddings.index_select(0, torch.arange(start, stop, device=embeddings.device))
    return embeddings[start:stop]


def _unit_sparse_rows(matrix: torch.Tensor) -> torch.Tensor:
    matrix = matrix.coalesce()
    rows = matrix.indices()[0]
    norms = torch.zeros(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
    norms.index_add_(0, rows, matrix.values() * matrix.values())
    values = matrix.values() / norms.sqrt().clamp_min(1e-12)[rows]
    return torch.sparse_coo_tensor(matrix.indices(), values, matrix.shape, is_coalesced=True)


def _sparse_scores(cosine: bool) -> ScoreFn:
    """All-pairs dot (or cosine) of two sparse COO matrices as a dense (queries, documents) matrix."""

    def score(queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
        if cosine:
            queries, documents = _unit_sparse_rows(queries), _unit_sparse_rows(documents)
        dense_queries = queries.to_dense() if queries.is_sparse else queries
        if not documents.is_sparse:
            return dense_queries @ documents.T
        return torch.sparse.mm(documents, dense_queries.T).T

    return score


def _top_k(scores: torch.Tensor, k: int, id_rank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's k best columns under (score descending, corpus id ascending).

    ``topk`` alone picks arbitrarily among scores tied with the k-th; those rows are redone with
    an integer key: every score above the k-th first, then the tied ones by corpus-id rank.
    """
    values, columns = scores.topk(k, dim=1, largest=True, sorted=True)
    kth = values[:, -1:]
    boundary = (scores >= kth).sum(dim=1) > k
    if bool(boundary.any()):
        rows = boundary.nonzero().squeeze(1)
        sub, cut = scores[rows], kth[rows]
        ranks = id_rank.to(scores.device).expand(len(rows), -1)
        key = torch.where(sub == cut, ranks, torch.full_like(ranks, torch.iinfo(torch.long).max))
        key = torch.where(sub > cut, torch.full_like(ranks, -1), key)
        chosen = key.topk(k, dim=1, largest=False).indices
        columns[rows] = chosen
        values[rows] = sub.gather(1, chosen)
    return values, columns


def ranking_metrics(
    hits: Sequence[Sequence[Any]], relevant: Sequence[set[Any]], accuracy_at_k: Sequence[int],
    precision_recall_at_k: Sequence[int], mrr_at_k: Sequence[int], ndcg_at_k: Sequence[int],
    map_at_k: Sequence[int],
) -> dict[str, dict[int, float]]:
    """Binary-relevance metrics of ranked hit lists (one per query), averaged over queries.

    Recall divides by all relevant documents (also those missing from the corpus); MAP@k by
    ``min(k, #relevant)``; nDCG@k's ideal ranking puts ``min(k, #relevant)`` hits first.
    """
    width = max(*accuracy_at_k, *precision_recall_at_k, *mrr_at_k, *ndcg_at_k, *map_at_k)
    rel = np.zeros((len(hits), width), dtype=np.float64)
    for i, (ids, wanted) in enumerate(zip(hits, relevant, strict=True)):
        for j, doc in enumerate(ids[:width]):
            if doc in wanted:
                rel[i, j] = 1.0
    n_rel = np.array([len(r) for r in relevant], dtype=np.float64)
    found = np.cumsum(rel, axis=1)
    ranks = np.arange(1, width + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1)
    ideal = np.cumsum(discount)
    out: dict[str, dict[int, float]] = {m: {} for m in _METRICS}
    for k in accuracy_at_k:
        out["accuracy"][k] = float(np.mean(found[:, k - 1] > 0))
    for k in precision_recall_at_k:
        out["precision"][k] = float(np.mean(found[:, k - 1] / k))
        out["recall"][k] = float(np.mean(found[:, k - 1] / n_rel))
    for k in ndcg_at_k:
        dcg = rel[:, :k] @ discount[:k]
        out["ndcg"][k] = float(np.mean(dcg / ideal[np.minimum(n_rel, k).astype(np.int64) - 1]))
    for k in mrr_at_k:
        head = rel[:, :k]
        first = np.argmax(head, axis=1)
        out["mrr"][k] = float(np.mean(np.where(head.any(axis=1), 1.0 / (first + 1), 0.0)))
    for k in map_at_k:
        precision_at_hit = rel[:, :k] * found[:, :k] / ranks[:k]
        out["map"][k] = float(np.mean(precision_at_hit.sum(axis=1) / np.minimum(n_rel, k)))
    return out


class InformationRetrievalEvaluator(Evaluator):
    """Accuracy, precision, recall, MRR, nDCG and MAP at several cut-offs for a query set over a corpus.

    Only queries with at least one relevant document are evaluated. ``score_functions`` maps names
    to all-pairs scoring functions; by default the model's own similarity is used (sparse models:
    dot or cosine over sparse vectors), resolved on every call so a reused evaluator follows each
    model. Keys look like ``{name}_{function}_ndcg@10``; the primary metric is nDCG at the largest
    k of ``main_score_function`` (default: of the best-scoring function). ``truncate_dim`` applies
    to dense models, ``max_active_dims`` to sparse ones.
    """

    def __init__(
        self,
        queries: Mapping[Any, str],
        corpus: Mapping[Any, str],
        relevant_docs: Mapping[Any, Iterable[Any]],
        corpus_chunk_size: int = 50000,
        mrr_at_k: Sequence[int] = (10,),
        ndcg_at_k: Sequence[int] = (10,),
        accuracy_at_k: Sequence[int] = (1, 3, 5, 10),
        precision_recall_at_k: Sequence[int] = (1, 3, 5, 10),
        map_at_k: Sequence[int] = (100,),
        show_progress_bar: bool = False,
        batch_size: int = 32,
        name: str = "",
        write_csv: bool = True,
        truncate_dim: int | None = None,
        score_functions: Mapping[str, ScoreFn] | None = None,
        main_score_function: str | Similarity | None = None,
        query_prompt: str | None = None,
        query_prompt_name: str | None = None,
        corpus_prompt: str | None = None,
        corpus_prompt_name: str | None = None,
        max_active_dims: int | None = None,
    ) -> None:
        super().__init__(name=name, write_csv=write_csv)
        if isinstance(corpus_chunk_size, bool) or not isinstance(corpus_chunk_size, int) or corpus_chunk_size < 1:
            raise InputError(f"corpus_chunk_size must be a positive integer, got {corpus_chunk_size!r}")
        self.mrr_at_k = _check_ks(mrr_at_k, "mrr_at_k")
        self.ndcg_at_k = _check_ks(ndcg_at_k, "ndcg_at_k")
        self.accuracy_at_k = _check_ks(accuracy_at_k, "accuracy_at_k")
        self.precision_recall_at_k = _check_ks(precision_recall_at_k, "precision_recall_at_k")
        self.map_at_k = _check_ks(map_at_k, "map_at_k")
        self.query_ids = [qid for qid in queries if relevant_docs.get(qid)]
        if not self.query_ids:
            raise InputError("no query has relevant documents; relevant_docs must map query ids to corpus ids")
        if not corpus:
            raise InputError("the corpus is empty; pass {document id: text}")
        self.queries = [queries[qid] for qid in self.query_ids]
        self.relevant_docs = {qid: set(relevant_docs[qid]) for qid in self.query_ids}
        self.corpus_ids = list(corpus)
        self.corpus = [corpus[cid] for cid in self.corpus_ids]
        self.corpus_chunk_size = corpus_chunk_size
        self.show_progress_bar = show_progress_bar
        self.batch_size = batch_size
        self.truncate_dim = truncate_dim
        self.max_active_dims = max_active_dims
        if score_functions is not None and not score_functions:
            raise InputError("score_functions is empty; pass None to use the model's similarity")
        self.score_functions = dict(score_functions) if score_functions else None
        self.main_score_function = Similarity.parse(main_score_function).value if main_score_function else None
        self.query_prompt, self.query_prompt_name = query_prompt, query_prompt_name
        self.corpus_prompt, self.corpus_prompt_name = corpus_prompt, corpus_prompt_name
        self.csv_file = f"Information-Retrieval_evaluation{'_' + name if name else ''}_results.csv"
        self._function_names: list[str] = []
        self._id_rank: torch.Tensor | None = None
        self.sparsity_stats: dict[str, float] = {}

    @property
    def max_k(self) -> int:
        return max(*self.mrr_at_k, *self.ndcg_at_k, *self.accuracy_at_k, *self.precision_recall_at_k, *self.map_at_k)

    # -- evaluation ----------------------------------------------------------------------

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        logger.info("Information retrieval evaluation on %s%s", self.name or "the data", self.describe_call(epoch, steps))
        sparse = is_sparse_model(model)
        functions = self._score_functions_for(model, sparse)
        names = sorted(functions)
        if names != self._function_names:  # a new set of functions: choose the primary metric again
            self._function_names, self.primary_metric = names, None
        ranked = self.search(model, functions, sparse)
        hits = {fn: [[self.corpus_ids[i] for i in row] for row in idx.tolist()] for fn, (idx, _) in ranked.items()}
        relevant = [self.relevant_docs[qid] for qid in self.query_ids]
        scores = {fn: ranking_metrics(hits[fn], relevant, self.accuracy_at_k, self.precision_recall_at_k,
                                      self.mrr_at_k, self.ndcg_at_k, self.map_at_k) for fn in functions}
        if self.primary_metric is None:
            best = max(self.ndcg_at_k)
            fn = self.main_score_function or max(names, key=lambda n: scores[n]["ndcg"][best])
            self.primary_metric = self.metric_key(f"{fn}_ndcg@{best}")
        flat = {f"{fn}_{metric}@{k}": value for fn, per_metric in scores.items()
                for metric, per_k in per_metric.items() for k, value in per_k.items()}
        if sparse:
            flat.update(self.sparsity_stats)
        self._write_row(output_path, epoch, steps, scores, sparse)
        return self.prefixed(flat)

    def _score_functions_for(self, model: Any, sparse: bool) -> dict[str, ScoreFn]:
        if self.score_functions is not None:
            return self.score_functions
        name = Similarity.parse(model.similarity_fn_name).value
        if sparse:
            if name not in ("dot", "cosine"):
                raise InputError(f"sparse models are scored with dot or cosine, not {name!r}")
            return {name: _sparse_scores(cosine=name == "cosine")}
        return {name: model.similarity}

    def _encode(self, model: Any, texts: list[str], role: str, sparse: bool) -> torch.Tensor:
        prompt_name = self.query_prompt_name if role == "query" else self.corpus_prompt_name
        prompt = self.query_prompt if role == "query" else self.corpus_prompt
        kwargs: dict[str, Any] = {"batch_size": self.batch_size, "show_progress_bar": self.show_progress_bar,
                                  "convert_to_tensor": True}
        if prompt_name is not None:  # only when set: an explicit None would switch off the role's prompt
            kwargs["prompt_name"] = prompt_name
        if prompt is not None:
            kwargs["prompt"] = prompt
        if sparse:
            kwargs.update(convert_to_sparse_tensor=True, save_to_cpu=True, max_active_dims=self.max_active_dims)
        else:
            kwargs["truncate_dim"] = self.truncate_dim
        encode = getattr(model, f"encode_{role}", None) or model.encode
        out = encode(texts, **kwargs)
        return out.coalesce() if sparse and out.is_sparse else out

    def corpus_id_rank(self) -> torch.Tensor:
        """Each corpus entry's position in ascending corpus-id order: the tie-break of the ranking."""
        if self._id_rank is None:
            order = sorted(range(len(self.corpus_ids)), key=self.corpus_ids.__getitem__)
            rank = torch.empty(len(order), dtype=torch.long)
            rank[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
            self._id_rank = rank
        return self._id_rank

    def search(self, model: Any, functions: Mapping[str, ScoreFn] | None = None,
               sparse: bool | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per score function: (corpus indices, scores), shape (queries, <= max_k), best first.

        Also fills ``sparsity_stats`` for sparse models.
        """
        sparse = is_sparse_model(model) if sparse is None else sparse
        functions = functions or self._score_functions_for(model, sparse)
        max_k, id_rank = self.max_k, self.corpus_id_rank()
        stats = _SparsityTally() if sparse else None
        parts: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {fn: [] for fn in functions}
        with evaluation_mode(model):
            query_emb = self._encode(model, self.queries, "query", sparse)
            if stats is not None:
                stats.add("query", query_emb)
            for c0 in range(0, len(self.corpus), self.corpus_chunk_size):
                chunk = self._encode(model, self.corpus[c0:c0 + self.corpus_chunk_size], "document", sparse)
                if stats is not None:
                    stats.add("corpus", chunk)
                n_chunk = chunk.shape[0]
                k = min(max_k, n_chunk)
                block = max(1, _SCORE_CELLS // max(n_chunk, 1))
                chunk_rank = id_rank[c0:c0 + n_chunk]
                for fn, score in functions.items():
                    values, columns = [], []
                    for q0 in range(0, len(self.queries), block):
                        q_block = _row_block(query_emb, q0, min(q0 + block, len(self.queries)))
                        v, c = _top_k(score(q_block, chunk).float(), k, chunk_rank)
                        values.append(v.cpu())
                        columns.append(c.cpu() + c0)
                    parts[fn].append((torch.cat(values), torch.cat(columns)))
        if stats is not None:
            self.sparsity_stats = stats.summary()
        return {fn: _merge(chunks, id_rank, max_k) for fn, chunks in parts.items()}

    def _write_row(self, output_path: str | None, epoch: int, steps: int,
                   scores: dict[str, dict[str, dict[int, float]]], sparse: bool) -> None:
        header: list[str] = ["epoch", "steps"]
        row: list[Any] = [epoch, steps]
        labels = {"accuracy": "Accuracy", "precision": "Precision", "recall": "Recall", "mrr": "MRR",
                  "ndcg": "NDCG", "map": "MAP"}
        for fn in self._function_names:
            columns = [("accuracy", k) for k in self.accuracy_at_k]
            columns += [(m, k) for k in self.precision_recall_at_k for m in ("precision", "recall")]
            columns += [("mrr", k) for k in self.mrr_at_k] + [("ndcg", k) for k in self.ndcg_at_k]
            columns += [("map", k) for k in self.map_at_k]
            header += [f"{fn}-{labels[m]}@{k}" for m, k in columns]
            row += [scores[fn][m][k] for m, k in columns]
        if sparse:
            header += list(self.sparsity_stats)
            row += list(self.sparsity_stats.values())
        self.append_csv(output_path, self.csv_file, header, row)

    def get_config_dict(self) -> dict[str, Any]:
        keys = ("truncate_dim", "max_active_dims", "query_prompt", "query_prompt_name", "corpus_prompt",
                "corpus_prompt_name")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


def _merge(chunks: list[tuple[torch.Tensor, torch.Tensor]], id_rank: torch.Tensor,
           max_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-chunk candidates into one ranking: score descending, then corpus id ascending."""
    values = torch.cat([v for v, _ in chunks], dim=1)
    columns = torch.cat([c for _, c in chunks], dim=1)
    by_id = torch.argsort(id_rank[columns], dim=1, stable=True)
    values, columns = values.gather(1, by_id), columns.gather(1, by_id)
    by_score = torch.argsort(values, dim=1, descending=True, stable=True)[:, :max_k]
    return columns.gather(1, by_score), values.gather(1, by_score)


class _SparsityTally:
    """Mean active dimensions of queries and documents, and the average FLOPS of their products
    (the dot of the per-dimension shares of queries and documents that use each dimension)."""

    def __init__(self) -> None:
        self.rows = {"query": 0, "corpus": 0}
        self.active = {"query": 0, "corpus": 0}
        self.width = 0
        self.counts: dict[str, torch.Tensor] = {}

    def add(self, role: str, embeddings: torch.Tensor) -> None:
        matrix = embeddings.coalesce() if embeddings.is_sparse else embeddings.to_sparse().coalesce()
        self.width = int(matrix.shape[1])
        columns = matrix.indices()[1].cpu()
        self.rows[role] += int(matrix.shape[0])
        self.active[role] += int(columns.numel())
        counts = torch.bincount(columns, minlength=self.width).double()
        self.counts[role] = self.counts[role] + counts if role in self.counts else counts

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for role in ("query", "corpus"):
            mean = self.active[role] / self.rows[role] if self.rows[role] else 0.0
            out[f"{role}_active_dims"] = mean
            out[f"{role}_sparsity_ratio"] = 1.0 - mean / self.width if self.width else 1.0
        if self.rows["query"] and self.rows["corpus"]:
            share_q = self.counts["query"] / self.rows["query"]
            share_c = self.counts["corpus"] / self.rows["corpus"]
            out["avg_flops"] = float(torch.dot(share_q, share_c))
        else:
            out["avg_flops"] = 0.0
        return out
