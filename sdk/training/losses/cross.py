"""Cross-encoder (reranker) losses over (query, document) pairs: pointwise, classes, ranking, distillation.

Each loss gets the raw text columns of a batch (``inputs[i]`` is the i-th column) and scores
(query, document) pairs with ``EncoderLoss.score_pairs``, one model call per column the way
sentence-transformers does, so losses and gradients match it to float precision.
The list-wise losses (ListNet, LambdaLoss) live in ``cross_listwise``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sdk.core.errors import InputError
from sdk.training.losses.base import EncoderLoss, check_columns, labels_tensor
from sdk.training.losses.functional import qualified_name, teacher_margins

__all__ = [
    "BinaryCrossEntropyLoss",
    "CrossEntropyLoss",
    "MarginMSELoss",
    "MultipleNegativesRankingLoss",
]

# Shared default activations (stateless), so signatures read like sentence-transformers' own.
IDENTITY = nn.Identity()
SIGMOID = nn.Sigmoid()


def check_cross_encoder(loss: nn.Module, model: nn.Module, labels: str) -> None:
    """Refuse models that are not cross-encoders, or whose head has the wrong number of outputs.

    ``labels`` is ``"one"`` (a relevance score) or ``"many"`` (class logits).
    """
    num_labels = getattr(model, "num_labels", None)
    name = type(loss).__name__
    if not isinstance(num_labels, int) or not hasattr(model, "transformer"):
        raise InputError(
            f"{name} trains a CrossEncoder (sdk.encoders.CrossEncoder), got {type(model).__name__}; "
            "load the model with CrossEncoder(...)"
        )
    if labels == "one" and num_labels != 1:
        raise InputError(
            f"{name} needs a model with 1 output label (a relevance score), but this one has {num_labels}; "
            "load it with CrossEncoder(path, num_labels=1)"
        )
    if labels == "many" and num_labels < 2:
        raise InputError(
            f"{name} needs a model with one output per class (num_labels > 1), but this one has {num_labels}; "
            "load it with CrossEncoder(path, num_labels=<number of classes>), or use BinaryCrossEntropyLoss"
        )


def check_column_lengths(loss: nn.Module, inputs: Sequence[Sequence[Any]]) -> int:
    """The batch size; every column must have one entry per row (zip would drop rows silently)."""
    lengths = [len(column) for column in inputs]
    if len(set(lengths)) > 1:
        raise InputError(
            f"{type(loss).__name__}: the text columns have different lengths {lengths}; "
            "every row needs a value in every column"
        )
    if not lengths or lengths[0] == 0:
        raise InputError(f"{type(loss).__name__}: the batch is empty")
    return lengths[0]


def column_logits(loss: EncoderLoss, queries: Sequence[str], documents: Sequence[str]) -> Tensor:
    """Logits of row-aligned (query, document) pairs: shape (rows, num_labels)."""
    return loss.score_pairs(list(zip(queries, documents, strict=True)))


class BinaryCrossEntropyLoss(EncoderLoss):
    """Pointwise relevance: BCE-with-logits between the score of (query, passage) and a 0/1 or [0, 1] label.

    Inputs: (query, passage) columns plus a label column; the model has ``num_labels == 1``.
    ``activation_fn`` is applied to the logits first; ``pos_weight`` (a tensor or number)
    up-weights positives; further keyword arguments go to ``torch.nn.BCEWithLogitsLoss``.
    """

    def __init__(
        self,
        model: nn.Module,
        activation_fn: nn.Module = IDENTITY,
        pos_weight: Tensor | float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model)
        check_cross_encoder(self, model, "one")
        if pos_weight is not None and not isinstance(pos_weight, Tensor):
            if isinstance(pos_weight, bool) or not isinstance(pos_weight, (int, float)):
                raise InputError(f"pos_weight must be a tensor or a number, e.g. torch.tensor(4.0), got {pos_weight!r}")
            pos_weight = torch.tensor(float(pos_weight))
        self.activation_fn = activation_fn
        self.pos_weight = pos_weight
        # a submodule, so the loss's .to(device) moves pos_weight along with it
        self.bce = nn.BCEWithLogitsLoss(pos_weight=pos_weight, **kwargs)

    def forward(self, inputs: list[list[str]], labels: Tensor | None) -> Tensor:
        check_columns(self, len(inputs), "2 (query, passage)", len(inputs) == 2)
        labels = labels_tensor(labels, self)
        rows = check_column_lengths(self, inputs)
        if labels.numel() != rows:
            raise InputError(
                f"BinaryCrossEntropyLoss expects one label per row ({rows}), got {labels.numel()} "
                f"with shape {tuple(labels.shape)}"
            )
        logits = self.activation_fn(column_logits(self, inputs[0], inputs[1]).view(-1))
        if self.bce.pos_weight is not None and self.bce.pos_weight.device != logits.device:
            self.bce.to(logits.device)
        return self.bce(logits, labels.view(-1).to(logits.device).float())

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "activation_fn": qualified_name(self.activation_fn),
            "pos_weight": None if self.pos_weight is None else self.pos_weight.tolist(),
        }


class CrossEntropyLoss(EncoderLoss):
    """Classification of pairs (e.g. NLI): cross-entropy between the class logits and the label.

    Inputs: (text_a, text_b) columns plus a class-index label (or a (rows, num_labels) matrix
    of class probabilities); the model has ``num_labels > 1``. Extra keyword arguments go to
    ``torch.nn.CrossEntropyLoss`` (e.g. ``weight``, ``label_smoothing``).
    """

    def __init__(self, model: nn.Module, activation_fn: nn.Module = IDENTITY, **kwargs: Any) -> None:
        super().__init__(model)
        check_cross_encoder(self, model, "many")
        self.activation_fn = activation_fn
        self.ce = nn.CrossEntropyLoss(**kwargs)

    def _targets(self, labels: Tensor, rows: int, num_labels: int) -> Tensor:
        """Class indices (rows,) or probabilities (rows, num_labels), checked against the model's classes."""
        if labels.is_floating_point() and tuple(labels.shape) == (rows, num_labels):
            return labels
        if labels.numel() != rows:
            raise InputError(
                f"CrossEntropyLoss expects one class index per row ({rows}) or a ({rows}, {num_labels}) "
                f"matrix of class probabilities, got labels of shape {tuple(labels.shape)}"
            )
        labels = labels.reshape(-1)
        if labels.is_floating_point():
            if not torch.equal(labels, labels.round()):
                raise InputError("CrossEntropyLoss labels are class indices; got fractional values")
            labels = labels.long()
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_labels):
            ignore = self.ce.ignore_index
            bad = labels[(labels != ignore) & ((labels < 0) | (labels >= num_labels))]
            if bad.numel():
                raise InputError(
                    f"CrossEntropyLoss label {int(bad[0])} is outside the model's classes 0..{num_labels - 1}; "
                    "load the model with num_labels equal to the number of classes"
                )
        return labels

    def forward(self, inputs: list[list[str]], labels: Tensor | None) -> Tensor:
        check_columns(self, len(inputs), "2 (text_a, text_b)", len(inputs) == 2)
        labels = labels_tensor(labels, self)
        rows = check_column_lengths(self, inputs)
        targets = self._targets(labels, rows, self.model.num_labels)
        logits = self.activation_fn(column_logits(self, inputs[0], inputs[1]))
        return self.ce(logits, targets.to(logits.device))

    def get_config_dict(self) -> dict[str, Any]:
        return {"activation_fn": qualified_name(self.activation_fn)}


