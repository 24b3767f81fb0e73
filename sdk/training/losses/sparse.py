"""Losses for SPLADE (SparseEncoder) training, numerically equal to sentence-transformers' sparse losses.

A SPLADE model is trained with ``SpladeLoss``: it embeds every text column once, hands the
embeddings to a main loss (ranking, distillation, similarity) through
``compute_loss_from_embeddings`` and adds FLOPS regularizers that push the query and document
vectors towards sparsity. Without them the vectors fill up and lose their point, which is why
sentence-transformers refuses the main losses alone; here they also run alone (``forward``),
with a warning, so they can be checked or combined by hand.

The maths is kept in plain functions (``flops``, ``in_batch_ranking_loss``, ``margin_mse``, ...)
that take embeddings and return a scalar, so dense losses can share them.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sdk import util
from sdk.core.errors import InputError
from sdk.training.losses.base import EncoderLoss, check_columns

__all__ = [
    "FlopsLoss",
    "SparseCoSENTLoss",
    "SparseDistillKLDivLoss",
    "SparseMSELoss",
    "SparseMarginMSELoss",
    "SparseMultipleNegativesRankingLoss",
    "SparseTripletLoss",
    "SpladeLoss",
    "TripletDistanceMetric",
    "cosent",
    "distill_kl_div",
    "embed_columns",
    "flops",
    "in_batch_ranking_loss",
    "margin_mse",
    "triplet",
]

logger = logging.getLogger(__name__)

Similarity = Callable[[Tensor, Tensor], Tensor]
_DIRECTIONS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
_HARDNESS_MODES = (None, "in_batch_negatives", "hard_negatives", "all_negatives")


# -- embedding the columns -------------------------------------------------------------------


def _merge_columns(features: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """One padded batch holding several columns' rows (column after column), or None if they differ.

    Token tensors are right-padded with 0 to the widest column; the padding has attention mask 0,
    so every row embeds as it would alone, in one forward pass instead of one per column.
    """
    first = features[0]
    if any(set(f) != set(first) for f in features[1:]):
        return None
    rows = first["input_ids"].shape[0] if isinstance(first.get("input_ids"), Tensor) else None
    if rows is None or first["input_ids"].ndim != 2:
        return None
    merged: dict[str, Any] = {}
    for key, value in first.items():
        values = [f[key] for f in features]
        if isinstance(value, Tensor) and key != "prompt_length":
            if any(not isinstance(v, Tensor) or v.ndim != 2 or v.shape[0] != rows or v.is_floating_point()
                   for v in values):
                return None
            width = max(v.shape[1] for v in values)
            merged[key] = torch.cat([F.pad(v, (0, width - v.shape[1])) for v in values])
            continue
        try:
            same = all(torch.equal(v, value) if isinstance(value, Tensor) else bool(v == value) for v in values[1:])
        except (RuntimeError, TypeError, ValueError):
            return None
        if not same:
            return None
        merged[key] = value
    return merged


def embed_columns(
    embed: Callable[[dict[str, Any]], Tensor], features: Sequence[dict[str, Any]], separate_first: bool = True
) -> list[Tensor]:
    """Embeddings of every column, candidate columns sharing one forward pass when they can.

    The first column (usually short queries, possibly another Router route) runs alone unless
    ``separate_first`` is False, so it is not padded to the documents' length.
    """
    features = list(features)
    if separate_first and len(features) > 1:
        return [embed(features[0]), *embed_columns(embed, features[1:], separate_first=False)]
    merged = _merge_columns(features) if len(features) > 1 else None
    if merged is None:
        return [embed(f) for f in features]
    return list(embed(merged).unflatten(0, (len(features), -1)).unbind(0))


# -- the maths, as plain functions -----------------------------------------------------------


def flops(embeddings: Tensor, threshold: float | None = None) -> Tensor:
    """FLOPS regularizer: squared L2 norm of the mean vector (Paria et al., 2020).

    With ``threshold``, rows with at most that many non-zero weights are left out of the mean's
    numerator (they are sparse enough already), as in FLOPS with L0 masking.
    """
    if threshold is not None:
        keep = ((embeddings != 0).sum(dim=1) > threshold).to(embeddings.dtype)
        embeddings = embeddings * keep.unsqueeze(1)
    return embeddings.mean(dim=0).pow(2).sum()


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def gather_with_grad(tensor: Tensor) -> Tensor:
    """All ranks' rows, concatenated, with gradients flowing back to each rank (identity when not distributed)."""
    if not _distributed():
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor), dim=0)


