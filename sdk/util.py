"""Similarity functions and search helpers over embeddings, as in sentence-transformers' util.

All take lists, numpy arrays or tensors and return torch tensors (scores: higher is
closer; distances are negated) so results compose with the encoders' tensor output.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from sdk.core.errors import InputError

__all__ = [
    "community_detection",
    "cos_sim",
    "dot_score",
    "euclidean_sim",
    "manhattan_sim",
    "normalize_embeddings",
    "pairwise_cos_sim",
    "pairwise_dot_score",
    "pairwise_euclidean_sim",
    "pairwise_manhattan_sim",
    "paraphrase_mining",
    "paraphrase_mining_embeddings",
    "semantic_search",
    "similarity_function",
]


def _tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, np.ndarray):
        t = torch.from_numpy(x)
    elif isinstance(x, list) and x and isinstance(x[0], torch.Tensor):
        t = torch.stack(x)
    else:
        t = torch.tensor(np.asarray(x))
    if t.is_sparse:
        t = t.to_dense()
    if not t.is_floating_point():
        t = t.float()
    return t.unsqueeze(0) if t.dim() == 1 else t


def normalize_embeddings(embeddings: Any) -> torch.Tensor:
    """Rows scaled to unit L2 norm."""
    return torch.nn.functional.normalize(_tensor(embeddings), p=2, dim=1)


def cos_sim(a: Any, b: Any) -> torch.Tensor:
    """Cosine similarity of every row of ``a`` with every row of ``b``: shape (len(a), len(b))."""
    return normalize_embeddings(a) @ normalize_embeddings(b).T


def dot_score(a: Any, b: Any) -> torch.Tensor:
    """Dot product of every row of ``a`` with every row of ``b``."""
    return _tensor(a) @ _tensor(b).T


def euclidean_sim(a: Any, b: Any) -> torch.Tensor:
    """Negative euclidean distance (higher is closer) between all rows."""
    return -torch.cdist(_tensor(a), _tensor(b), p=2.0)


def manhattan_sim(a: Any, b: Any) -> torch.Tensor:
    """Negative manhattan distance (higher is closer) between all rows."""
    return -torch.cdist(_tensor(a), _tensor(b), p=1.0)


def _pairwise(a: Any, b: Any) -> tuple[torch.Tensor, torch.Tensor]:
    ta, tb = _tensor(a), _tensor(b)
    if ta.shape != tb.shape:
        raise InputError(f"pairwise similarity needs equal shapes, got {tuple(ta.shape)} and {tuple(tb.shape)}")
    return ta, tb


def pairwise_cos_sim(a: Any, b: Any) -> torch.Tensor:
    """Cosine similarity of ``a[i]`` with ``b[i]``."""
    ta, tb = _pairwise(a, b)
    return (normalize_embeddings(ta) * normalize_embeddings(tb)).sum(dim=-1)


def pairwise_dot_score(a: Any, b: Any) -> torch.Tensor:
    """Dot product of ``a[i]`` with ``b[i]``."""
    ta, tb = _pairwise(a, b)
    return (ta * tb).sum(dim=-1)


def pairwise_euclidean_sim(a: Any, b: Any) -> torch.Tensor:
    """Negative euclidean distance of ``a[i]`` and ``b[i]``."""
    ta, tb = _pairwise(a, b)
    return -torch.sqrt(((ta - tb) ** 2).sum(dim=-1))


def pairwise_manhattan_sim(a: Any, b: Any) -> torch.Tensor:
    """Negative manhattan distance of ``a[i]`` and ``b[i]``."""
    ta, tb = _pairwise(a, b)
    return -(ta - tb).abs().sum(dim=-1)


_MATRIX = {"cosine": cos_sim, "dot": dot_score, "euclidean": euclidean_sim, "manhattan": manhattan_sim}
_PAIRWISE = {
    "cosine": pairwise_cos_sim,
    "dot": pairwise_dot_score,
    "euclidean": pairwise_euclidean_sim,
    "manhattan": pairwise_manhattan_sim,
}


def similarity_function(name: str, pairwise: bool = False) -> Callable[[Any, Any], torch.Tensor]:
    """The matrix (or pairwise) function for a similarity name: cosine, dot, euclidean, manhattan."""
    from sdk.core.similarity import Similarity

    key = Similarity.parse(name).value
    table = _PAIRWISE if pairwise else _MATRIX
    if key not in table:
        raise InputError(f"similarity {key!r} is not defined for float embeddings; use {', '.join(table)}")
    return table[key]


def _chunked_top_k(
    queries: torch.Tensor,
    corpus: torch.Tensor,
    query_chunk_size: int,
    corpus_chunk_size: int,
    top_k: int,
    score_function: Callable[[Any, Any], torch.Tensor],
) -> Iterator[tuple[int, int, float]]:
    """``(query index, corpus index, score)`` of each query's top k within every corpus chunk.

    Scoring block by block bounds memory at ``query_chunk_size x corpus_chunk_size`` scores;
    callers merge the per-chunk candidates (a heap for search, a sort for mining).
    """
    for q0 in range(0, len(queries), query_chunk_size):
        for c0 in range(0, len(corpus), corpus_chunk_size):
            scores = score_function(queries[q0 : q0 + query_chunk_size], corpus[c0 : c0 + corpus_chunk_size])
            k = min(top_k, scores.shape[1])
            values, indices = torch.topk(scores, k, dim=1, largest=True, sorted=False)
            for row, (vals, idxs) in enumerate(zip(values.tolist(), indices.tolist(), strict=True)):
                for score, cid in zip(vals, idxs, strict=True):
                    yield q0 + row, c0 + cid, score


def semantic_search(
    query_embeddings: Any,
    corpus_embeddings: Any,
    query_chunk_size: int = 100,
    corpus_chunk_size: int = 500_000,
    top_k: int = 10,
    score_function: Callable[[Any, Any], torch.Tensor] = cos_sim,
) -> list[list[dict[str, int | float]]]:
    """Exact top-k search in chunks (bounded memory); per query ``[{"corpus_id", "score"}]`` best first."""
    queries, corpus = _tensor(query_embeddings), _tensor(corpus_embeddings)
    if top_k < 1:
        raise InputError(f"top_k must be >= 1, got {top_k}")
    if queries.shape[1] != corpus.shape[1]:
        raise InputError(f"query dim {queries.shape[1]} differs from corpus dim {corpus.shape[1]}")
    corpus = corpus.to(queries.device)
    best: list[list[tuple[float, int]]] = [[] for _ in range(len(queries))]
    for qi, cid, score in _chunked_top_k(queries, corpus, query_chunk_size, corpus_chunk_size, top_k, score_function):
        heap = best[qi]
        if len(heap) < top_k:
            heapq.heappush(heap, (score, cid))
        else:
            heapq.heappushpop(heap, (score, cid))
    return [
        [{"corpus_id": cid, "score": score} for score, cid in sorted(heap, key=lambda x: (-x[0], x[1]))]
        for heap in best
    ]


def paraphrase_mining(
    model: Any,
    sentences: list[str],
    show_progress_bar: bool = False,
    batch_size: int = 32,
    query_chunk_size: int = 5000,
    corpus_chunk_size: int = 100_000,
    max_pairs: int = 500_000,
    top_k: int = 100,
    score_function: Callable[[Any, Any], torch.Tensor] = cos_sim,
) -> list[list[float | int]]:
    """Encode ``sentences`` with ``model`` and return ``[score, i, j]`` pairs, most similar first."""
    embeddings = model.encode(
        sentences, show_progress_bar=show_progress_bar, batch_size=batch_size, convert_to_tensor=True
    )
    return paraphrase_mining_embeddings(
        embeddings, query_chunk_size, corpus_chunk_size, max_pairs, top_k, score_function
    )


def paraphrase_mining_embeddings(
    embeddings: Any,
    query_chunk_size: int = 5000,
    corpus_chunk_size: int = 100_000,
    max_pairs: int = 500_000,
    top_k: int = 100,
    score_function: Callable[[Any, Any], torch.Tensor] = cos_sim,
) -> list[list[float | int]]:
    """All-pairs mining over embeddings: the ``max_pairs`` best ``[score, i, j]`` with ``i < j``."""
    emb = _tensor(embeddings)
    top_k += 1  # each sentence finds itself
    pairs = [
        (score, min(i, j), max(i, j))
        for i, j, score in _chunked_top_k(emb, emb, query_chunk_size, corpus_chunk_size, top_k, score_function)
        if i != j
    ]
    seen: set[tuple[int, int]] = set()
    out: list[list[float | int]] = []
    for score, i, j in sorted(pairs, key=lambda p: -p[0]):
        if (i, j) not in seen:
            seen.add((i, j))
            out.append([score, i, j])
            if len(out) >= max_pairs:
                break
    return out


def community_detection(
    embeddings: Any,
    threshold: float = 0.75,
    min_community_size: int = 10,
    batch_size: int = 1024,
    show_progress_bar: bool = False,
) -> list[list[int]]:
    """Fast clustering: groups whose members are all within ``threshold`` cosine of a centre,
    largest first, non-overlapping, each at least ``min_community_size`` long."""
    emb = normalize_embeddings(embeddings)
    n = len(emb)
    min_community_size = min(min_community_size, n)
    if n == 0 or min_community_size < 1:
        return []
    sort_max = min(max(2 * min_community_size, 50), n)
    candidates: list[list[int]] = []
    for start in range(0, n, batch_size):
        scores = emb[start : start + batch_size] @ emb.T
        top_min, _ = scores.topk(k=min_community_size, largest=True)
        for row in range(len(scores)):
            if top_min[row][-1] < threshold:
                continue
            values, indices = scores[row].topk(k=sort_max, largest=True)
            while values[-1] > threshold and sort_max < n:
                sort_max = min(2 * sort_max, n)
                values, indices = scores[row].topk(k=sort_max, largest=True)
            candidates.append(indices[values >= threshold].tolist())
    candidates.sort(key=len, reverse=True)
    taken: set[int] = set()
    communities: list[list[int]] = []
    for community in candidates:
        members = [i for i in community if i not in taken]
        if len(members) >= min_community_size:
            communities.append(sorted(members))
            taken.update(members)
    return sorted(communities, key=len, reverse=True)
