"""Training for the three encoder kinds, with sentence-transformers' recipes (issue 14).

- ``trainer``: ``DenseTrainer`` (alias ``SentenceTransformerTrainer``), ``CrossEncoderTrainer``,
  ``SparseEncoderTrainer`` on ``transformers.Trainer``; ``args``: their training arguments;
  ``samplers`` and ``collator``: how dataset rows become batches.
- ``losses``: the loss functions (``losses.dense``, ``losses.cross``, ``losses.sparse``).
- ``mining``: ``mine_hard_negatives``; ``data``: BEIR folders and parallel sentences as datasets.
- ``denoising``: TSDAE data (unlabelled sentences with deletion noise), for ``DenoisingAutoEncoderLoss``.
- ``model_card``: the README.md saved with every trained model.
Evaluators live in ``sdk.evaluation`` (one floor below), so ``sdk eval`` uses the same ones.

Names load lazily: ``import sdk.training`` does not import transformers' Trainer.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "BatchSamplers": "sdk.training.args",
    "MultiDatasetBatchSamplers": "sdk.training.args",
    "EncoderTrainingArguments": "sdk.training.args",
    "DenseTrainingArguments": "sdk.training.args",
    "SentenceTransformerTrainingArguments": "sdk.training.args",
    "CrossEncoderTrainingArguments": "sdk.training.args",
    "SparseEncoderTrainingArguments": "sdk.training.args",
    "EncoderTrainer": "sdk.training.trainer",
    "DenseTrainer": "sdk.training.trainer",
    "SentenceTransformerTrainer": "sdk.training.trainer",
    "CrossEncoderTrainer": "sdk.training.trainer",
    "SparseEncoderTrainer": "sdk.training.trainer",
    "mine_hard_negatives": "sdk.training.mining",
    "beir_pairs": "sdk.training.data",
    "parallel_sentences": "sdk.training.data",
    "DenoisingAutoEncoderDataset": "sdk.training.denoising",
    "corpus_sentences": "sdk.training.denoising",
    "ModelCardData": "sdk.training.model_card",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sdk.training' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
