"""What every training loss shares: the model it trains, how it runs a batch, its saved config.

Dense and sparse losses receive one tokenized feature dict per text column (already on the
model's device, built by ``sdk.training.collator``) and call ``self.run(features)``; cross-encoder
losses receive the raw text columns and score (query, passage) pairs with ``self.score_pairs``.

``run`` goes through ``self.runner`` when the trainer set one (a DistributedDataParallel or
compiled wrapper of the same model), so gradient synchronisation hooks fire, while attributes
(tokenizer, device, similarity) are always read from the unwrapped ``self.model``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from sdk.core.errors import InputError

__all__ = ["EncoderLoss", "check_columns", "embed", "labels_tensor", "to_device"]


class EncoderLoss(nn.Module):
    """Base class of every loss: holds the model, runs batches through it, describes itself."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        #: a wrapper of ``model`` (DDP, torch.compile) set by the trainer; None: call ``model``
        self.runner: nn.Module | None = None

    # -- running the model -------------------------------------------------------------------

    def run(self, features: dict[str, Any]) -> dict[str, Any]:
        """One forward pass of the encoder stack over a feature dict (a copy: modules add keys)."""
        target = self.runner if self.runner is not None else self.model
        return target(dict(features))

    def embed(self, features: dict[str, Any]) -> Tensor:
        """Sentence embeddings (dense, or SPLADE's vocabulary-sized vectors) of one column."""
        return self.run(features)["sentence_embedding"]

    def tokenize_pairs(self, pairs: Sequence[tuple[str, str]]) -> dict[str, Tensor]:
        """Tokenize (query, passage) pairs for a cross-encoder, on the model's device."""
        features = self.model.transformer.tokenize(list(pairs))
        device = self.model.device
        return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in features.items()}

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> Tensor:
        """Raw logits of a cross-encoder for (query, passage) pairs: shape (len(pairs), num_labels)."""
        return self.run(self.tokenize_pairs(pairs))["scores"]

    # -- describing the loss (model cards, logs) ---------------------------------------------

    def get_config_dict(self) -> dict[str, Any]:
        """The loss's parameters as plain values, for the model card."""
        return {}

    @property
    def citation(self) -> str | None:
        return None

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_config_dict().items())
        return f"{type(self).__name__}({params})"


def embed(model: nn.Module, features: dict[str, Any]) -> Tensor:
    """Sentence embeddings of one feature dict through ``model`` (no loss object needed)."""
    return model(dict(features))["sentence_embedding"]


def check_columns(loss: nn.Module, got: int, want: str, ok: bool) -> None:
    """Raise a clear error when a dataset has the wrong number of text columns for ``loss``."""
    if not ok:
        raise InputError(
            f"{type(loss).__name__} expects {want} text columns, but the batch has {got}; "
            "select the right columns with dataset.select_columns([...]) (the label column, if any, "
            "is named 'label' or 'score')"
        )


def labels_tensor(labels: Tensor | None, loss: nn.Module) -> Tensor:
    """The label column, or a clear error when a loss that needs one got none."""
    if labels is None:
        raise InputError(
            f"{type(loss).__name__} needs a label column ('label' or 'score') in the dataset"
        )
    return labels


def to_device(tensor: Any, device: torch.device) -> Any:
    return tensor.to(device) if isinstance(tensor, Tensor) else tensor
