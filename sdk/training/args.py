"""Training arguments: ``transformers.TrainingArguments`` plus what encoder training adds.

Everything a transformers user knows (mixed precision, gradient accumulation, checkpoints,
eval/save strategies, ``torchrun`` / ``accelerate launch`` data parallel) comes from the parent
class unchanged; this subclass only adds how batches are formed and how columns map to prompts
and Router routes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from transformers import TrainingArguments

from sdk.core.errors import InputError

__all__ = [
    "BatchSamplers",
    "CrossEncoderTrainingArguments",
    "DenseTrainingArguments",
    "EncoderTrainingArguments",
    "MultiDatasetBatchSamplers",
    "SentenceTransformerTrainingArguments",
    "SparseEncoderTrainingArguments",
]


class BatchSamplers(str, Enum):
    """How the rows of one dataset are grouped into batches.

    - ``BATCH_SAMPLER``: a shuffled permutation, cut into batches.
    - ``NO_DUPLICATES``: no text appears twice in a batch; in-batch-negative losses (MNRL) would
      otherwise treat a copy of the positive as a negative.
    - ``GROUP_BY_LABEL``: every label in a batch appears at least twice (BatchHardTripletLoss).
    """

    BATCH_SAMPLER = "batch_sampler"
    NO_DUPLICATES = "no_duplicates"
    GROUP_BY_LABEL = "group_by_label"


class MultiDatasetBatchSamplers(str, Enum):
    """How batches of several datasets are interleaved (each batch comes from one dataset).

    - ``PROPORTIONAL``: every batch of every dataset, in a random order (large datasets dominate).
    - ``ROUND_ROBIN``: one batch from each dataset in turn, until the smallest runs out.
    """

    ROUND_ROBIN = "round_robin"
    PROPORTIONAL = "proportional"


def _enum(kind: type[Enum], value: Any, what: str) -> Any:
    if isinstance(value, kind):
        return value
    try:
        return kind(str(value).lower())
    except ValueError:
        choices = ", ".join(m.value for m in kind)  # type: ignore[attr-defined]
        raise InputError(f"{what} must be one of {choices}; got {value!r}") from None


@dataclass
class EncoderTrainingArguments(TrainingArguments):
    """``TrainingArguments`` with batch samplers, prompts, Router mapping and per-parameter LRs.

    ``prompts``: one string for every column, ``{column: prompt}``, or ``{dataset: {column: prompt}}``.
    ``router_mapping``: ``{column: route}`` (e.g. ``{"query": "query", "answer": "document"}``) or
    per dataset; by default a Router model reads column 0 as "query" and the rest as "document".
    ``learning_rate_mapping``: ``{regex over parameter names: learning rate}``.
    """

    batch_sampler: BatchSamplers | str = field(
        default=BatchSamplers.BATCH_SAMPLER, metadata={"help": "batch_sampler, no_duplicates or group_by_label"}
    )
    multi_dataset_batch_sampler: MultiDatasetBatchSamplers | str = field(
        default=MultiDatasetBatchSamplers.PROPORTIONAL, metadata={"help": "proportional or round_robin"}
    )
    prompts: Any = field(default=None, metadata={"help": "prompt per column (or per dataset and column)"})
    router_mapping: Any = field(default=None, metadata={"help": "Router route per column (or per dataset)"})
    learning_rate_mapping: Any = field(default=None, metadata={"help": "{parameter-name regex: learning rate}"})
    warmup_ratio: float | None = field(
        default=None, metadata={"help": "warm-up as a fraction of all steps (transformers 5: warmup_steps < 1)"}
    )

    def __post_init__(self) -> None:
        # the seed's recipes say warmup_ratio=0.1; transformers 5 spells it warmup_steps=0.1
        if self.warmup_ratio is not None:
            if not 0 <= self.warmup_ratio < 1:
                raise InputError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
            if self.warmup_steps:
                raise InputError("give warmup_ratio or warmup_steps, not both")
            self.warmup_steps = self.warmup_ratio
        super().__post_init__()
        self.batch_sampler = _enum(BatchSamplers, self.batch_sampler, "batch_sampler")
        self.multi_dataset_batch_sampler = _enum(
            MultiDatasetBatchSamplers, self.multi_dataset_batch_sampler, "multi_dataset_batch_sampler"
        )
        # the collator builds our own batch structure; transformers must not drop "unused" columns
        self.remove_unused_columns = False
        # encoder losses return no logits: evaluation only reports the loss (and the evaluator)
        self.prediction_loss_only = True
        for name in ("prompts", "router_mapping", "learning_rate_mapping"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (dict, str)) or (name != "prompts" and isinstance(value, str)):
                raise InputError(f"{name} must be a dict (see EncoderTrainingArguments' docstring), got {value!r}")


@dataclass
class DenseTrainingArguments(EncoderTrainingArguments):
    """Arguments for ``DenseTrainer``."""


@dataclass
class CrossEncoderTrainingArguments(EncoderTrainingArguments):
    """Arguments for ``CrossEncoderTrainer``."""


@dataclass
class SparseEncoderTrainingArguments(EncoderTrainingArguments):
    """Arguments for ``SparseEncoderTrainer``."""


#: sentence-transformers' name, for recipes copied from its documentation
SentenceTransformerTrainingArguments = DenseTrainingArguments
