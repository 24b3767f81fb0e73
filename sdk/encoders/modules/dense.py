"""A feed-forward projection of the sentence embedding, and L2 normalisation."""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import torch
from torch import nn

from sdk.core.errors import ModelLoadError
from sdk.encoders.modules.base import EncoderModule

__all__ = ["Dense", "Normalize"]

_SAFE_ACTIVATIONS = ("torch.nn.modules.", "torch.nn.")


def _activation_from_path(path: str | None) -> nn.Module:
    """Instantiate a torch.nn activation by class path; anything outside torch.nn is refused."""
    if not path:
        return nn.Identity()
    if not path.startswith(_SAFE_ACTIVATIONS):
        raise ModelLoadError(
            f"activation function {path!r} is not a torch.nn class; only torch.nn activations are loaded"
        )
    module_name, _, cls_name = path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ModelLoadError(f"activation function {path!r} is not a torch.nn.Module class")
    return cls()


def _activation_path(module: nn.Module) -> str:
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


class Dense(EncoderModule):
    """``activation(linear(sentence_embedding))``, as sentence-transformers' Dense."""

    st_type: ClassVar[str] = "sentence_transformers.models.Dense"
    has_weights: ClassVar[bool] = True

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation_function: nn.Module | str | None = "torch.nn.modules.activation.Tanh",
    ) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.bias = bias
        self.linear = nn.Linear(self.in_features, self.out_features, bias=bias)
        if isinstance(activation_function, nn.Module):
            self.activation_function = activation_function
        else:
            self.activation_function = _activation_from_path(activation_function)

    @classmethod
    def config_from_json(cls, config: dict[str, Any]) -> dict[str, Any]:
        keep = ("in_features", "out_features", "bias", "activation_function")
        return {k: v for k, v in config.items() if k in keep}

    def get_config(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias,
            "activation_function": _activation_path(self.activation_function),
        }

    def get_sentence_embedding_dimension(self) -> int:
        return self.out_features

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        features["sentence_embedding"] = self.activation_function(self.linear(features["sentence_embedding"]))
        return features


class Normalize(EncoderModule):
    """Scales sentence embeddings to unit L2 norm, so dot product equals cosine."""

    st_type: ClassVar[str] = "sentence_transformers.models.Normalize"

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        features["sentence_embedding"] = nn.functional.normalize(features["sentence_embedding"], p=2, dim=1)
        return features

    def save(self, path: Any) -> None:
        """Normalize has no state; an empty folder keeps the manifest's path valid."""
        from pathlib import Path

        Path(path).mkdir(parents=True, exist_ok=True)