def in_batch_ranking_loss(
    queries: Tensor,
    documents: Sequence[Tensor],
    similarity_fct: Similarity,
    scale: float,
    directions: Sequence[str] = ("query_to_doc",),
    partition_mode: str = "joint",
    hardness_mode: str | None = None,
    hardness_strength: float = 0.0,
    gather_across_devices: bool = False,
) -> Tensor:
    """InfoNCE with in-batch negatives: each query's positive (``documents[0][i]``) against all candidates.

    ``documents[1:]`` are hard negatives. Extra ``directions`` add query-query, document-query and
    document-document logits to the softmax denominator; ``partition_mode="per_direction"`` uses
    one softmax per direction and averages the log-partitions. Hardness weighting adds
    ``hardness_strength * sim`` (no gradient, unscaled) to the chosen negatives' logits.
    """
    batch = queries.shape[0]
    offset = 0
    if gather_across_devices and _distributed():
        queries = gather_with_grad(queries)
        documents = [gather_with_grad(d) for d in documents]
        offset = torch.distributed.get_rank() * batch
    total = queries.shape[0]
    candidates = torch.cat(list(documents), dim=0)
    rows = torch.arange(batch, device=queries.device)
    mine = rows + offset  # this rank's rows within the gathered batch
    my_queries, my_positives = queries[mine], documents[0][mine]
    # a (batch, total * columns) mask of each query's own documents: its positive and hard negatives
    own = torch.eye(total, dtype=torch.bool, device=queries.device)[mine].repeat(1, len(documents))

    blocks = {"query_to_doc": similarity_fct(my_queries, candidates)}
    if "query_to_query" in directions:
        self_pair = torch.zeros(batch, total, dtype=torch.bool, device=queries.device)
        self_pair[rows, mine] = True
        blocks["query_to_query"] = similarity_fct(my_queries, queries).masked_fill(self_pair, -math.inf)
    if "doc_to_query" in directions:
        blocks["doc_to_query"] = similarity_fct(queries, my_positives).T
    if "doc_to_doc" in directions:
        blocks["doc_to_doc"] = similarity_fct(candidates, my_positives).T.masked_fill(own, -math.inf)

    penalty = None
    if hardness_mode is not None and hardness_strength > 0.0:
        if hardness_mode == "hard_negatives":  # only this query's own hard negatives
            skip = ~own
            skip[:, :total] = True
        elif hardness_mode == "in_batch_negatives":  # only other queries' documents
            skip = own
        else:  # all_negatives: everything but the positive
            skip = own.clone()
            skip[:, total:] = False
        penalty = (hardness_strength * blocks["query_to_doc"].detach()).masked_fill(skip, 0.0)

    logits = {name: block * scale for name, block in blocks.items()}
    if penalty is not None:
        logits["query_to_doc"] = logits["query_to_doc"] + penalty
    positives = logits["query_to_doc"][rows, mine]
    if partition_mode == "joint":
        log_partition = torch.logsumexp(torch.cat(list(logits.values()), dim=1), dim=1)
    else:
        log_partition = sum(torch.logsumexp(block, dim=1) for block in logits.values()) / len(logits)
    return (log_partition - positives).mean()


def margin_mse(query: Tensor, documents: Sequence[Tensor], labels: Tensor, similarity_fct: Similarity) -> Tensor:
    """MSE between predicted margins sim(q, pos) - sim(q, neg_i) and the teacher's margins.

    ``labels``: (batch,) or (batch, n_neg) margins, or (batch, 1 + n_neg) raw teacher scores.
    """
    negatives = documents[1:]
    batch = query.shape[0]
    if labels.shape == (batch, len(negatives) + 1):
        labels = labels[:, :1] - labels[:, 1:]
    if labels.shape == (batch,):
        labels = labels.unsqueeze(1)
    if labels.shape != (batch, len(negatives)):
        raise InputError(
            f"labels have shape {tuple(labels.shape)}, expected ({batch}, {len(negatives)}) teacher margins "
            f"sim(q, pos) - sim(q, neg_i), or ({batch}, {len(negatives) + 1}) raw teacher scores [pos, neg_1, ...]"
        )
    positive = similarity_fct(query, documents[0])
    margins = torch.stack([positive - similarity_fct(query, neg) for neg in negatives], dim=1)
    return F.mse_loss(margins, labels.detach().to(margins.dtype))


