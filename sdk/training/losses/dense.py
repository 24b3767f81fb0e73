"""Bi-encoder (dense) losses: contrastive, similarity regression, triplet and distillation objectives.

Each loss embeds every text column of a batch with ``EncoderLoss.embed`` (one forward pass per
column) and computes sentence-transformers' formula on those embeddings in
``compute_loss_from_embeddings``, so values and gradients match it to float precision. Splitting
"embed" from "score" is what lets ``MatryoshkaLoss`` reuse one forward pass for every truncation
and ``CachedMultipleNegativesRankingLoss`` share the in-batch-negatives maths. The formulas
themselves (InfoNCE, CoSENT, triplet, margin MSE) live in ``functional``, shared with the sparse losses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sdk.core.errors import InputError
from sdk.training.losses.base import EncoderLoss, check_columns, labels_tensor
from sdk.training.losses.functional import (
    DIRECTIONS,
    InfoNCE,
    Similarity,
    TripletDistanceMetric,
    check_label_count,
    cosent,
    function_name,
    margin_mse,
    qualified_name,
    teacher_mse,
    triplet,
    triplet_metric_name,
)
from sdk.util import cos_sim, pairwise_cos_sim, pairwise_dot_score

__all__ = [
    "DIRECTIONS",
    "AnglELoss",
    "BatchHardTripletLoss",
    "BatchHardTripletLossDistanceFunction",
    "CoSENTLoss",
    "CosineSimilarityLoss",
    "EmbeddingLoss",
    "MSELoss",
    "MarginMSELoss",
    "MultipleNegativesRankingLoss",
    "TripletDistanceMetric",
    "TripletLoss",
    "pairwise_angle_sim",
]


def pairwise_angle_sim(x: Tensor, y: Tensor) -> Tensor:
    """|cos + sin| similarity of AnglE: dimension i is paired with i + D/2 for the sine term."""
    if x.shape[1] % 2:  # chunk() needs an even width
        x = F.pad(x, (0, 1))
        y = F.pad(y, (0, 1))
    x = F.normalize(x, p=2, dim=1)
    y = F.normalize(y, p=2, dim=1)
    cosines = (x * y).sum(dim=1)
    x_re, x_im = torch.chunk(x, 2, dim=1)
    y_re, y_im = torch.chunk(y, 2, dim=1)
    sines = (x_im * y_re - x_re * y_im).sum(dim=1)
    return torch.abs(cosines + sines)


class EmbeddingLoss(EncoderLoss):
    """A loss computed from one embedding matrix per text column.

    ``forward`` validates the batch, embeds each column with ``self.embed`` and hands the list to
    ``compute_loss_from_embeddings``; wrappers (MatryoshkaLoss) hook into ``embed``.
    """

    def forward(self, features: Sequence[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        features = list(features)
        self.check_inputs(len(features), labels)
        embeddings = [self.embed(column) for column in features]
        return self.compute_loss_from_embeddings(embeddings, labels)

    def check_inputs(self, num_columns: int, labels: Tensor | None) -> None:
        """Raise InputError when the batch has the wrong columns or lacks labels the loss needs."""

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        raise NotImplementedError


# -- in-batch negatives ---------------------------------------------------------------------------


class MultipleNegativesRankingLoss(InfoNCE, EmbeddingLoss):
    """InfoNCE with in-batch negatives over (anchor, positive[, negative_1, ..., negative_n]) rows.

    Every other row's positive (and every hard negative) is a negative for each anchor; the
    ``directions``/``partition_mode``/``hardness_*`` options select sentence-transformers' variants
    (symmetric InfoNCE, GTE's improved contrastive loss, hardness weighting).
    """

    def __init__(
        self,
        model: nn.Module,
        scale: float = 20.0,
        similarity_fct: Similarity | str = cos_sim,
        gather_across_devices: bool = False,
        directions: Sequence[str] = ("query_to_doc",),
        partition_mode: str = "joint",
        hardness_mode: str | None = None,
        hardness_strength: float = 0.0,
    ) -> None:
        super().__init__(model)
        self._set_infonce_options(
            scale, similarity_fct, gather_across_devices, directions, partition_mode, hardness_mode, hardness_strength
        )

    def check_inputs(self, num_columns: int, labels: Tensor | None) -> None:
        check_columns(self, num_columns, "2 or more (anchor, positive, negatives...)", num_columns >= 2)

    @property
    def citation(self) -> str:
        return (
            "@misc{oord2019representationlearningcontrastivepredictive,\n"
            "    title={Representation Learning with Contrastive Predictive Coding},\n"
            "    author={Aaron van den Oord and Yazhe Li and Oriol Vinyals},\n"
            "    year={2019}, eprint={1807.03748}, archivePrefix={arXiv}, primaryClass={cs.LG},\n}\n"
        )


# -- similarity regression / ranking on scored pairs ----------------------------------------------


class CoSENTLoss(EmbeddingLoss):
    """Ranks pair similarities by their gold scores: log(1 + sum exp(s(k,l) - s(i,j))) over label(i,j) > label(k,l).

    Only the order of the labels matters; computed in O(n log n) over the sorted labels.
    """

    def __init__(self, model: nn.Module, scale: float = 20.0, similarity_fct: Similarity = pairwise_cos_sim) -> None:
        super().__init__(model)
        self.similarity_fct = similarity_fct
        self.scale = scale

    def check_inputs(self, num_columns: int, labels: Tensor | None) -> None:
        check_columns(self, num_columns, "2 (sentence_A, sentence_B)", num_columns == 2)
        labels_tensor(labels, self)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        labels = check_label_count(self, labels_tensor(labels, self), embeddings[0].size(0))
        return cosent(self.similarity_fct(embeddings[0], embeddings[1]), labels, self.scale)

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "similarity_fct": function_name(self.similarity_fct)}

    @property
    def citation(self) -> str:
        return (
            "@article{10531646,\n    author={Huang, Xiang and Peng, Hao and Zou, Dongcheng and Liu, Zhiwei and "
            "Li, Jianxin and Liu, Kay and Wu, Jia and Su, Jianlin and Yu, Philip S.},\n"
            "    journal={IEEE/ACM Transactions on Audio, Speech, and Language Processing},\n"
            "    title={CoSENT: Consistent Sentence Embedding via Similarity Ranking},\n"
            "    year={2024}, doi={10.1109/TASLP.2024.3402087}\n}\n"
        )


class AnglELoss(CoSENTLoss):
    """CoSENT on the angle similarity, which keeps a gradient where cosine saturates.

    With more than two columns, (anchor, positive, negatives...) rows become scored pairs: the
    anchor-positive pair gets the row's label (1 when there are no labels) and each
    anchor-negative pair gets 1 - label.
    """

    def __init__(self, model: nn.Module, scale: float = 20.0) -> None:
        super().__init__(model, scale, similarity_fct=pairwise_angle_sim)

    def check_inputs(self, num_columns: int, labels: Tensor | None) -> None:
        check_columns(self, num_columns, "2 (pairs with labels) or more (anchor, positive, negatives...)",
                      num_columns >= 2)
        if num_columns == 2:
            labels_tensor(labels, self)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        if len(embeddings) <= 2:
            return super().compute_loss_from_embeddings(embeddings, labels)
        anchors = embeddings[0]
        extra = len(embeddings) - 2
        if labels is None:
            labels = torch.ones(anchors.size(0), device=anchors.device)
        labels = check_label_count(self, labels, anchors.size(0))
        pairs = [anchors.repeat(len(embeddings) - 1, 1), torch.cat(embeddings[1:], dim=0)]
        return super().compute_loss_from_embeddings(pairs, torch.cat([labels, (1 - labels).repeat(extra)]))

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "similarity_fct": function_name(self.similarity_fct)}

    @property
    def citation(self) -> str:
        return (
            '@inproceedings{li-li-2024-aoe,\n    title = "{A}o{E}: Angle-optimized Embeddings for Semantic '
            'Textual Similarity",\n    author = "Li, Xianming and Li, Jing",\n    year = "2024",\n'
            '    doi = "10.18653/v1/2024.acl-long.101"\n}\n'
        )


class CosineSimilarityLoss(EmbeddingLoss):
    """Regresses cos(u, v) (optionally transformed) onto the gold score with ``loss_fct`` (MSE)."""

    def __init__(
        self,
        model: nn.Module,
        loss_fct: nn.Module = nn.MSELoss(),  # noqa: B008 - stateless default, as in sentence-transformers
        cos_score_transformation: nn.Module = nn.Identity(),  # noqa: B008
    ) -> None:
        super().__init__(model)
        self.loss_fct = loss_fct
        self.cos_score_transformation = cos_score_transformation

    def check_inputs(self, num_columns: int, labels: Tensor | None) -> None:
        check_columns(self, num_columns, "2 (sentence_A, sentence_B)", num_columns == 2)
        labels_tensor(labels, self)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        labels = check_label_count(self, labels_tensor(labels, self), embeddings[0].size(0))
        scores = self.cos_score_transformation(torch.cosine_similarity(embeddings[0], embeddings[1]))
        return self.loss_fct(scores, labels.float())

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "loss_fct": qualified_name(self.loss_fct),
            "cos_score_transformation": qualified_name(self.cos_score_transformation),
        }


# -- triplets -----------------------------------------------------------------------------------


class TripletLoss(EmbeddingLoss):
    """max(d(anchor, positive) - d(anchor, negative) + margin, 0) over (anchor, positive, negative) rows."""

    def __init__(
        self,
        model: nn.Module,
        distance_metric: Callable[[Tensor, Tensor], Tensor] = TripletDistanceMetric.EUCLIDEAN,
        triplet_margin: float = 5,
    ) -> None:
        super().__init__(model)
        self.distance_metric = distance_metric
        self.triplet_margin = triplet_margin

    def check_inputs(self, num_columns: int, labels: Tensor | None) -> None:
        check_columns(self, num_columns, "3 (anchor, positive, negative)", num_columns == 3)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        return triplet(*embeddings, distance=self.distance_metric, margin=self.triplet_margin)

    def get_config_dict(self) -> dict[str, Any]:
        return {"distance_metric": triplet_metric_name(self.distance_metric), "triplet_margin": self.triplet_margin}

    @property
    def citation(self) -> str:
        return _HERMANS


_HERMANS = (
    "@misc{hermans2017defense,\n    title={In Defense of the Triplet Loss for Person Re-Identification},\n"
    "    author={Alexander Hermans and Lucas Beyer and Bastian Leibe},\n"
    "    year={2017}, eprint={1703.07737}, archivePrefix={arXiv}, primaryClass={cs.CV}\n}\n"
)


class BatchHardTripletLossDistanceFunction:
    """All-pairs distance matrices for BatchHardTripletLoss."""

    @staticmethod
    def cosine_distance(embeddings: Tensor) -> Tensor:
        return 1 - cos_sim(embeddings, embeddings)

    @staticmethod
    def euclidean_distance(embeddings: Tensor, squared: bool = False) -> Tensor:
        """Euclidean distance matrix from the Gram matrix (in fp32), with a safe sqrt at 0."""
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            if embeddings.dtype in (torch.float16, torch.bfloat16):
                embeddings = embeddings.float()
            gram = embeddings @ embeddings.t()
        norms = torch.diag(gram)
        distances = (norms.unsqueeze(0) - 2.0 * gram + norms.unsqueeze(1)).clamp(min=0)
        if squared:
            return distances
        zero = distances.eq(0).float()
        # sqrt has an infinite gradient at 0: nudge zeros, then zero them again
        return (1.0 - zero) * torch.sqrt(distances + zero * 1e-16)

    #: sentence-transformers' historical spelling
    eucledian_distance = euclidean_distance


class BatchHardTripletLoss(EmbeddingLoss):
    """For each anchor: its farthest same-label and nearest other-label example in the batch.

    Input: one text column and an integer class label per row.
    """

    def __init__(
        self,
        model: nn.Module,
        distance_metric: Callable[[Tensor], Tensor] = BatchHardTripletLossDistanceFunction.euclidean_distance,
        margin: float = 5,
    ) -> None:
        super().__init__(model)
        self.triplet_margin = margin
        self.distance_metric = distance_metric

    def check_inputs(self, num_columns: int, labels: Tensor | None) -> None:
        check_columns(self, num_columns, "1 (sentence, with an integer class label)", num_columns == 1)
        labels_tensor(labels, self)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        return self.batch_hard_triplet_loss(labels_tensor(labels, self), embeddings[0])

    def batch_hard_triplet_loss(self, labels: Tensor, embeddings: Tensor) -> Tensor:
        labels = check_label_count(self, labels, embeddings.size(0))
        distances = self.distance_metric(embeddings)
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        not_self = ~torch.eye(labels.size(0), dtype=torch.bool, device=labels.device)
        hardest_positive = (distances * (same & not_self).float()).max(1, keepdim=True)[0]
        # push same-label entries beyond the row maximum so min() picks a true negative
        row_max = distances.max(1, keepdim=True)[0]
        hardest_negative = (distances + row_max * same.float()).min(1, keepdim=True)[0]
        return (hardest_positive - hardest_negative + self.triplet_margin).clamp(min=0).mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {"distance_metric": function_name(self.distance_metric), "margin": self.triplet_margin}

    @property
    def citation(self) -> str:
        return _HERMANS


# -- distillation from a teacher ------------------------------------------------------------------


class MSELoss(EmbeddingLoss):
    """Mean squared error between the student's embeddings and pre-computed teacher embeddings.

    Labels: (batch, teacher_dim) compared with every text column (e.g. a source sentence and its
    translations), or (batch, columns, teacher_dim) with one teacher vector per column. With
    ``projection_dim`` a trainable linear map sends student vectors to the teacher's width.
    """

    def __init__(self, model: nn.Module, projection_dim: int | None = None) -> None:
        super().__init__(model)
        self.projection_dim = projection_dim
        self.projection: nn.Linear | None = None
        if projection_dim is not None:
            width = model.get_sentence_embedding_dimension()
            self.projection = nn.Linear(width, projection_dim, device=model.device)

    def check_inputs(self, num_columns: int, labels: Tensor | None) -> None:
        check_columns(self, num_columns, "1 or more", num_columns >= 1)
        labels = labels_tensor(labels, self)
        if labels.dim() not in (2, 3):
            raise InputError(
                f"MSELoss needs teacher embeddings as labels, shaped (batch, dim) or (batch, columns, dim); "
                f"got {labels.dim()} dimension(s)"
            )
        if labels.dim() == 3 and labels.size(1) != num_columns:
            raise InputError(
                f"MSELoss got teacher labels for {labels.size(1)} columns but {num_columns} text columns; "
                f"give (batch, {num_columns}, dim) labels, or (batch, dim) labels shared by every column"
            )

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        labels = labels_tensor(labels, self).detach()
        teachers = [labels] * len(embeddings) if labels.dim() == 2 else list(labels.unbind(1))
        if self.projection is not None:
            embeddings = [self.projection(student) for student in embeddings]
        return teacher_mse(embeddings, teachers, hint="; set projection_dim to the teacher's width")

    def get_config_dict(self) -> dict[str, Any]:
        return {"projection_dim": self.projection_dim}

    @property
    def citation(self) -> str:
        return (
            '@inproceedings{reimers-2020-multilingual-sentence-bert,\n    title = "Making Monolingual Sentence '
            'Embeddings Multilingual using Knowledge Distillation",\n    author = "Reimers, Nils and Gurevych, '
            'Iryna",\n    year = "2020",\n    url = "https://arxiv.org/abs/2004.09813",\n}\n'
        )


class MarginMSELoss(EmbeddingLoss):
    """MSE between the student's margins sim(q, pos) - sim(q, neg_i) and the teacher's.

    Labels: (batch, negatives) margins, or (batch, 1 + negatives) raw teacher scores
    (positive first), or (batch,) with a single negative.
    """

    def __init__(self, model: nn.Module, similarity_fct: Similarity = pairwise_dot_score) -> None:
        super().__init__(model)
        self.similarity_fct = similarity_fct

    def check_inputs(self, num_columns: int, labels: Tensor | None) -> None:
        check_columns(self, num_columns, "3 or more (query, positive, negative_1, ...)", num_columns >= 3)
        labels_tensor(labels, self)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        return margin_mse(embeddings[0], embeddings[1:], labels_tensor(labels, self), self.similarity_fct)

    def get_config_dict(self) -> dict[str, Any]:
        return {"similarity_fct": function_name(self.similarity_fct)}

    @property
    def citation(self) -> str:
        return (
            "@misc{hofstätter2021improving,\n    title={Improving Efficient Neural Ranking Models with "
            "Cross-Architecture Knowledge Distillation},\n    author={Sebastian Hofstätter and Sophia Althammer "
            "and Michael Schröder and Mete Sertkan and Allan Hanbury},\n    year={2021}, eprint={2010.02666}, "
            "archivePrefix={arXiv}, primaryClass={cs.IR}\n}\n"
        )
