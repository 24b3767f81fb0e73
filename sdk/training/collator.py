"""Turn a list of dataset rows into the batch a loss reads.

Dense and sparse losses get ``features``: one tokenized dict per text column (with the column's
prompt prepended and, for a Router model, the column's route under ``"task"``). Cross-encoder
losses get ``texts``: the raw columns, since they form (query, passage) pairs themselves. The
label column, when there is one, becomes the tensor ``label``.

Tokenizing here rather than in the loss lets ``dataloader_num_workers`` overlap it with the
forward/backward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from sdk.core.errors import InputError

__all__ = ["LABEL_COLUMNS", "TrainingCollator", "label_column", "text_columns"]

#: column names read as the label (first match wins), as in sentence-transformers
LABEL_COLUMNS: tuple[str, ...] = ("label", "labels", "score", "scores")
_RESERVED = ("dataset_name", "return_loss")


def label_column(columns: Sequence[str]) -> str | None:
    for name in LABEL_COLUMNS:
        if name in columns:
            return name
    return None


def text_columns(columns: Sequence[str]) -> list[str]:
    """The input columns, in dataset order (the order losses read them in)."""
    return [c for c in columns if c not in LABEL_COLUMNS and c not in _RESERVED]


def _per_dataset(setting: Any, dataset_name: str | None) -> Any:
    """``{dataset: {column: value}}`` settings pick the batch's dataset; flat ones apply to all."""
    if isinstance(setting, dict) and setting and all(isinstance(v, dict) for v in setting.values()):
        return setting.get(dataset_name or "", {})
    return setting


@dataclass
class TrainingCollator:
    """Collates rows for one of the three kinds of encoder (``mode``: "embed" or "pairs").

    ``tokenize(texts, column, route)`` returns a feature dict for one column; ``prompt_length``
    gives the token count of a prompt (pooling that excludes the prompt needs it).
    """

    mode: str
    tokenize: Callable[[list[str], str | None], dict[str, torch.Tensor]] | None = None
    prompt_length: Callable[[str], int] | None = None
    prompts: Any = None
    router_mapping: Any = None
    default_routes: tuple[str, str] | None = None
    _checked: set[tuple[str, ...]] = field(default_factory=set, repr=False)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        if not rows:
            raise InputError("an empty batch reached the collator; check the dataset is not empty")
        columns = list(rows[0])
        dataset_name = rows[0].get("dataset_name")
        texts = text_columns(columns)
        if not texts:
            raise InputError(f"the dataset has no text columns (columns: {columns})")
        batch: dict[str, Any] = {}
        if dataset_name is not None:
            batch["dataset_name"] = dataset_name
        label = label_column(columns)
        if label is not None:
            batch["label"] = _labels([row[label] for row in rows], label)
        prompts = _per_dataset(self.prompts, dataset_name)
        if self.mode == "pairs":
            batch["texts"] = [[self._prompted(row[c], c, prompts) for row in rows] for c in texts]
            return batch
        routes = _per_dataset(self.router_mapping, dataset_name) or {}
        features = []
        for position, column in enumerate(texts):
            values = [row[column] for row in rows]
            if not all(isinstance(v, str) for v in values):
                raise InputError(f"column {column!r} must hold strings; found {type(values[0]).__name__}")
            prompt = _prompt_for(prompts, column)
            if prompt:
                values = [prompt + v for v in values]
            route = routes.get(column) if isinstance(routes, dict) else None
            if route is None and self.default_routes is not None:
                route = self.default_routes[0 if position == 0 else 1]
            tokenized = dict(self.tokenize(values, route))  # type: ignore[misc]
            if route is not None:
                tokenized["task"] = route
            if prompt and self.prompt_length is not None:
                tokenized["prompt_length"] = self.prompt_length(prompt)
            features.append(tokenized)
        batch["features"] = features
        return batch

    @staticmethod
    def _prompted(value: Any, column: str, prompts: Any) -> Any:
        prompt = _prompt_for(prompts, column)
        if not prompt:
            return value
        if isinstance(value, list):
            return [prompt + v for v in value]
        return prompt + value


def _prompt_for(prompts: Any, column: str) -> str | None:
    if isinstance(prompts, str):
        return prompts
    if isinstance(prompts, dict):
        return prompts.get(column)
    return None


def _labels(values: list[Any], column: str) -> Any:
    """A tensor of labels; ragged lists (listwise losses) stay a list of tensors."""
    first = values[0]
    if isinstance(first, (list, tuple)) or (hasattr(first, "ndim") and getattr(first, "ndim", 0) >= 1):
        rows = [torch.as_tensor(v, dtype=torch.float32) for v in values]
        if len({r.shape for r in rows}) == 1:
            return torch.stack(rows)
        return rows
    if isinstance(first, bool) or not isinstance(first, (int, float)) and not hasattr(first, "dtype"):
        raise InputError(f"label column {column!r} must hold numbers or lists of numbers, got {first!r}")
    return torch.as_tensor(values)
