"""The contract every encoder module follows, so a model is just an ordered list of them.

Modules read and write a ``features`` dict (``input_ids``, ``attention_mask``,
``token_embeddings``, ``sentence_embedding``...) exactly like sentence-transformers
modules do; that shared vocabulary is what makes folders interchangeable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from sdk.encoders.weights import load_state_dict, save_state_dict

__all__ = ["EncoderModule"]


class EncoderModule(nn.Module):
    """A torch module with a JSON config and optional weights in its own sub-folder."""

    #: Class path written to ``modules.json``: the sentence-transformers name, so its loader finds it.
    st_type: ClassVar[str] = ""
    #: File holding the constructor arguments inside the module folder.
    config_file: ClassVar[str] = "config.json"
    #: Whether ``save`` writes a ``model.safetensors`` with the module's parameters.
    has_weights: ClassVar[bool] = False

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this module (written to ``config_file``)."""
        return {}

    def save(self, path: str | Path) -> None:
        """Write config (and weights, if any) into ``path``."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / self.config_file, "w", encoding="utf8") as fh:
            json.dump(self.get_config(), fh, indent=2)
        if self.has_weights:
            save_state_dict(self.state_dict(), folder)

    @classmethod
    def load(cls, path: str | Path, *, allow_pickle: bool = False, **_: Any) -> EncoderModule:
        """Rebuild from a folder written by ``save`` (or by sentence-transformers)."""
        folder = Path(path)
        config_path = folder / cls.config_file
        config = json.loads(config_path.read_text(encoding="utf8")) if config_path.exists() else {}
        module = cls(**cls.config_from_json(config))
        if cls.has_weights:
            module.load_state_dict(load_state_dict(folder, allow_pickle=allow_pickle))
        return module

    @classmethod
    def config_from_json(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Hook for older or foreign config layouts; the default passes the dict through."""
        return config

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError
