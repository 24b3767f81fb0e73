"""MatryoshkaLoss: train any dense loss at several embedding widths at once.

The embeddings are computed once per batch; for each width the inner loss runs on the first
``dim`` coordinates, re-normalised, and the weighted losses are summed. Two ways in, neither of
which changes the inner loss permanently:

* ordinary losses call ``self.embed`` once per column: for the duration of ``forward`` the inner
  loss's ``embed`` is shadowed by an instance attribute that embeds on the first width and serves
  truncated views of those embeddings for the others;
* GradCache losses (``uses_gradient_cache``) embed again inside ``loss.backward()``, after
  ``forward`` returned, so they get a truncating ``loss_fn`` passed to ``cached_forward`` instead:
  the cached gradients are taken through the truncation, so the replay needs no change.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sdk.core.errors import InputError
from sdk.training.losses.base import EncoderLoss

__all__ = ["MatryoshkaLoss", "shrink"]

logger = logging.getLogger(__name__)


def shrink(embeddings: Tensor, dim: int) -> Tensor:
    """The first ``dim`` coordinates, L2-normalised (what a truncated Matryoshka model serves)."""
    if dim > embeddings.shape[-1]:
        raise InputError(
            f"matryoshka dimension {dim} exceeds the embedding width {embeddings.shape[-1]}; "
            "use dimensions no larger than the model's"
        )
    return F.normalize(embeddings[..., :dim], p=2, dim=-1)


class _TruncatingEmbed:
    """Stands in for ``inner.embed``: the n-th call of every width pass serves the n-th column's
    embeddings (computed once, on the first pass) truncated to the current width."""

    def __init__(self, embed: Any) -> None:
        self.embed = embed
        self.cache: list[Tensor] = []
        self.dim = 0
        self.calls = 0

    def start(self, dim: int) -> None:
        self.dim = dim
        self.calls = 0

    def __call__(self, features: dict[str, Any]) -> Tensor:
        if self.calls == len(self.cache):
            self.cache.append(self.embed(features))
        full = self.cache[self.calls]
        self.calls += 1
        return shrink(full, self.dim)


@contextmanager
def _shadow_embed(loss: nn.Module, embed: _TruncatingEmbed) -> Iterator[None]:
    loss.__dict__["embed"] = embed  # instance attribute shadows the method
    try:
        yield
    finally:
        del loss.__dict__["embed"]


class MatryoshkaLoss(EncoderLoss):
    """Wraps a dense loss so the leading ``matryoshka_dims`` coordinates are trained as embeddings
    of their own (weights ``matryoshka_weights``; ``n_dims_per_step`` > 0 samples that many
    widths per step)."""

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        matryoshka_dims: Sequence[int],
        matryoshka_weights: Sequence[float] | None = None,
        n_dims_per_step: int = -1,
    ) -> None:
        super().__init__(model)
        self.loss = loss
        if not matryoshka_dims:
            raise InputError("MatryoshkaLoss needs at least one dimension in matryoshka_dims, e.g. [768, 256, 64]")
        if any(dim <= 0 for dim in matryoshka_dims):
            raise InputError(f"MatryoshkaLoss dimensions must be > 0, got {list(matryoshka_dims)}")
        if matryoshka_weights is None:
            matryoshka_weights = [1] * len(matryoshka_dims)
        elif len(matryoshka_weights) != len(matryoshka_dims):
            raise InputError(
                f"MatryoshkaLoss got {len(matryoshka_weights)} weights for {len(matryoshka_dims)} dimensions; "
                "give one weight per dimension (or none for all 1)"
            )
        full = self._model_dim()
        if full is not None:
            if any(dim > full for dim in matryoshka_dims):
                raise InputError(
                    f"matryoshka_dims {list(matryoshka_dims)} exceed the model's embedding dimension {full}"
                )
            if full not in matryoshka_dims:
                logger.warning(
                    "matryoshka_dims %s leave out the model's full dimension %d, which will then not be "
                    "trained; include it", list(matryoshka_dims), full
                )
        pairs = sorted(zip(matryoshka_dims, matryoshka_weights, strict=True), key=lambda p: p[0], reverse=True)
        self.matryoshka_dims = tuple(dim for dim, _ in pairs)
        self.matryoshka_weights = tuple(weight for _, weight in pairs)
        self.n_dims_per_step = n_dims_per_step

    def _model_dim(self) -> int | None:
        getter = getattr(self.model, "get_sentence_embedding_dimension", None)
        return int(getter()) if getter is not None else None

    def _step_dims(self) -> list[int]:
        """Indices of the widths trained this step, largest first."""
        indices = list(range(len(self.matryoshka_dims)))
        if 0 < self.n_dims_per_step < len(indices):
            indices = sorted(random.sample(indices, self.n_dims_per_step))
        return indices

    def forward(self, features: Sequence[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        if self.runner is not None and self.loss.runner is not self.runner:
            # the inner loss embeds, so it must call the trainer's wrapper too (not as a submodule)
            object.__setattr__(self.loss, "runner", self.runner)
        if getattr(self.loss, "uses_gradient_cache", False):
            return self.loss.cached_forward(features, labels, loss_fn=self._cached_loss)
        features = list(features)
        full = self._model_dim()
        truncating = _TruncatingEmbed(self.loss.embed)
        total: Tensor | float = 0.0
        with _shadow_embed(self.loss, truncating):
            for index in self._step_dims():
                dim, weight = self.matryoshka_dims[index], self.matryoshka_weights[index]
                truncating.start(dim)
                dim_labels = labels
                # teacher embeddings as labels (MSELoss) are truncated alongside the student's
                if isinstance(labels, Tensor) and labels.dim() in (2, 3) and labels.size(-1) == full:
                    dim_labels = labels[..., :dim]
                total = total + weight * self.loss(features, dim_labels)
        return total  # type: ignore[return-value]

    def _cached_loss(self, embeddings: list[Tensor], labels: Tensor | None, with_backward: bool = False) -> Tensor:
        """The inner cached loss at every width, with its gradients carried back through the truncation."""
        total: Tensor | float = 0.0
        for index in self._step_dims():
            dim, weight = self.matryoshka_dims[index], self.matryoshka_weights[index]
            truncated = [shrink(embedding, dim) for embedding in embeddings]
            if not with_backward:
                total = total + weight * self.loss.loss_from_embeddings(truncated, labels, with_backward=False)
                continue
            # the inner loss back-propagates into leaves; we continue from them to the full embeddings
            leaves = [t.detach().requires_grad_() for t in truncated]
            total = total + weight * self.loss.loss_from_embeddings(leaves, labels, with_backward=True)
            used = [(t, leaf.grad) for t, leaf in zip(truncated, leaves, strict=True) if leaf.grad is not None]
            if used:
                torch.autograd.backward([t for t, _ in used], [weight * grad for _, grad in used])
        return total  # type: ignore[return-value]

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "loss": type(self.loss).__name__,
            "matryoshka_dims": self.matryoshka_dims,
            "matryoshka_weights": self.matryoshka_weights,
            "n_dims_per_step": self.n_dims_per_step,
        }

    @property
    def citation(self) -> str:
        return (
            "@misc{kusupati2024matryoshka,\n    title={Matryoshka Representation Learning},\n"
            "    author={Aditya Kusupati and Gantavya Bhatt and Aniket Rege and Matthew Wallingford and Aditya "
            "Sinha and Vivek Ramanujan and William Howard-Snyder and Kaifeng Chen and Sham Kakade and Prateek "
            "Jain and Ali Farhadi},\n    year={2024}, eprint={2205.13147}, archivePrefix={arXiv}, "
            "primaryClass={cs.LG}\n}\n"
        )