def distill_kl_div(
    query: Tensor,
    documents: Sequence[Tensor],
    labels: Tensor,
    similarity_fct: Similarity,
    student_temperature: float,
    teacher_temperature: float,
) -> Tensor:
    """KL(teacher || student) over each query's candidates, scaled by student_temperature**2."""
    student = torch.stack([similarity_fct(query, doc) for doc in documents], dim=1) / student_temperature
    teacher = torch.softmax(labels.detach().to(student.dtype) / teacher_temperature, dim=1)
    loss = F.kl_div(torch.log_softmax(student, dim=1), teacher, reduction="batchmean")
    return loss * student_temperature**2


def cosent(scores: Tensor, labels: Tensor, scale: float) -> Tensor:
    """CoSENT: log(1 + sum over pairs with label_i < label_j of exp(scale * (s_i - s_j))).

    Computed in O(n log n): after sorting by label, each score meets the log-sum of the negated
    scores of every strictly higher label through a reversed cumulative logsumexp.
    """
    if scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.float()
    scores = scores * scale
    if labels.dtype == torch.bool:
        labels = labels.int()
    labels, order = labels.sort()
    scores = scores[order]
    first_higher = torch.searchsorted(labels, labels, right=True)
    tail = torch.logcumsumexp(-scores.flip(0), dim=0).flip(0)
    tail = torch.cat((tail, scores.new_full((1,), -math.inf)))
    terms = scores + tail[first_higher]
    return torch.logsumexp(torch.cat((scores.new_zeros(1), terms)), dim=0)


def triplet(anchor: Tensor, positive: Tensor, negative: Tensor, distance: Similarity, margin: float) -> Tensor:
    """mean(relu(d(a, p) - d(a, n) + margin))."""
    return F.relu(distance(anchor, positive) - distance(anchor, negative) + margin).mean()


class TripletDistanceMetric:
    """Distances for the triplet loss (the same names as sentence-transformers' enum)."""

    @staticmethod
    def COSINE(a: Tensor, b: Tensor) -> Tensor:  # noqa: N802 - sentence-transformers' names
        return 1 - util.pairwise_cos_sim(a, b)

    @staticmethod
    def EUCLIDEAN(a: Tensor, b: Tensor) -> Tensor:  # noqa: N802
        return -util.pairwise_euclidean_sim(a, b)

    @staticmethod
    def MANHATTAN(a: Tensor, b: Tensor) -> Tensor:  # noqa: N802
        return -util.pairwise_manhattan_sim(a, b)


# -- helpers shared by the loss classes -------------------------------------------------------


def _similarity(value: Any, pairwise: bool, what: str = "similarity_fct") -> Similarity:
    """A similarity callable, from a callable or a name ("cosine", "dot", ...)."""
    if isinstance(value, str):
        return util.similarity_function(value, pairwise=pairwise)
    if not callable(value):
        raise InputError(f"{what} must be a function of two tensors or a similarity name, got {value!r}")
    return value


def _function_name(fn: Any) -> str:
    if isinstance(fn, functools.partial):
        args = ", ".join(f"{k}={v!r}" for k, v in fn.keywords.items())
        name = getattr(fn.func, "__name__", type(fn.func).__name__)
        return f"{name}({args})" if args else name
    return getattr(fn, "__name__", type(fn).__name__)


def _label_tensor(labels: Any, loss: nn.Module, device: torch.device) -> Tensor:
    if labels is None:
        raise InputError(f"{type(loss).__name__} needs a label column ('label' or 'score') in the dataset")
    if not isinstance(labels, Tensor):
        raise InputError(
            f"{type(loss).__name__} needs labels as one tensor (rows of equal length), got {type(labels).__name__}"
        )
    return labels.to(device)


