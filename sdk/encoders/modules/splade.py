"""SPLADE's sparse outputs: pooled MLM logits for documents, static token weights for queries.

``SpladePooling`` turns per-token vocabulary logits into one vocabulary-sized vector;
``SparseStaticEmbedding`` gives inference-free SPLADE its query side: a learned weight per
vocabulary token, so encoding a query is a tokenizer call and a lookup, no transformer.
Both read and write the same config files as sentence-transformers' modules of the same name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from sdk.core.errors import InputError, ModelLoadError
from sdk.encoders.modules.base import EncoderModule
from sdk.encoders.weights import load_state_dict

__all__ = ["SPLADE_ACTIVATIONS", "SPLADE_POOLING", "SparseStaticEmbedding", "SpladePooling"]

SPLADE_POOLING = ("max", "sum")
#: ``relu`` gives log(1 + relu(x)); ``log1p_relu`` (OpenSearch models) applies log1p once more.
SPLADE_ACTIVATIONS = ("relu", "log1p_relu")


class SpladePooling(EncoderModule):
    """``pool_over_tokens(log1p(relu(logits)))`` with padding masked out, as in SPLADE v2+."""

    st_type: ClassVar[str] = "sentence_transformers.sparse_encoder.modules.splade_pooling.SpladePooling"

    def __init__(
        self,
        pooling_strategy: str = "max",
        activation_function: str = "relu",
        embedding_dimension: int | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        if pooling_strategy not in SPLADE_POOLING:
            raise InputError(f"pooling_strategy must be one of {SPLADE_POOLING}, got {pooling_strategy!r}")
        if activation_function not in SPLADE_ACTIVATIONS:
            raise InputError(
                f"activation_function must be one of {SPLADE_ACTIVATIONS}, got {activation_function!r}"
            )
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise InputError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
        self.pooling_strategy = pooling_strategy
        self.activation_function = activation_function
        self.embedding_dimension = None if embedding_dimension is None else int(embedding_dimension)
        self.chunk_size = chunk_size

    @classmethod
    def config_from_json(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Accept the older ``word_embedding_dimension`` key and ignore keys we do not know."""
        dim = config.get("embedding_dimension", config.get("word_embedding_dimension"))
        keys = ("pooling_strategy", "activation_function", "chunk_size")
        return {**{k: config[k] for k in keys if k in config}, "embedding_dimension": dim}

    def get_config(self) -> dict[str, Any]:
        return {
            "pooling_strategy": self.pooling_strategy,
            "activation_function": self.activation_function,
            "embedding_dimension": self.embedding_dimension,
        }

    def get_sentence_embedding_dimension(self) -> int | None:
        return self.embedding_dimension

    def _activate(self, logits: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        out = logits.relu_().log1p_() if inplace else torch.log1p(torch.relu(logits))
        if self.activation_function == "log1p_relu":
            out = out.log1p_() if inplace else torch.log1p(out)
        return out

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = features["token_embeddings"]
        mask = features.get("attention_mask")
        if mask is None:
            mask = torch.ones(logits.shape[:2], dtype=logits.dtype, device=logits.device)
        mask = mask.unsqueeze(-1).to(logits.dtype)
        # Chunking over the sequence bounds the (batch, chunk, vocab) intermediate; None = one chunk.
        step = self.chunk_size or max(logits.shape[1], 1)
        pooled = logits.new_zeros((logits.shape[0], logits.shape[-1]))
        for start in range(0, logits.shape[1], step):
            masked = logits[:, start : start + step] * mask[:, start : start + step]  # padding -> 0
            if self.pooling_strategy == "max":
                # relu and log1p are monotone, so max over raw logits picks the same element and
                # the activation runs on (batch, vocab) instead of every (token, vocab) cell:
                # identical floats, several times faster on CPU. relu(.) >= 0 = the initial value.
                pooled = torch.maximum(pooled, masked.amax(dim=1))
            else:
                pooled = pooled + self._activate(masked, inplace=not torch.is_grad_enabled()).sum(dim=1)
        if self.pooling_strategy == "max":
            pooled = self._activate(pooled)
        if self.embedding_dimension is None:
            self.embedding_dimension = int(pooled.shape[-1])
        features["sentence_embedding"] = pooled
        return features


class SparseStaticEmbedding(EncoderModule):
    """One trainable weight per vocabulary token; a text's vector is the weights of its tokens.

    Tokenization skips special tokens (no [CLS]/[SEP]) like sentence-transformers does, so
    a query's vector holds only the tokens the user typed.
    """

    st_type: ClassVar[str] = (
        "sentence_transformers.sparse_encoder.modules.sparse_static_embedding.SparseStaticEmbedding"
    )
    has_weights: ClassVar[bool] = True

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, weight: torch.Tensor | None = None, frozen: bool = False
    ) -> None:
        super().__init__()
        if not isinstance(tokenizer, PreTrainedTokenizerBase):
            raise InputError(
                f"SparseStaticEmbedding needs a transformers tokenizer, got {type(tokenizer).__name__}; "
                "pass e.g. the document encoder's tokenizer"
            )
        self.tokenizer = tokenizer
        size = len(tokenizer.get_vocab())
        if weight is None:
            weight = torch.ones(size)
        weight = torch.as_tensor(weight, dtype=torch.float32)
        if weight.ndim != 1:
            raise InputError(f"SparseStaticEmbedding weight must be 1-D (one per token), got shape {tuple(weight.shape)}")
        self.weight = torch.nn.Parameter(weight, requires_grad=not frozen)
        self.frozen = bool(frozen)
        self.max_seq_length = int(tokenizer.model_max_length) if tokenizer.model_max_length < 1_000_000 else 512

    @property
    def num_dimensions(self) -> int:
        return int(self.weight.shape[0])

    def get_sentence_embedding_dimension(self) -> int:
        return self.num_dimensions

    def get_config(self) -> dict[str, Any]:
        return {"frozen": self.frozen}

    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        return dict(
            self.tokenizer(
                list(texts),
                padding=True,
                truncation=True,
                max_length=max_length or self.max_seq_length,
                add_special_tokens=False,
                return_tensors="pt",
            )
        )

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ids, mask = features["input_ids"], features["attention_mask"]
        present = torch.zeros((ids.shape[0], self.num_dimensions), dtype=self.weight.dtype, device=ids.device)
        # amax, not plain scatter: a repeated id must stay present even if a padded copy follows it
        present.scatter_reduce_(1, ids, mask.to(present.dtype), reduce="amax")
        embedding = present * self.weight
        previous = features.get("sentence_embedding")
        if previous is not None:
            embedding = embedding * previous
        features["sentence_embedding"] = embedding
        return features

    def save(self, path: str | Path) -> None:
        super().save(path)
        self.tokenizer.save_pretrained(str(path))

    @classmethod
    def load(cls, path: str | Path, *, allow_pickle: bool = False, **kwargs: Any) -> SparseStaticEmbedding:
        folder = Path(path)
        config_path = folder / cls.config_file
        config = json.loads(config_path.read_text(encoding="utf8")) if config_path.exists() else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, **(kwargs.get("tokenizer_kwargs") or {}))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load the tokenizer of the static embedding in {folder}: {exc}") from exc
        frozen = bool(config.get("frozen", False))
        if str(config.get("path", "")).endswith(".json"):
            idf = (folder / config["path"]).resolve()
            if folder.resolve() not in idf.parents or not idf.is_file():
                raise ModelLoadError(f"{folder}: the IDF file {config['path']!r} is not a file inside the folder")
            return cls.from_json(idf, tokenizer, frozen=frozen)
        state = load_state_dict(folder, allow_pickle=allow_pickle)
        if "weight" not in state:
            raise ModelLoadError(f"{folder}: model.safetensors has no 'weight' tensor for SparseStaticEmbedding")
        return cls(tokenizer, weight=state["weight"], frozen=frozen)

    @classmethod
    def from_json(
        cls, path: str | Path, tokenizer: PreTrainedTokenizerBase, frozen: bool = False
    ) -> SparseStaticEmbedding:
        """Weights from a ``{token: weight}`` JSON file (e.g. IDF values); unlisted tokens weigh 0."""
        try:
            table = json.loads(Path(path).read_text(encoding="utf8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"cannot read token weights from {path}: {exc}") from exc
        if not isinstance(table, dict):
            raise ModelLoadError(f"{path} must hold a JSON object mapping tokens to weights")
        weight = torch.zeros(len(tokenizer.get_vocab()))
        # unknown tokens map to the [UNK] id, as in sentence-transformers, so both load the same vector
        for token_id, value in zip(tokenizer.convert_tokens_to_ids(list(table)), table.values(), strict=True):
            weight[token_id] = float(value)
        return cls(tokenizer, weight=weight, frozen=frozen)