class MultipleNegativesRankingLoss(EncoderLoss):
    """In-batch ranking (InfoNCE) for rerankers: each query must score its positive above sampled others.

    Inputs: (query, positive[, negative_1, ...]) columns, no labels; ``num_labels == 1``.
    Besides the given hard negatives, each query is scored against ``num_negatives`` documents
    drawn uniformly without replacement from the other rows' documents (all of them when
    ``num_negatives`` is None or at least that many; none when 0). Scores are passed through
    ``activation_fn`` (sigmoid by default), multiplied by ``scale`` and fed to a softmax
    cross-entropy whose target is the positive.
    """

    def __init__(
        self,
        model: nn.Module,
        num_negatives: int | None = 4,
        scale: float = 10.0,
        activation_fn: nn.Module | None = SIGMOID,
    ) -> None:
        super().__init__(model)
        check_cross_encoder(self, model, "one")
        if num_negatives is not None and (
            isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 0
        ):
            raise InputError(f"num_negatives must be a non-negative integer or None (all), got {num_negatives!r}")
        self.num_negatives = num_negatives
        self.scale = scale
        self.activation_fn = activation_fn

    def sample_in_batch_negatives(self, rows: int, candidates: Sequence[Sequence[str]]) -> list[list[str]]:
        """Extra document columns for the queries, drawn from the other rows' candidates.

        ``candidates`` are the positive and hard-negative columns. They are pooled column by
        column (entry ``c * rows + r`` is column c of row r); a query never draws its own
        row. The draw is ``torch.multinomial`` on torch's global CPU generator, so seeding
        torch reproduces it (and reproduces sentence-transformers' draw).
        """
        n_columns = len(candidates)
        pool = [text for column in candidates for text in column]
        allowed = ~torch.eye(rows, dtype=torch.bool).repeat(1, n_columns)
        available = len(pool) - n_columns  # per query: everything outside its own row
        if self.num_negatives == 0 or available <= 0:
            return []
        if self.num_negatives is not None and self.num_negatives < available:
            picks = torch.multinomial(allowed.float(), self.num_negatives)
        else:
            picks = torch.arange(len(pool)).repeat(rows, 1)[allowed].view(rows, -1)
        return [[pool[i] for i in column] for column in picks.T.tolist()]

    def forward(self, inputs: list[list[str]], labels: Tensor | None = None) -> Tensor:
        check_columns(self, len(inputs), "at least 2 (query, positive[, negatives...])", len(inputs) >= 2)
        rows = check_column_lengths(self, inputs)
        queries = inputs[0]
        # same order as sentence-transformers (positives, draw, then negatives): in train mode on
        # CPU, dropout shares the generator with the draw
        scores = [column_logits(self, queries, inputs[1]).view(-1)]
        for column in self.sample_in_batch_negatives(rows, inputs[1:]):
            scores.append(column_logits(self, queries, column).view(-1))
        for column in inputs[2:]:
            scores.append(column_logits(self, queries, column).view(-1))
        logits = torch.stack(scores, dim=1)  # (rows, 1 + sampled + hard negatives); the positive first
        if self.activation_fn is not None:
            logits = self.activation_fn(logits)
        if self.scale:
            logits = logits * self.scale
        target = torch.zeros(rows, dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits, target)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "num_negatives": self.num_negatives,
            "activation_fn": qualified_name(self.activation_fn),
        }