def _positive_number(value: Any, name: str, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        kind = "a non-negative" if allow_zero else "a positive"
        raise InputError(f"{name} must be {kind} finite number, got {value!r}")
    return value


class _SparseLoss(EncoderLoss):
    """A main sparse loss: ``forward`` embeds the columns, ``compute_loss_from_embeddings`` does the maths."""

    _warned_alone: bool = False
    #: warn when run without SpladeLoss (sentence-transformers refuses these losses alone)
    _wants_regularizer: bool = True

    def forward(self, features: list[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        if self._wants_regularizer and not type(self)._warned_alone:
            type(self)._warned_alone = True
            logger.warning(
                "%s is training without a sparsity regularizer, so SPLADE vectors will grow dense; wrap it: "
                "SpladeLoss(model, loss=%s(model), document_regularizer_weight=3e-5, query_regularizer_weight=5e-5)",
                type(self).__name__, type(self).__name__,
            )
        return self.compute_loss_from_embeddings(embed_columns(self.embed, features), labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        raise NotImplementedError


# -- the losses ------------------------------------------------------------------------------


class FlopsLoss(EncoderLoss):
    """The FLOPS sparsity regularizer; SpladeLoss applies it to queries and documents.

    ``forward`` regularizes all columns together (useful alone only for tests and ablations).
    """

    def __init__(self, model: nn.Module, threshold: float | None = None) -> None:
        super().__init__(model)
        if threshold is not None:
            _positive_number(threshold, "threshold", allow_zero=True)
        self.threshold = threshold

    def forward(self, features: list[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        return self.compute_loss_from_embeddings(embed_columns(self.embed, features, separate_first=False))

    def compute_loss_from_embeddings(self, embeddings: Tensor | Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        if not isinstance(embeddings, Tensor):
            embeddings = torch.cat(list(embeddings), dim=0)
        return flops(embeddings, self.threshold)

    def get_config_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold}

    @property
    def citation(self) -> str:
        return "Paria et al., Minimizing FLOPs to Learn Efficient Sparse Representations, arXiv:2004.05665 (2020)"


class SpladeLoss(EncoderLoss):
    """Main sparse loss + weighted FLOPS of queries (column 0) and documents (the other columns).

    Returns a dict of parts: ``base_loss`` (or the main loss's own parts when it returns a dict),
    ``document_regularizer_loss`` and, with a query weight, ``query_regularizer_loss``; training
    minimizes their sum. ``use_document_regularizer_only`` treats every column as a document
    (symmetric data such as document pairs).
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        document_regularizer_weight: float,
        query_regularizer_weight: float | None = None,
        document_regularizer: nn.Module | None = None,
        query_regularizer: nn.Module | None = None,
        document_regularizer_threshold: int | None = None,
        query_regularizer_threshold: int | None = None,
        use_document_regularizer_only: bool = False,
    ) -> None:
        super().__init__(model)
        if isinstance(loss, (SpladeLoss, FlopsLoss)) or not callable(getattr(loss, "compute_loss_from_embeddings", None)):
            raise InputError(
                f"SpladeLoss needs a main loss with compute_loss_from_embeddings(embeddings, labels), got "
                f"{type(loss).__name__}; pass e.g. SparseMultipleNegativesRankingLoss(model)"
            )
        self.loss = loss
        self.document_regularizer_weight = _positive_number(
            document_regularizer_weight, "document_regularizer_weight", allow_zero=True)
        self.use_document_regularizer_only = bool(use_document_regularizer_only)
        if query_regularizer_weight is not None:
            _positive_number(query_regularizer_weight, "query_regularizer_weight", allow_zero=True)
        if document_regularizer is None:
            document_regularizer = FlopsLoss(model, threshold=document_regularizer_threshold)
        self.document_regularizer = document_regularizer
        self.query_regularizer: nn.Module | None = query_regularizer
        if query_regularizer is None and not use_document_regularizer_only:
            self.query_regularizer = FlopsLoss(model, threshold=query_regularizer_threshold)
        if use_document_regularizer_only and query_regularizer_weight is not None:
            logger.warning("use_document_regularizer_only=True regularizes every column as a document; "
                           "query_regularizer_weight=%s is ignored", query_regularizer_weight)
            query_regularizer_weight = None
        elif query_regularizer_weight is None and not use_document_regularizer_only:
            logger.warning("query_regularizer_weight is None, so queries are not regularized: fine for "
                           "inference-free models, otherwise set it (e.g. 5e-5)")
        self.query_regularizer_weight = query_regularizer_weight

    def forward(self, features: list[dict[str, Tensor]], labels: Tensor | None = None) -> dict[str, Tensor]:
        documents_only = self.use_document_regularizer_only
        embeddings = embed_columns(self.embed, features, separate_first=not documents_only)
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> dict[str, Tensor]:
        if not self.use_document_regularizer_only and len(embeddings) < 2:
            raise InputError(
                "SpladeLoss needs a query column and at least one document column; for one column of "
                "documents set use_document_regularizer_only=True"
            )
        parts: dict[str, Tensor] = {}
        main = self.loss.compute_loss_from_embeddings(embeddings, labels)
        if isinstance(main, dict):
            parts.update(main)
        else:
            parts["base_loss"] = main
        documents = embeddings if self.use_document_regularizer_only else embeddings[1:]
        document_reg = self.document_regularizer.compute_loss_from_embeddings(torch.cat(documents, dim=0))
        parts["document_regularizer_loss"] = document_reg * self.document_regularizer_weight
        if self.query_regularizer_weight is not None and self.query_regularizer is not None:
            query_reg = self.query_regularizer.compute_loss_from_embeddings(embeddings[0])
            parts["query_regularizer_loss"] = query_reg * self.query_regularizer_weight
        return parts

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"loss": repr(self.loss), "document_regularizer_weight": self.document_regularizer_weight}
        if self.query_regularizer_weight is not None:
            config["query_regularizer_weight"] = self.query_regularizer_weight
        for role, regularizer in (("document", self.document_regularizer), ("query", self.query_regularizer)):
            if regularizer is None:
                continue
            if not isinstance(regularizer, FlopsLoss):
                config[f"{role}_regularizer"] = type(regularizer).__name__
            if getattr(regularizer, "threshold", None) is not None:
                config[f"{role}_regularizer_threshold"] = regularizer.threshold
        return config

    @property
    def citation(self) -> str:
        return ("Formal et al., From Distillation to Hard Negative Sampling: Making Sparse Neural IR Models "
                "More Effective, arXiv:2205.04733 (2022)")


class SparseMultipleNegativesRankingLoss(_SparseLoss):
    """In-batch negatives ranking (InfoNCE) over (anchor, positive[, negatives...]) columns; no labels."""

    def __init__(
        self,
        model: nn.Module,
        scale: float = 1.0,
        similarity_fct: Similarity | str = util.dot_score,
        gather_across_devices: bool = False,
        directions: tuple[str, ...] = ("query_to_doc",),
        partition_mode: str = "joint",
        hardness_mode: str | None = None,
        hardness_strength: float = 0.0,
    ) -> None:
        super().__init__(model)
        self.scale = _positive_number(scale, "scale")
        self.similarity_fct = _similarity(similarity_fct, pairwise=False)
        self.gather_across_devices = bool(gather_across_devices)
        directions = tuple(directions)
        unknown = [d for d in directions if d not in _DIRECTIONS]
        if not directions or unknown or "query_to_doc" not in directions:
            raise InputError(f"directions must include 'query_to_doc' and only use {_DIRECTIONS}, got {directions}")
        if partition_mode not in ("joint", "per_direction"):
            raise InputError(f"partition_mode must be 'joint' or 'per_direction', got {partition_mode!r}")
        if partition_mode == "per_direction" and {"query_to_query", "doc_to_doc"} & set(directions):
            raise InputError("partition_mode='per_direction' needs every direction to contain the positive pair; "
                             "use partition_mode='joint' with 'query_to_query' or 'doc_to_doc'")
        if hardness_mode not in _HARDNESS_MODES:
            raise InputError(f"hardness_mode must be one of {_HARDNESS_MODES}, got {hardness_mode!r}")
        self.directions, self.partition_mode, self.hardness_mode = directions, partition_mode, hardness_mode
        self.hardness_strength = _positive_number(hardness_strength, "hardness_strength", allow_zero=True)
        if hardness_mode is not None and hardness_strength == 0.0:
            logger.warning("hardness_mode=%r has no effect with hardness_strength=0.0", hardness_mode)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        check_columns(self, len(embeddings), "2 or more (anchor, positive, negatives...)", len(embeddings) >= 2)
        return in_batch_ranking_loss(
            embeddings[0], embeddings[1:], self.similarity_fct, self.scale, self.directions, self.partition_mode,
            self.hardness_mode, self.hardness_strength, self.gather_across_devices,
        )

    @property
    def temperature(self) -> float:
        return 1.0 / self.scale

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale, "similarity_fct": _function_name(self.similarity_fct),
            "gather_across_devices": self.gather_across_devices, "directions": self.directions,
            "partition_mode": self.partition_mode, "hardness_mode": self.hardness_mode,
            "hardness_strength": self.hardness_strength,
        }

    @property
    def citation(self) -> str:
        return "van den Oord et al., Representation Learning with Contrastive Predictive Coding, arXiv:1807.03748"


class SparseMarginMSELoss(_SparseLoss):
    """Distillation of a teacher's score margins over (query, positive, negative[s]) columns."""

    def __init__(self, model: nn.Module, similarity_fct: Similarity | str = util.pairwise_dot_score) -> None:
        super().__init__(model)
        self.similarity_fct = _similarity(similarity_fct, pairwise=True)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        check_columns(self, len(embeddings), "3 or more (query, positive, negatives...)", len(embeddings) >= 3)
        labels = _label_tensor(labels, self, embeddings[0].device)
        return margin_mse(embeddings[0], embeddings[1:], labels, self.similarity_fct)

    def get_config_dict(self) -> dict[str, Any]:
        return {"similarity_fct": _function_name(self.similarity_fct)}

    @property
    def citation(self) -> str:
        return ("Hofstätter et al., Improving Efficient Neural Ranking Models with Cross-Architecture "
                "Knowledge Distillation, arXiv:2010.02666")


class SparseDistillKLDivLoss(_SparseLoss):
    """Distillation of a teacher's score distribution over (query, candidate_1..n) with KL divergence."""

    def __init__(
        self,
        model: nn.Module,
        similarity_fct: Similarity | str = util.pairwise_dot_score,
        temperature: float = 2.0,
        student_temperature: float | None = None,
        teacher_temperature: float | None = None,
    ) -> None:
        super().__init__(model)
        self.similarity_fct = _similarity(similarity_fct, pairwise=True)
        self.temperature = _positive_number(temperature, "temperature")
        self.student_temperature = _positive_number(
            temperature if student_temperature is None else student_temperature, "student_temperature")
        self.teacher_temperature = _positive_number(
            temperature if teacher_temperature is None else teacher_temperature, "teacher_temperature")
        self._teacher_checked = False

    def _check_teacher(self, labels: Tensor) -> None:
        """Once: NaN teacher scores are an error; scores that underflow the softmax get a warning."""
        self._teacher_checked = True
        scores = labels.detach().float()
        if scores.isnan().any():
            raise InputError(f"{type(self).__name__}: the teacher scores (labels) contain NaN; fix that column")
        if scores.isinf().any():
            return  # -inf marks candidates excluded on purpose
        zeros = int((torch.softmax(scores / self.teacher_temperature, dim=1) == 0).sum())
        if zeros:
            spread = float((scores.max(dim=1).values - scores.min(dim=1).values).max())
            logger.warning("%s: teacher_temperature=%s turns %d teacher probabilities into exactly 0 (score "
                           "spread %.1f); raise teacher_temperature above %.3g", type(self).__name__,
                           self.teacher_temperature, zeros, spread, spread / 100)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        check_columns(self, len(embeddings), "3 or more (query, candidate_1, candidate_2, ...)", len(embeddings) >= 3)
        labels = _label_tensor(labels, self, embeddings[0].device)
        expected = (embeddings[0].shape[0], len(embeddings) - 1)
        if tuple(labels.shape) != expected:
            raise InputError(f"{type(self).__name__} needs teacher scores of shape {expected} (one per candidate "
                             f"column), got {tuple(labels.shape)}")
        if not self._teacher_checked:
            self._check_teacher(labels)
        return distill_kl_div(embeddings[0], embeddings[1:], labels, self.similarity_fct,
                              self.student_temperature, self.teacher_temperature)

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"similarity_fct": _function_name(self.similarity_fct), "temperature": self.temperature}
        if self.student_temperature != self.temperature:
            config["student_temperature"] = self.student_temperature
        if self.teacher_temperature != self.temperature:
            config["teacher_temperature"] = self.teacher_temperature
        return config

    @property
    def citation(self) -> str:
        return ("Lin et al., Distilling Dense Representations for Ranking using Tightly-Coupled Teachers, "
                "arXiv:2010.11386")


class SparseCoSENTLoss(_SparseLoss):
    """CoSENT over (text1, text2) pairs with a similarity score label; sets the model to cosine similarity."""

    def __init__(self, model: nn.Module, scale: float = 20.0,
                 similarity_fct: Similarity | str = util.pairwise_cos_sim) -> None:
        super().__init__(model)
        if hasattr(model, "similarity_fn_name"):
            model.similarity_fn_name = "cosine"  # the model is trained for cosine: save it that way
        self.scale = _positive_number(scale, "scale")
        self.similarity_fct = _similarity(similarity_fct, pairwise=True)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        check_columns(self, len(embeddings), "2 (text1, text2)", len(embeddings) == 2)
        labels = _label_tensor(labels, self, embeddings[0].device)
        batch = embeddings[0].shape[0]
        if labels.numel() != batch:
            raise InputError(f"{type(self).__name__} needs one label per pair ({batch}), got shape {tuple(labels.shape)}")
        return cosent(self.similarity_fct(embeddings[0], embeddings[1]), labels.view(-1), self.scale)

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "similarity_fct": _function_name(self.similarity_fct)}

    @property
    def citation(self) -> str:
        return "Huang et al., CoSENT: Consistent Sentence Embedding via Similarity Ranking, TASLP 2024"


class SparseTripletLoss(_SparseLoss):
    """Triplet margin loss over (anchor, positive, negative) columns; no labels."""

    def __init__(self, model: nn.Module, distance_metric: Similarity | str = TripletDistanceMetric.EUCLIDEAN,
                 triplet_margin: float = 5) -> None:
        super().__init__(model)
        if isinstance(distance_metric, str):
            named = getattr(TripletDistanceMetric, distance_metric.upper(), None)
            if named is None:
                raise InputError(f"distance_metric must be 'cosine', 'euclidean' or 'manhattan', got {distance_metric!r}")
            distance_metric = named
        self.distance_metric = _similarity(distance_metric, pairwise=True, what="distance_metric")
        self.triplet_margin = _positive_number(triplet_margin, "triplet_margin", allow_zero=True)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        check_columns(self, len(embeddings), "3 (anchor, positive, negative)", len(embeddings) == 3)
        return triplet(*embeddings, distance=self.distance_metric, margin=self.triplet_margin)

    def get_config_dict(self) -> dict[str, Any]:
        name = _function_name(self.distance_metric)
        for metric in ("COSINE", "EUCLIDEAN", "MANHATTAN"):
            if self.distance_metric is getattr(TripletDistanceMetric, metric):
                name = f"TripletDistanceMetric.{metric}"
        return {"distance_metric": name, "triplet_margin": self.triplet_margin}

    @property
    def citation(self) -> str:
        return "Hermans et al., In Defense of the Triplet Loss for Person Re-Identification, arXiv:1703.07737"


class SparseMSELoss(_SparseLoss):
    """MSE between the student's vectors and precomputed teacher vectors (the label).

    Labels: (batch, dim) targets every column; (batch, columns, dim) one target per column.
    Runs alone without a warning (distilling a sparse teacher), as in sentence-transformers.
    """

    _wants_regularizer = False

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | Sequence[Tensor] | None = None
                                     ) -> Tensor:
        check_columns(self, len(embeddings), "1 or more", len(embeddings) >= 1)
        if isinstance(labels, (list, tuple)) and all(isinstance(t, Tensor) for t in labels):
            targets = list(labels)  # one teacher tensor per column, as sentence-transformers passes them
        else:
            labels = _label_tensor(labels, self, embeddings[0].device)
            if labels.ndim == 2:
                targets = [labels] * len(embeddings)
            elif labels.ndim == 3 and labels.shape[1] == len(embeddings):
                targets = list(labels.unbind(1))
            else:
                raise InputError(
                    f"{type(self).__name__} needs teacher embeddings of shape (batch, dim) or (batch, "
                    f"{len(embeddings)}, dim) as labels, got {tuple(labels.shape)}")
        if len(targets) != len(embeddings):
            raise InputError(f"{type(self).__name__} got {len(targets)} teacher tensors for {len(embeddings)} columns")
        losses = []
        for student, teacher in zip(embeddings, targets, strict=True):
            teacher = teacher.detach().to(device=student.device, dtype=student.dtype)
            if teacher.shape != student.shape:
                raise InputError(f"teacher embeddings have shape {tuple(teacher.shape)}, the student's "
                                 f"{tuple(student.shape)}; use a teacher with the same vocabulary")
            losses.append(F.mse_loss(student, teacher))
        return torch.stack(losses).mean()

    @property
    def citation(self) -> str:
        return ("Reimers and Gurevych, Making Monolingual Sentence Embeddings Multilingual using Knowledge "
                "Distillation, EMNLP 2020")
