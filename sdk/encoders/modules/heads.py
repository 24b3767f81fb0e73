"""Transformers with a task head: masked-LM logits for SPLADE, classification logits for rerankers.

They reuse ``Transformer`` for loading, tokenization and saving and only change the
transformers auto class and where the head's output goes. sentence-transformers (>= 5.4)
saves every head as one ``Transformer`` type and records the head as ``transformer_task``
in sentence_bert_config.json; we write the same, so folders load on both sides.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

from sdk.encoders.modules.transformer import Transformer

__all__ = ["ClassificationTransformer", "MLMTransformer"]

_ST_TRANSFORMER = "sentence_transformers.base.modules.transformer.Transformer"


class MLMTransformer(Transformer):
    """A fill-mask model whose vocabulary logits become ``token_embeddings`` (SPLADE's input)."""

    st_type: ClassVar[str] = _ST_TRANSFORMER
    auto_class: ClassVar[type] = AutoModelForMaskedLM
    transformer_task: ClassVar[str | None] = "fill-mask"

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "transformer_task": self.transformer_task}

    def vocab_size(self) -> int:
        """Width of the logits: one dimension per vocabulary token."""
        head = self.auto_model.get_output_embeddings()
        if head is not None and getattr(head, "weight", None) is not None:
            return int(head.weight.shape[0])
        return int(self.auto_model.config.vocab_size)


class ClassificationTransformer(Transformer):
    """A sequence-classification model whose logits become ``scores`` (a cross-encoder)."""

    st_type: ClassVar[str] = _ST_TRANSFORMER
    auto_class: ClassVar[type] = AutoModelForSequenceClassification
    transformer_task: ClassVar[str | None] = "sequence-classification"

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "transformer_task": self.transformer_task}

    @property
    def num_labels(self) -> int:
        return int(self.auto_model.config.num_labels)

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        inputs = {k: features[k] for k in self._forward_keys if k in features}
        features["scores"] = self.auto_model(**inputs, return_dict=True).logits
        return features


Transformer.task_classes.update({"fill-mask": MLMTransformer, "sequence-classification": ClassificationTransformer})
