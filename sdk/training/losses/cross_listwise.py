"""List-wise cross-encoder losses: one query with a list of scored documents per row (ListNet, LambdaLoss).

Data format (as sentence-transformers): ``inputs = [queries, documents]`` where ``documents[i]``
is the list of texts for ``queries[i]`` (lists may differ in length), and ``labels`` holds one
relevance list per row: a list of tensors (what the collator builds from a list column), a
list of lists, or a padded (rows, width) tensor whose first ``len(documents[i])`` entries of
row i are used (the padding value does not matter). Every (query, document) pair is scored,
in chunks of ``mini_batch_size`` pairs, and the scores are laid out in a (rows, longest list)
matrix whose padding can never win: logits -1e16, labels -inf.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pad_sequence

from sdk.core.errors import InputError
from sdk.training.losses.base import EncoderLoss, check_columns
from sdk.training.losses.cross import IDENTITY, check_column_lengths, check_cross_encoder, qualified_name

__all__ = [
    "BaseWeightingScheme",
    "LambdaLoss",
    "LambdaRankScheme",
    "ListNetLoss",
    "NDCGLoss1Scheme",
    "NDCGLoss2PPScheme",
    "NDCGLoss2Scheme",
    "NoWeightingScheme",
]

PAD_LOGIT = -1e16


def check_mini_batch_size(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise InputError(f"mini_batch_size must be an integer or None, got {value!r}")
    return value


def list_batch(
    loss: nn.Module, inputs: Sequence[Any], labels: Any
) -> tuple[list[str], list[list[str]], list[Tensor]]:
    """Validate a list-wise batch: queries, their document lists, and one float label row per list."""
    name = type(loss).__name__
    check_columns(loss, len(inputs), "2 (query, list of documents)", len(inputs) == 2)
    queries, documents = list(inputs[0]), list(inputs[1])
    check_column_lengths(loss, [queries, documents])
    for i, docs in enumerate(documents):
        if isinstance(docs, str) or not isinstance(docs, Sequence):
            raise InputError(
                f"{name}: row {i} of the document column is {type(docs).__name__}, not a list of documents; "
                "the second column must hold one list of texts per query"
            )
        if len(docs) == 0:
            raise InputError(f"{name}: row {i} has an empty document list; drop rows without documents")
    documents = [list(docs) for docs in documents]
    lengths = [len(docs) for docs in documents]
    if labels is None:
        raise InputError(f"{name} needs a label column with one relevance list per query")
    if isinstance(labels, Tensor):
        if labels.ndim != 2 or labels.shape[0] != len(queries) or labels.shape[1] < max(lengths):
            raise InputError(
                f"{name} expects one relevance list per query (a list of lists, or a padded "
                f"({len(queries)}, >= {max(lengths)}) tensor), got a tensor of shape {tuple(labels.shape)}"
            )
        rows = [labels[i, :n] for i, n in enumerate(lengths)]
    else:
        rows = [torch.as_tensor(row) for row in labels]
        if [row.numel() for row in rows] != lengths or any(row.ndim != 1 for row in rows):
            raise InputError(
                f"{name}: documents per query {lengths} do not match labels per query "
                f"{[row.numel() for row in rows]}; give one relevance label per document"
            )
    return queries, documents, [row.float() for row in rows]


def score_lists(
    loss: EncoderLoss, queries: list[str], documents: list[list[str]], mini_batch_size: int | None
) -> Tensor:
    """Logits of every (query, document) pair, row by row, scored ``mini_batch_size`` pairs at a time.

    None means as many pairs as there are queries; <= 0 scores all pairs in one call.
    """
    pairs = [(query, doc) for query, docs in zip(queries, documents, strict=True) for doc in docs]
    chunk = mini_batch_size or len(queries)
    if chunk <= 0:
        chunk = len(pairs)
    parts = [loss.score_pairs(pairs[i : i + chunk]).view(-1) for i in range(0, len(pairs), chunk)]
    return torch.cat(parts).float()


def padded(values: Tensor, lengths: list[int], fill: float) -> Tensor:
    """Flat per-row values as a (rows, longest) matrix, ``fill`` after each row's end."""
    return pad_sequence(list(values.split(lengths)), batch_first=True, padding_value=fill)


