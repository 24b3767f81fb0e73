"""Losses for SPLADE (SparseEncoder) training, numerically equal to sentence-transformers' sparse losses.

A SPLADE model is trained with ``SpladeLoss``: it embeds every text column once, hands the
embeddings to a main loss (ranking, distillation, similarity) through
``compute_loss_from_embeddings`` and adds FLOPS regularizers that push the query and document
vectors towards sparsity. Without them the vectors fill up and lose their point, which is why
sentence-transformers refuses the main losses alone; here they also run alone (``forward``),
with a warning, so they can be checked or combined by hand.

The maths is kept in plain functions that take embeddings and return a scalar: ``flops`` here,
the objectives shared with the dense losses (``in_batch_ranking_loss``, ``margin_mse``, ``cosent``,
...) in ``functional``, re-exported from this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import sdk.util as util
from sdk.core.errors import InputError
from sdk.training.losses.base import EncoderLoss, check_columns
from sdk.training.losses.dense import MultipleNegativesRankingLoss
from sdk.training.losses.functional import (
    Similarity,
    TripletDistanceMetric,
    check_label_count,
    cosent,
    distill_kl_div,
    function_name,
    gather_with_grad,
    in_batch_ranking_loss,
    margin_mse,
    positive_number,
    resolve_similarity,
    teacher_mse,
    triplet,
    triplet_metric_name,
)

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
    "gather_with_grad",
    "in_batch_ranking_loss",
    "margin_mse",
    "triplet",
]

logger = logging.getLogger(__name__)



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


# -- helpers shared by the loss classes -------------------------------------------------------


def _label_tensor(labels: Any, loss: nn.Module, device: torch.device) -> Tensor:
    if labels is None:
        raise InputError(f"{type(loss).__name__} needs a label column ('label' or 'score') in the dataset")
    if not isinstance(labels, Tensor):
        raise InputError(
            f"{type(loss).__name__} needs labels as one tensor (rows of equal length), got {type(labels).__name__}"
        )
    return labels.to(device)


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
            positive_number(threshold, "threshold", allow_zero=True)
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
        self.document_regularizer_weight = positive_number(
            document_regularizer_weight, "document_regularizer_weight", allow_zero=True)
        self.use_document_regularizer_only = bool(use_document_regularizer_only)
        if query_regularizer_weight is not None:
            positive_number(query_regularizer_weight, "query_regularizer_weight", allow_zero=True)
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


class SparseMultipleNegativesRankingLoss(_SparseLoss, MultipleNegativesRankingLoss):
    """In-batch negatives ranking (InfoNCE) over (anchor, positive[, negatives...]) columns; no labels.

    The dense loss on SPLADE vectors, with sparse defaults (dot product, scale 1); the other
    options (``gather_across_devices``, ``directions``, ``partition_mode``, ``hardness_mode``,
    ``hardness_strength``, in that order) are the dense loss's.
    """

    compute_loss_from_embeddings = MultipleNegativesRankingLoss.compute_loss_from_embeddings

    def __init__(self, model: nn.Module, scale: float = 1.0, similarity_fct: Similarity | str = util.dot_score,
                 *args: Any, **kwargs: Any) -> None:
        super().__init__(model, scale, similarity_fct, *args, **kwargs)


class SparseMarginMSELoss(_SparseLoss):
    """Distillation of a teacher's score margins over (query, positive, negative[s]) columns."""

    def __init__(self, model: nn.Module, similarity_fct: Similarity | str = util.pairwise_dot_score) -> None:
        super().__init__(model)
        self.similarity_fct = resolve_similarity(similarity_fct, pairwise=True)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        check_columns(self, len(embeddings), "3 or more (query, positive, negatives...)", len(embeddings) >= 3)
        labels = _label_tensor(labels, self, embeddings[0].device)
        return margin_mse(embeddings[0], embeddings[1:], labels, self.similarity_fct, type(self).__name__)

    def get_config_dict(self) -> dict[str, Any]:
        return {"similarity_fct": function_name(self.similarity_fct)}

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
        self.similarity_fct = resolve_similarity(similarity_fct, pairwise=True)
        self.temperature = positive_number(temperature, "temperature")
        self.student_temperature = positive_number(
            temperature if student_temperature is None else student_temperature, "student_temperature")
        self.teacher_temperature = positive_number(
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
        config: dict[str, Any] = {"similarity_fct": function_name(self.similarity_fct), "temperature": self.temperature}
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
        self.scale = positive_number(scale, "scale")
        self.similarity_fct = resolve_similarity(similarity_fct, pairwise=True)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        check_columns(self, len(embeddings), "2 (text1, text2)", len(embeddings) == 2)
        labels = check_label_count(self, _label_tensor(labels, self, embeddings[0].device), embeddings[0].shape[0])
        return cosent(self.similarity_fct(embeddings[0], embeddings[1]), labels, self.scale)

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "similarity_fct": function_name(self.similarity_fct)}

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
        self.distance_metric = resolve_similarity(distance_metric, pairwise=True, what="distance_metric")
        self.triplet_margin = positive_number(triplet_margin, "triplet_margin", allow_zero=True)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        check_columns(self, len(embeddings), "3 (anchor, positive, negative)", len(embeddings) == 3)
        return triplet(*embeddings, distance=self.distance_metric, margin=self.triplet_margin)

    def get_config_dict(self) -> dict[str, Any]:
        return {"distance_metric": triplet_metric_name(self.distance_metric), "triplet_margin": self.triplet_margin}

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
        return teacher_mse(embeddings, targets, hint="; use a teacher with the same vocabulary")

    @property
    def citation(self) -> str:
        return ("Reimers and Gurevych, Making Monolingual Sentence Embeddings Multilingual using Knowledge "
                "Distillation, EMNLP 2020")