class MarginMSELoss(EncoderLoss):
    """Distillation: MSE between the student's margins score(q, pos) - score(q, neg_i) and the teacher's.

    Inputs: (query, positive, negative_1, ..., negative_n) columns; labels per row are either the
    n teacher margins (a single number when n == 1) or the n + 1 teacher scores [pos, neg_1, ...],
    from which the margins are taken. ``num_labels == 1``; extra keyword arguments go to
    ``torch.nn.MSELoss``.
    """

    def __init__(self, model: nn.Module, activation_fn: nn.Module = IDENTITY, **kwargs: Any) -> None:
        super().__init__(model)
        check_cross_encoder(self, model, "one")
        self.activation_fn = activation_fn
        self.mse = nn.MSELoss(**kwargs)

    @staticmethod
    def _margins(labels: Tensor | Sequence[Any], rows: int, n_negatives: int) -> Tensor:
        """Teacher margins of shape (rows, n_negatives) from any accepted label layout."""
        if not isinstance(labels, Tensor):  # a list column: one tensor (or list) per row
            labels = torch.stack([torch.as_tensor(row) for row in labels])
        return teacher_margins(labels, rows, n_negatives, "MarginMSELoss")

    def forward(self, inputs: list[list[str]], labels: Tensor | Sequence[Tensor] | None) -> Tensor:
        check_columns(self, len(inputs), "at least 3 (query, positive, negative[, ...])", len(inputs) >= 3)
        rows = check_column_lengths(self, inputs)
        labels = labels_tensor(labels, self)  # type: ignore[arg-type]
        negatives = inputs[2:]
        margins = self._margins(labels, rows, len(negatives))
        positive = self.activation_fn(column_logits(self, inputs[0], inputs[1]).view(-1))
        negative = torch.stack(
            [self.activation_fn(column_logits(self, inputs[0], column).view(-1)) for column in negatives], dim=1
        )
        predicted = positive.unsqueeze(1) - negative
        return self.mse(predicted, margins.detach().to(predicted.device).float())

    def get_config_dict(self) -> dict[str, Any]:
        return {"activation_fn": qualified_name(self.activation_fn)}

    @property
    def citation(self) -> str:
        return """
@misc{hofstatter2021improving,
    title={Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge Distillation},
    author={Sebastian Hofst{\\"a}tter and Sophia Althammer and Michael Schr{\\"o}der and Mete Sertkan and Allan Hanbury},
    year={2021},
    eprint={2010.02666},
    archivePrefix={arXiv},
    primaryClass={cs.IR}
}
"""


_LISTWISE = ("LambdaLoss", "ListNetLoss", "BaseWeightingScheme", "NoWeightingScheme", "NDCGLoss1Scheme",
             "NDCGLoss2Scheme", "LambdaRankScheme", "NDCGLoss2PPScheme")


def __getattr__(name: str) -> Any:
    """Every cross-encoder loss from one namespace: the list-wise ones live in ``cross_listwise``
    (which imports this module's helpers, so they are looked up lazily)."""
    if name in _LISTWISE:
        from sdk.training.losses import cross_listwise

        return getattr(cross_listwise, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
