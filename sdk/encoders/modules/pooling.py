"""Pooling token embeddings into one sentence embedding.

Every mode is attention-masked and handles left padding (decoder models), and the
prompt can be excluded from the average (``include_prompt=False``) as instruction
models such as INSTRUCTOR expect.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from sdk.core.errors import InputError
from sdk.encoders.modules.base import EncoderModule

__all__ = ["POOLING_MODES", "Pooling"]

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
_LEGACY_KEYS = {
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "mean": "pooling_mode_mean_tokens",
    "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
    "weightedmean": "pooling_mode_weightedmean_tokens",
    "lasttoken": "pooling_mode_lasttoken",
}


class Pooling(EncoderModule):
    """Concatenates the chosen pooling modes, in ``POOLING_MODES`` order."""

    st_type: ClassVar[str] = "sentence_transformers.models.Pooling"

    def __init__(
        self,
        word_embedding_dimension: int,
        pooling_mode: str | tuple[str, ...] | list[str] = "mean",
        include_prompt: bool = True,
    ) -> None:
        super().__init__()
        modes = (pooling_mode,) if isinstance(pooling_mode, str) else tuple(pooling_mode)
        unknown = [m for m in modes if m not in POOLING_MODES]
        if unknown or not modes:
            raise InputError(f"unknown pooling mode(s) {unknown or modes}; use any of {POOLING_MODES}")
        self.modes = tuple(m for m in POOLING_MODES if m in modes)
        self.word_embedding_dimension = int(word_embedding_dimension)
        self.include_prompt = include_prompt

    @classmethod
    def config_from_json(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Read both the legacy boolean layout and the newer ``pooling_mode`` one."""
        dim = config.get("word_embedding_dimension", config.get("embedding_dimension"))
        if "pooling_mode" in config and not isinstance(config["pooling_mode"], bool):
            modes = config["pooling_mode"]
        else:
            modes = tuple(mode for mode, key in _LEGACY_KEYS.items() if config.get(key))
        return {"word_embedding_dimension": dim, "pooling_mode": modes or "mean",
                "include_prompt": config.get("include_prompt", True)}

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"word_embedding_dimension": self.word_embedding_dimension}
        config.update({key: mode in self.modes for mode, key in _LEGACY_KEYS.items()})
        config["include_prompt"] = self.include_prompt
        return config

    def get_sentence_embedding_dimension(self) -> int:
        return len(self.modes) * self.word_embedding_dimension

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        tokens = features["token_embeddings"]
        mask = features.get("attention_mask")
        if mask is None:
            mask = torch.ones(tokens.shape[:-1], dtype=torch.long, device=tokens.device)
        original_mask = mask
        prompt_length = features.get("prompt_length")
        if not self.include_prompt and prompt_length:
            mask = _exclude_prompt(mask, int(prompt_length))
        acc = torch.float32 if tokens.dtype in (torch.float16, torch.bfloat16) else tokens.dtype
        outputs = [self._pool(mode, tokens, mask, original_mask, acc) for mode in self.modes]
        features["sentence_embedding"] = torch.cat(outputs, dim=-1)
        return features

    @staticmethod
    def _pool(
        mode: str, tokens: torch.Tensor, mask: torch.Tensor, original_mask: torch.Tensor, acc: torch.dtype
    ) -> torch.Tensor:
        if mode == "cls":
            first = mask.to(torch.int).argmax(dim=1)
            return tokens[torch.arange(tokens.shape[0], device=tokens.device), first]
        if mode == "max":
            return tokens.masked_fill(mask.unsqueeze(-1) == 0, float("-inf")).max(dim=1).values
        if mode in ("mean", "mean_sqrt_len_tokens"):
            m = mask.unsqueeze(-1).to(tokens.dtype)
            total = (tokens * m).sum(dim=1, dtype=acc)
            count = torch.clamp(m.sum(dim=1, dtype=acc), min=1e-9)
            out = total / (count if mode == "mean" else torch.sqrt(count))
            return out.to(tokens.dtype)
        if mode == "weightedmean":
            m = mask.unsqueeze(-1).to(acc)
            weights = torch.arange(1, tokens.shape[1] + 1, device=tokens.device, dtype=acc).view(1, -1, 1)
            weights = weights - original_mask.to(torch.int32).argmax(dim=1).view(-1, 1, 1)
            wm = m * weights
            total = (tokens * wm).sum(dim=1)
            return (total / torch.clamp(wm.sum(dim=1), min=1e-9)).to(tokens.dtype)
        # lasttoken: the last attended position, whether padding is on the left or the right
        seq_len = mask.shape[1]
        values, idx = mask.flip(1).max(1)
        idx = torch.where(values == 0, torch.full_like(idx, seq_len - 1), idx)
        last = seq_len - idx - 1
        return tokens[torch.arange(tokens.shape[0], device=tokens.device), last]


def _exclude_prompt(mask: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """Zero the prompt's positions (after any left padding) so pooling ignores them."""
    mask = mask.clone()
    pad = mask.to(torch.int32).argmax(dim=1)
    positions = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
    mask[positions < (pad + prompt_length).unsqueeze(1)] = 0
    return mask
