"""The maths the dense, cached and sparse losses share, as plain functions on embeddings.

A dense bi-encoder and a SPLADE model are trained with the same objectives (in-batch negatives,
CoSENT, triplet margin, margin MSE, KL distillation); only how the columns are embedded differs.
Keeping one copy of each formula here means a fix or a new option (a direction, a hardness mode)
reaches every loss that uses it, and the parity with sentence-transformers is checked once.

``InfoNCE`` is the option holder and row scorer of the in-batch-negatives losses: the plain and
sparse ones score the whole batch, the GradCache one a chunk of query rows at a time.
"""

from __future__ import annotations

import functools
import logging
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import sdk.util as util
from sdk.core.errors import InputError
from sdk.training.losses.base import check_columns

__all__ = [
    "DIRECTIONS",
    "HARDNESS_MODES",
    "PARTITION_MODES",
    "InfoNCE",
    "Similarity",
    "TripletDistanceMetric",
    "check_label_count",
    "cosent",
    "distill_kl_div",
    "function_name",
    "gather_with_grad",
    "in_batch_ranking_loss",
    "margin_mse",
    "positive_number",
    "qualified_name",
    "resolve_similarity",
    "teacher_margins",
    "teacher_mse",
    "triplet",
    "triplet_metric_name",
]

logger = logging.getLogger(__name__)

Similarity = Callable[[Tensor, Tensor], Tensor]

DIRECTIONS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
PARTITION_MODES = ("joint", "per_direction")
HARDNESS_MODES = (None, "in_batch_negatives", "hard_negatives", "all_negatives")


# -- names and checks ------------------------------------------------------------------------


def function_name(fn: Any) -> str:
    """A readable name of a similarity callable or module for the model card (partials show their arguments)."""
    if isinstance(fn, functools.partial):
        args = ", ".join(f"{k}={v!r}" for k, v in fn.keywords.items())
        name = getattr(fn.func, "__name__", type(fn.func).__name__)
        return f"{name}({args})" if args else name
    return getattr(fn, "__name__", None) or type(fn).__name__


def qualified_name(obj: Any) -> str | None:
    """``module.Class`` of a module, activation or scheme for the model card (None stays None)."""
    if obj is None:
        return None
    # a class or a plain function names itself; a module or other object names its class
    is_function = callable(obj) and not isinstance(obj, nn.Module)
    kind = obj if isinstance(obj, type) or is_function else type(obj)
    name = getattr(kind, "__qualname__", None) or type(kind).__name__
    module = getattr(kind, "__module__", None)
    return f"{module}.{name}" if module and module != "builtins" else name


def resolve_similarity(value: Any, pairwise: bool, what: str = "similarity_fct") -> Similarity:
    """A similarity callable, from a callable or a name ("cosine", "dot", ...)."""
    if isinstance(value, str):
        return util.similarity_function(value, pairwise=pairwise)
    if not callable(value):
        raise InputError(f"{what} must be a function of two tensors or a similarity name, got {value!r}")
    return value


def positive_number(value: Any, name: str, allow_zero: bool = False) -> Any:
    """``value`` unchanged when it is a finite number > 0 (>= 0 with ``allow_zero``), else InputError."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        kind = "a non-negative" if allow_zero else "a positive"
        raise InputError(f"{name} must be {kind} finite number, got {value!r}")
    return value


def check_label_count(loss: nn.Module, labels: Tensor, batch_size: int) -> Tensor:
    """One label per example (pair), flattened; a clear error otherwise."""
    if labels.numel() != batch_size:
        raise InputError(
            f"{type(loss).__name__} expects {batch_size} labels (one label per pair or example), but got "
            f"{labels.numel()} with shape {tuple(labels.shape)}; give every row a single float 'label' or 'score'"
        )
    return labels.view(-1)


# -- in-batch negatives (InfoNCE) ------------------------------------------------------------


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def gather_with_grad(tensor: Tensor) -> Tensor:
    """All ranks' rows concatenated, differentiable for every rank's slice (identity when not distributed)."""
    if not _distributed():
        return tensor
    import torch.distributed.nn as dist_nn

    return torch.cat(dist_nn.all_gather(tensor), dim=0)


class InfoNCE:
    """Options and scoring of the in-batch-negatives losses (dense, cached and sparse).

    Column 0 holds the queries (anchors), column 1 their positives, columns 2.. hard negatives.
    ``row_losses`` scores a slice of the (possibly gathered) batch, so the cached loss can process
    the score matrix in chunks of rows with the same maths.
    """

    scale: float
    similarity_fct: Similarity
    gather_across_devices: bool
    directions: tuple[str, ...]
    partition_mode: str
    hardness_mode: str | None
    hardness_strength: float

    def _set_infonce_options(
        self,
        scale: float,
        similarity_fct: Similarity | str,
        gather_across_devices: bool,
        directions: Sequence[str],
        partition_mode: str,
        hardness_mode: str | None,
        hardness_strength: float,
    ) -> None:
        name = type(self).__name__
        positive_number(scale, f"{name}: scale (= 1 / temperature)")
        directions = tuple(directions)
        unknown = sorted(set(directions) - set(DIRECTIONS))
        if not directions or unknown:
            raise InputError(f"{name}: directions must be a non-empty subset of {DIRECTIONS}, got {directions}")
        if "query_to_doc" not in directions:
            raise InputError(f"{name}: directions must include 'query_to_doc' (it holds the positive pair)")
        if partition_mode not in PARTITION_MODES:
            raise InputError(f"{name}: partition_mode must be one of {PARTITION_MODES}, got {partition_mode!r}")
        if partition_mode == "per_direction" and {"query_to_query", "doc_to_doc"} & set(directions):
            raise InputError(
                f"{name}: partition_mode='per_direction' needs the positive in every direction's softmax; "
                "'query_to_query' and 'doc_to_doc' have none, so use partition_mode='joint' with them"
            )
        if hardness_mode not in HARDNESS_MODES:
            raise InputError(f"{name}: hardness_mode must be one of {HARDNESS_MODES}, got {hardness_mode!r}")
        positive_number(hardness_strength, f"{name}: hardness_strength", allow_zero=True)
        if hardness_mode is not None and hardness_strength == 0:
            logger.warning("%s: hardness_mode=%r has no effect while hardness_strength=0", name, hardness_mode)
        self.scale = scale
        self.similarity_fct = resolve_similarity(similarity_fct, pairwise=False)
        self.gather_across_devices = bool(gather_across_devices)
        self.directions = directions
        self.partition_mode = partition_mode
        self.hardness_mode = hardness_mode
        self.hardness_strength = hardness_strength

    def split_columns(self, embeddings: list[Tensor]) -> tuple[Tensor, list[Tensor], int]:
        """(queries, document columns, offset of this rank's rows), gathered across ranks if asked."""
        queries, docs = embeddings[0], list(embeddings[1:])
        offset = 0
        if self.gather_across_devices and _distributed():
            offset = torch.distributed.get_rank() * queries.size(0)
            queries = gather_with_grad(queries)
            docs = [gather_with_grad(doc) for doc in docs]
        return queries, docs, offset

    def ranking_loss(self, embeddings: list[Tensor]) -> Tensor:
        """The mean InfoNCE loss of this rank's queries over the whole batch."""
        queries, docs, offset = self.split_columns(embeddings)
        rows = torch.arange(offset, offset + embeddings[0].size(0), device=queries.device)
        return self.row_losses(queries, docs, torch.cat(docs, dim=0), rows).mean()

    def row_losses(self, queries: Tensor, docs: list[Tensor], docs_all: Tensor, rows: Tensor) -> Tensor:
        """Per-query InfoNCE loss of the queries at global indices ``rows``: shape (len(rows),).

        ``docs[0][i]`` is query i's positive, ``docs[1:]`` hard negatives, ``docs_all`` their
        concatenation. Extra ``directions`` add query-query, document-query and document-document
        logits to the softmax denominator; ``partition_mode="per_direction"`` uses one softmax per
        direction and averages the log-partitions. Hardness weighting adds ``hardness_strength * sim``
        (no gradient, not temperature-scaled) to the chosen negatives' logits.
        """
        world = queries.size(0)
        local = torch.arange(len(rows), device=queries.device)
        own = torch.zeros(len(rows), world, dtype=torch.bool, device=queries.device)
        own[local, rows] = True  # each row's own column among the world batch
        own_docs = own.repeat(1, len(docs))  # its positive and its own hard negatives
        row_queries = queries[rows]
        row_positives = docs[0][rows]

        sims = {"query_to_doc": self.similarity_fct(row_queries, docs_all)}
        if "query_to_query" in self.directions:
            sims["query_to_query"] = self.similarity_fct(row_queries, queries).masked_fill(own, -torch.inf)
        if "doc_to_query" in self.directions:
            sims["doc_to_query"] = self.similarity_fct(queries, row_positives).T
        if "doc_to_doc" in self.directions:
            sims["doc_to_doc"] = self.similarity_fct(docs_all, row_positives).T.masked_fill(own_docs, -torch.inf)

        logits = {key: value * self.scale for key, value in sims.items()}
        if self.hardness_mode is not None and self.hardness_strength > 0:
            penalty = self.hardness_strength * sims["query_to_doc"].detach()
            if self.hardness_mode == "hard_negatives":  # only this query's own hard negatives
                spared = ~own_docs
                spared[:, :world] = True
            elif self.hardness_mode == "in_batch_negatives":  # only other queries' documents
                spared = own_docs
            else:  # all_negatives: only the positive is spared
                spared = own_docs.clone()
                spared[:, world:] = False
            logits["query_to_doc"] = logits["query_to_doc"] + penalty.masked_fill(spared, 0.0)

        positives = logits["query_to_doc"][local, rows]
        if self.partition_mode == "joint":
            log_z = torch.logsumexp(torch.cat(list(logits.values()), dim=1), dim=1)
        else:
            log_z = sum(torch.logsumexp(value, dim=1) for value in logits.values()) / len(logits)
        return log_z - positives

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        check_columns(self, len(embeddings), "2 or more (anchor, positive, negatives...)", len(embeddings) >= 2)
        return self.ranking_loss(embeddings)

    def get_config_dict(self) -> dict[str, Any]:
        return self.infonce_config()

    def infonce_config(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "similarity_fct": function_name(self.similarity_fct),
            "gather_across_devices": self.gather_across_devices,
            "directions": self.directions,
            "partition_mode": self.partition_mode,
            "hardness_mode": self.hardness_mode,
            "hardness_strength": self.hardness_strength,
        }

    @property
    def temperature(self) -> float:
        return 1.0 / self.scale


def in_batch_ranking_loss(
    queries: Tensor,
    documents: Sequence[Tensor],
    similarity_fct: Similarity | str,
    scale: float,
    directions: Sequence[str] = ("query_to_doc",),
    partition_mode: str = "joint",
    hardness_mode: str | None = None,
    hardness_strength: float = 0.0,
    gather_across_devices: bool = False,
) -> Tensor:
    """InfoNCE with in-batch negatives, averaged over this rank's queries: each query's positive
    (``documents[0][i]``) against every candidate; ``documents[1:]`` are hard negatives.

    The options are validated and mean what they mean on ``InfoNCE`` (the losses' scorer).
    """
    scorer = InfoNCE()
    scorer._set_infonce_options(
        scale, similarity_fct, gather_across_devices, directions, partition_mode, hardness_mode, hardness_strength
    )
    return scorer.ranking_loss([queries, *documents])


# -- scored pairs, triplets and distillation ---------------------------------------------------


def cosent(scores: Tensor, labels: Tensor, scale: float) -> Tensor:
    """CoSENT: log(1 + sum over pairs with label_i < label_j of exp(scale * (s_i - s_j))).

    Only the order of the labels matters. Computed in O(n log n): after sorting by label, each
    score meets the log-sum of the negated scores of every strictly higher label through a
    reversed cumulative logsumexp, without an n x n matrix.
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


class TripletDistanceMetric:
    """Pairwise distances for the triplet loss (row i of x against row i of y; sentence-transformers' names)."""

    @staticmethod
    def COSINE(x: Tensor, y: Tensor) -> Tensor:  # noqa: N802 - sentence-transformers' names
        return 1 - util.pairwise_cos_sim(x, y)

    @staticmethod
    def EUCLIDEAN(x: Tensor, y: Tensor) -> Tensor:  # noqa: N802
        return -util.pairwise_euclidean_sim(x, y)

    @staticmethod
    def MANHATTAN(x: Tensor, y: Tensor) -> Tensor:  # noqa: N802
        return -util.pairwise_manhattan_sim(x, y)


def triplet_metric_name(distance: Any) -> str:
    """``TripletDistanceMetric.NAME`` for the built-in distances, the function's name otherwise."""
    for metric in ("COSINE", "EUCLIDEAN", "MANHATTAN"):
        if distance is getattr(TripletDistanceMetric, metric):
            return f"TripletDistanceMetric.{metric}"
    return function_name(distance)


def triplet(anchor: Tensor, positive: Tensor, negative: Tensor, distance: Similarity, margin: float) -> Tensor:
    """mean(relu(d(a, p) - d(a, n) + margin))."""
    return F.relu(distance(anchor, positive) - distance(anchor, negative) + margin).mean()


def teacher_margins(labels: Tensor, rows: int, n_negatives: int, name: str) -> Tensor:
    """Teacher margins of shape (rows, n_negatives) from (rows, n_negatives) margins,
    (rows, 1 + n_negatives) raw teacher scores [pos, neg_1, ...], or (rows,) with one negative."""
    if tuple(labels.shape) == (rows, n_negatives + 1):
        labels = labels[:, :1] - labels[:, 1:]
    if tuple(labels.shape) == (rows,):
        labels = labels.unsqueeze(1)
    if tuple(labels.shape) != (rows, n_negatives):
        raise InputError(
            f"{name} labels have shape {tuple(labels.shape)}, expected ({rows}, {n_negatives}) teacher margins "
            f"score(q, pos) - score(q, neg_i), or ({rows}, {n_negatives + 1}) raw teacher scores [pos, neg_1, ...]"
        )
    return labels


def margin_mse(query: Tensor, documents: Sequence[Tensor], labels: Tensor, similarity_fct: Similarity,
               name: str = "MarginMSELoss") -> Tensor:
    """MSE between predicted margins sim(q, pos) - sim(q, neg_i) and the teacher's (see ``teacher_margins``)."""
    negatives = documents[1:]
    labels = teacher_margins(labels, query.size(0), len(negatives), name)
    positive = similarity_fct(query, documents[0])
    margins = torch.stack([positive - similarity_fct(query, neg) for neg in negatives], dim=1)
    return F.mse_loss(margins, labels.detach())


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


def teacher_mse(students: Sequence[Tensor], teachers: Sequence[Tensor], hint: str = "") -> Tensor:
    """Mean over columns of the MSE between each student embedding matrix and its teacher's."""
    losses = []
    for student, teacher in zip(students, teachers, strict=True):
        teacher = teacher.detach().to(device=student.device, dtype=student.dtype)
        if teacher.shape != student.shape:
            raise InputError(f"teacher embeddings have shape {tuple(teacher.shape)}, the student's "
                             f"{tuple(student.shape)}{hint}")
        losses.append(F.mse_loss(student, teacher))
    return torch.stack(losses).mean()
