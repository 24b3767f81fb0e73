"""Tokenizing straight through the Rust ``tokenizers`` library, padding per batch in numpy.

Why: a transformers tokenizer call spends most of its time in Python, turning every
token of every text (padded to the longest in the call) into Python ints and back into
a tensor. On debpkg + pyfaq text that is ~75% of the call on 2 cores, it holds the GIL
while the model wants to launch kernels, and it does not get faster with more cores.
Here the Rust tokenizer encodes a window of texts unpadded (in parallel, without the GIL),
and each batch is padded once, to its own longest row, by one vectorised numpy
assignment straight into (pinned, on CUDA) tensor memory.

The output is the same as ``tokenizer(texts, padding=True, truncation="longest_first",
max_length=m, return_tensors="pt")`` restricted to the rows of a batch: same ids, special
tokens, truncation side, padding side, pad ids and token types (checked against the
transformers call in the tests). Tokenizers this cannot mirror (slow Python tokenizers,
no pad token) get ``None`` and the caller uses the transformers call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import torch

__all__ = ["FastTokenizer", "RaggedTokens"]


@dataclass(frozen=True)
class RaggedTokens:
    """Unpadded token ids of a window of texts; ``take`` pads the rows of one batch."""

    ids: list[list[int]]
    #: per-text token types, or None where they are all ``pad_type_id`` (single texts on BERT-like models)
    type_ids: list[list[int]] | None
    lengths: np.ndarray
    pad_id: int
    pad_type_id: int
    left: bool
    with_type_ids: bool

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows: np.ndarray, pin: bool = False) -> dict[str, torch.Tensor]:
        """``input_ids``, ``attention_mask`` (and ``token_type_ids``) of ``rows``, padded to their longest."""
        if len(rows) == 1 and self.lengths[rows[0]] > 0:
            return self._take_one(int(rows[0]), pin)
        lengths = self.lengths[rows]
        width = max(int(lengths.max()), 1) if len(rows) else 1
        positions = np.arange(width)[None, :]
        mask = positions >= (width - lengths)[:, None] if self.left else positions < lengths[:, None]
        total = int(lengths.sum())
        out = {
            "input_ids": self._fill(self.ids, rows, mask, total, self.pad_id, pin),
            "attention_mask": _pinned(torch.from_numpy(mask.astype(np.int64)), pin),
        }
        if self.with_type_ids:
            if self.type_ids is None:
                out["token_type_ids"] = _pinned(torch.full(mask.shape, self.pad_type_id, dtype=torch.int64), pin)
            else:
                out["token_type_ids"] = self._fill(self.type_ids, rows, mask, total, self.pad_type_id, pin)
        return out

    def _take_one(self, row: int, pin: bool) -> dict[str, torch.Tensor]:
        """``take`` of one non-empty row (a search query): nothing to pad, so no mask to build."""
        ids = torch.tensor([self.ids[row]], dtype=torch.int64)
        out = {"input_ids": _pinned(ids, pin), "attention_mask": _pinned(torch.ones_like(ids), pin)}
        if self.with_type_ids:
            types = torch.full_like(ids, self.pad_type_id) if self.type_ids is None else \
                torch.tensor([self.type_ids[row]], dtype=torch.int64)
            out["token_type_ids"] = _pinned(types, pin)
        return out

    @staticmethod
    def _fill(
        values: list[list[int]], rows: np.ndarray, mask: np.ndarray, total: int, pad: int, pin: bool
    ) -> torch.Tensor:
        tensor = torch.full(mask.shape, pad, dtype=torch.int64, pin_memory=pin)
        # boolean assignment walks the mask row-major: each row's tokens land in order on its real positions
        tensor.numpy()[mask] = np.fromiter(chain.from_iterable(values[i] for i in rows), np.int64, count=total)
        return tensor


def _pinned(tensor: torch.Tensor, pin: bool) -> torch.Tensor:
    return tensor.pin_memory() if pin else tensor


class FastTokenizer:
    """A private copy of a transformers fast tokenizer's Rust backend, set up like its ``__call__``.

    A copy, because transformers re-configures its shared backend on every call (padding,
    truncation), which would race with a background thread; this one is configured once per
    ``max_length`` and only read afterwards.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._source = tokenizer
        self._backends: dict[int, Any] = {}
        self.pad_id = int(tokenizer.pad_token_id)
        self.pad_type_id = int(getattr(tokenizer, "pad_token_type_id", 0) or 0)
        self.left = getattr(tokenizer, "padding_side", "right") == "left"
        self.with_type_ids = "token_type_ids" in (getattr(tokenizer, "model_input_names", None) or ())
        self._single_types_constant: bool | None = None

    @staticmethod
    def settings_of(tokenizer: Any) -> tuple[Any, ...]:
        """What a FastTokenizer copies from ``tokenizer``: a cached one is stale when this changes."""
        return (
            id(tokenizer), getattr(tokenizer, "padding_side", None), getattr(tokenizer, "truncation_side", None),
            getattr(tokenizer, "split_special_tokens", None), getattr(tokenizer, "pad_token_id", None),
        )

    @classmethod
    def wrap(cls, tokenizer: Any) -> FastTokenizer | None:
        """A FastTokenizer mirroring ``tokenizer``, or None when only its own call is exact."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None or getattr(tokenizer, "pad_token_id", None) is None:
            return None
        if not callable(getattr(backend, "to_str", None)):
            return None
        if "input_ids" not in (getattr(tokenizer, "model_input_names", None) or ("input_ids",)):
            return None
        return cls(tokenizer)

    def _backend(self, max_length: int) -> Any:
        backend = self._backends.get(max_length)
        if backend is None:
            from tokenizers import Tokenizer

            source = self._source
            backend = Tokenizer.from_str(source.backend_tokenizer.to_str())
            backend.no_padding()
            backend.enable_truncation(
                max_length=max_length, stride=0, strategy="longest_first",
                direction=getattr(source, "truncation_side", "right"),
            )
            backend.encode_special_tokens = bool(getattr(source, "split_special_tokens", False))
            self._backends[max_length] = backend
        return backend

    def __call__(self, texts: Sequence[str] | Sequence[tuple[str, str]], max_length: int) -> RaggedTokens:
        """Encode ``texts`` (or (a, b) pairs) with special tokens, truncated to ``max_length``."""
        backend = self._backend(max_length)
        batch = list(texts)
        encode = getattr(backend, "encode_batch_fast", None) or backend.encode_batch
        encodings = encode(batch, add_special_tokens=True)
        ids = [e.ids for e in encodings]
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        type_ids = None
        if self.with_type_ids and encodings and not self._types_all_pad(batch, encodings):
            type_ids = [e.type_ids for e in encodings]
        return RaggedTokens(ids, type_ids, lengths, self.pad_id, self.pad_type_id, self.left, self.with_type_ids)

    def _types_all_pad(self, batch: list[Any], encodings: list[Any]) -> bool:
        """Whether every token type equals the pad type, checked cheaply.

        Single texts get their types from the post-processor's template (one type per piece),
        so if one encoding's types are all the pad type, every single-text encoding's are.
        Pairs are never assumed.
        """
        if isinstance(batch[0], tuple):
            return False
        if self._single_types_constant is None:
            self._single_types_constant = all(t == self.pad_type_id for t in encodings[0].type_ids)
        return self._single_types_constant