class ListNetLoss(EncoderLoss):
    """ListNet: cross-entropy between softmax(labels) and softmax(scores) over each query's documents.

    Inputs: (query, [doc_1, ..., doc_n]) with labels [score_1, ..., score_n] (binary or graded);
    ``num_labels == 1``. See the module docstring for the label layouts and ``mini_batch_size``.
    """

    def __init__(
        self,
        model: nn.Module,
        activation_fn: nn.Module | None = IDENTITY,
        mini_batch_size: int | None = None,
    ) -> None:
        super().__init__(model)
        check_cross_encoder(self, model, "one")
        self.activation_fn = activation_fn or nn.Identity()
        self.mini_batch_size = check_mini_batch_size(mini_batch_size)

    def forward(self, inputs: list[Any], labels: Any) -> Tensor:
        queries, documents, label_rows = list_batch(self, inputs, labels)
        lengths = [len(docs) for docs in documents]
        logits = self.activation_fn(score_lists(self, queries, documents, self.mini_batch_size))
        scores = padded(logits, lengths, PAD_LOGIT)
        targets = padded(torch.cat(label_rows).to(scores.device), lengths, float("-inf")).softmax(dim=1)
        return F.cross_entropy(scores, targets)

    def get_config_dict(self) -> dict[str, Any]:
        return {"activation_fn": qualified_name(self.activation_fn), "mini_batch_size": self.mini_batch_size}

    @property
    def citation(self) -> str:
        return """
@inproceedings{cao2007learning,
    title={Learning to Rank: From Pairwise Approach to Listwise Approach},
    author={Cao, Zhe and Qin, Tao and Liu, Tie-Yan and Tsai, Ming-Feng and Li, Hang},
    booktitle={Proceedings of the 24th international conference on Machine learning},
    pages={129--136},
    year={2007}
}
"""


# -- LambdaLoss weighting schemes ------------------------------------------------------------
# Each maps (gain, discount, true_sorted) to pair weights broadcastable to (rows, n, n):
# ``gain`` (rows, n) holds (2^label - 1) / maxDCG of the documents in predicted order,
# ``discount`` (1, n) holds log2(1 + rank), ``true_sorted`` (rows, n) the labels in predicted order.


class BaseWeightingScheme(nn.Module):
    """How much each swapped document pair costs; subclasses give the LambdaLoss variants."""

    def forward(self, gain: Tensor, discount: Tensor, true_sorted: Tensor) -> Tensor:
        raise NotImplementedError


class NoWeightingScheme(BaseWeightingScheme):
    """Every pair counts the same (a plain RankNet-style pairwise loss)."""

    def forward(self, gain: Tensor, discount: Tensor, true_sorted: Tensor) -> Tensor:
        return torch.tensor(1.0, device=gain.device)


class NDCGLoss1Scheme(BaseWeightingScheme):
    """NDCG Loss1: each document's discounted gain (a loose bound, weaker than Loss2 in the paper)."""

    def forward(self, gain: Tensor, discount: Tensor, true_sorted: Tensor) -> Tensor:
        return (gain / discount)[:, :, None]


class NDCGLoss2Scheme(BaseWeightingScheme):
    """NDCG Loss2: gain gap times the discount change between rank distance |i - j| and the next."""

    def forward(self, gain: Tensor, discount: Tensor, true_sorted: Tensor) -> Tensor:
        ranks = torch.arange(1, gain.shape[1] + 1, device=gain.device)
        distance = (ranks[:, None] - ranks[None, :]).abs()
        inverse = discount[0].abs().pow(-1.0)
        # distance - 1 is -1 on the diagonal (wraps to the last rank); the diagonal is zeroed anyway
        deltas = (inverse[distance - 1] - inverse[distance]).abs()
        deltas.diagonal().zero_()
        return deltas[None, :, :] * (gain[:, :, None] - gain[:, None, :]).abs()


class LambdaRankScheme(BaseWeightingScheme):
    """LambdaRank: gain gap times the change in discount from swapping the two ranks."""

    def forward(self, gain: Tensor, discount: Tensor, true_sorted: Tensor) -> Tensor:
        inverse = discount.pow(-1.0)
        return (inverse[:, :, None] - inverse[:, None, :]).abs() * (gain[:, :, None] - gain[:, None, :]).abs()


class NDCGLoss2PPScheme(BaseWeightingScheme):
    """NDCG Loss2++: ``mu`` * Loss2 weights + LambdaRank weights, the strongest variant in the paper."""

    def __init__(self, mu: float = 10.0) -> None:
        super().__init__()
        self.mu = mu
        self.ndcg_loss2 = NDCGLoss2Scheme()
        self.lambda_rank = LambdaRankScheme()

    def forward(self, gain: Tensor, discount: Tensor, true_sorted: Tensor) -> Tensor:
        return self.mu * self.ndcg_loss2(gain, discount, true_sorted) + self.lambda_rank(gain, discount, true_sorted)


DEFAULT_SCHEME = NDCGLoss2PPScheme()


class LambdaLoss(EncoderLoss):
    """The LambdaLoss framework (Wang et al., 2018): weighted pairwise logistic loss aimed at NDCG.

    For every pair of a query's documents in predicted order whose labels differ (any finite
    pair for ``NDCGLoss1Scheme``) and where at least one is in the predicted top ``k``, the
    loss is ``-weight * log sigmoid(sigma * (s_i - s_j))``, in bits when ``reduction_log`` is
    "binary"; the mean over those pairs is returned. Inputs and labels as ``ListNetLoss``.
    """

    def __init__(
        self,
        model: nn.Module,
        weighting_scheme: BaseWeightingScheme | None = DEFAULT_SCHEME,
        k: int | None = None,
        sigma: float = 1.0,
        eps: float = 1e-10,
        reduction_log: Literal["natural", "binary"] = "binary",
        activation_fn: nn.Module | None = IDENTITY,
        mini_batch_size: int | None = None,
    ) -> None:
        super().__init__(model)
        check_cross_encoder(self, model, "one")
        if weighting_scheme is not None and not callable(weighting_scheme):
            raise InputError(f"weighting_scheme must be a scheme such as NDCGLoss2PPScheme(), got {weighting_scheme!r}")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise InputError(f"k must be a positive integer (NDCG@k) or None for all documents, got {k!r}")
        if reduction_log not in ("natural", "binary"):
            raise InputError(f"reduction_log must be 'natural' or 'binary', got {reduction_log!r}")
        self.weighting_scheme = weighting_scheme or NoWeightingScheme()
        self.k = k
        self.sigma = sigma
        self.eps = eps
        self.reduction_log = reduction_log
        self.activation_fn = activation_fn or nn.Identity()
        self.mini_batch_size = check_mini_batch_size(mini_batch_size)

    def forward(self, inputs: list[Any], labels: Any) -> Tensor:
        queries, documents, label_rows = list_batch(self, inputs, labels)
        lengths = [len(docs) for docs in documents]
        width = max(lengths)
        logits = self.activation_fn(score_lists(self, queries, documents, self.mini_batch_size))
        scores = padded(logits, lengths, PAD_LOGIT)
        device = scores.device
        truth = padded(torch.cat(label_rows).to(device), lengths, float("-inf"))

        scores_sorted, order = scores.sort(descending=True, dim=-1)
        ideal, _ = truth.sort(descending=True, dim=-1)
        truth_by_pred = truth.gather(1, order)

        # pairs that count: both real documents (padding gives -inf/nan), ordered labels unless Loss1
        label_gaps = truth_by_pred[:, :, None] - truth_by_pred[:, None, :]
        keep = torch.isfinite(label_gaps)
        if not isinstance(self.weighting_scheme, NDCGLoss1Scheme):
            keep &= label_gaps > 0
        k = self.k or width
        in_top_k = torch.zeros((width, width), dtype=torch.bool, device=device)
        in_top_k[:k, :] = True
        in_top_k[:, :k] = True

        truth_by_pred = truth_by_pred.clamp(min=0.0)
        ideal = ideal.clamp(min=0.0)
        discount = torch.log2(1.0 + torch.arange(1, width + 1, device=device).float())[None, :]
        max_dcg = ((torch.pow(2, ideal) - 1) / discount)[:, :k].sum(dim=-1).clamp(min=self.eps)
        gain = (torch.pow(2, truth_by_pred) - 1) / max_dcg[:, None]
        weights = self.weighting_scheme(gain, discount, truth_by_pred)

        # log-sigmoid of the score gap directly (no sigmoid then log): no underflow on badly ordered pairs
        gaps = (scores_sorted[:, :, None] - scores_sorted[:, None, :]).clamp(min=-1e8, max=1e8)
        gaps = gaps.masked_fill(torch.isnan(gaps), 0.0)
        pair_losses = weights * F.logsigmoid(self.sigma * gaps)
        if self.reduction_log == "binary":
            pair_losses = pair_losses / math.log(2)
        kept = pair_losses[keep & in_top_k]
        return -kept.sum() / max(kept.numel(), 1)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "weighting_scheme": qualified_name(self.weighting_scheme),
            "k": self.k,
            "sigma": self.sigma,
            "eps": self.eps,
            "reduction_log": self.reduction_log,
            "activation_fn": qualified_name(self.activation_fn),
            "mini_batch_size": self.mini_batch_size,
        }

    @property
    def citation(self) -> str:
        return """
@inproceedings{wang2018lambdaloss,
  title={The LambdaLoss Framework for Ranking Metric Optimization},
  author={Wang, Xuanhui and Li, Cheng and Golbandi, Nadav and Bendersky, Michael and Najork, Marc},
  booktitle={Proceedings of the 27th ACM international conference on information and knowledge management},
  pages={1313--1322},
  year={2018}
}
"""
