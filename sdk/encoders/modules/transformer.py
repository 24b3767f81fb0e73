"""The token-level encoder: a Hugging Face model plus its tokenizer, as one module.

It owns tokenization because truncation, padding and lower-casing are part of what
the model was trained with; putting them anywhere else lets two code paths disagree.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from sdk.core.errors import ModelLoadError
from sdk.encoders.modules.base import EncoderModule
from sdk.encoders.tokenize_fast import FastTokenizer, RaggedTokens
from sdk.encoders.weights import has_pickle_only, has_torch_weights, onnx_files, pickle_refused

__all__ = ["Transformer"]


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-load progress bar; loading a local folder takes milliseconds."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


class Transformer(EncoderModule):
    """Runs a transformers model and puts its last hidden state into ``token_embeddings``."""

    st_type: ClassVar[str] = "sentence_transformers.models.Transformer"
    config_file: ClassVar[str] = "sentence_bert_config.json"
    #: The transformers auto class used to load weights; subclasses (MLM, classification) change it.
    auto_class: ClassVar[type] = AutoModel
    #: sentence-transformers' ``transformer_task`` this class handles (None: plain feature extraction).
    transformer_task: ClassVar[str | None] = None
    #: Subclasses by ``transformer_task``: sentence-transformers >= 5.4 writes one Transformer type for
    #: every head and names the head in sentence_bert_config.json, so ``load`` dispatches on it.
    task_classes: ClassVar[dict[str, type[Transformer]]] = {}

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        max_seq_length: int | None = None,
        do_lower_case: bool = False,
    ) -> None:
        super().__init__()
        self.auto_model = model
        self.tokenizer = tokenizer
        self.do_lower_case = do_lower_case
        if max_seq_length is None:
            limits = [getattr(model.config, "max_position_embeddings", None), tokenizer.model_max_length]
            finite = [int(x) for x in limits if isinstance(x, int) and 0 < x < 1_000_000]
            max_seq_length = min(finite) if finite else 512
        self.max_seq_length = int(max_seq_length)
        self._forward_keys = self._accepted_inputs(model)

    @staticmethod
    def _accepted_inputs(model: PreTrainedModel) -> frozenset[str]:
        import inspect

        params = inspect.signature(model.forward).parameters
        return frozenset(k for k in ("input_ids", "attention_mask", "token_type_ids") if k in params)

    # -- loading / saving -------------------------------------------------------------------

    @classmethod
    def load(  # type: ignore[override]
        cls,
        path: str | Path,
        *,
        allow_pickle: bool = False,
        trust_remote_code: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        max_seq_length: int | None = None,
        **_: Any,
    ) -> Transformer:
        folder = Path(path)
        if has_pickle_only(folder) and not allow_pickle:
            raise pickle_refused(folder)
        settings_path = folder / cls.config_file
        settings = json.loads(settings_path.read_text(encoding="utf8")) if settings_path.exists() else {}
        task_cls = cls.task_classes.get(settings.get("transformer_task") or "")
        if task_cls is not None and not issubclass(cls, task_cls):
            return task_cls.load(
                folder, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, model_kwargs=model_kwargs,
                tokenizer_kwargs=tokenizer_kwargs, config_kwargs=config_kwargs, max_seq_length=max_seq_length,
            )
        try:
            with _quiet_transformers():
                config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code, **(config_kwargs or {}))
                if not has_torch_weights(folder) and onnx_files(folder):
                    model = cls._weightless(folder, config, trust_remote_code)
                else:
                    model = cls.auto_class.from_pretrained(
                        folder,
                        config=config,
                        trust_remote_code=trust_remote_code,
                        use_safetensors=None if allow_pickle else True,
                        **(model_kwargs or {}),
                    )
            tokenizer = AutoTokenizer.from_pretrained(
                folder, trust_remote_code=trust_remote_code, **(tokenizer_kwargs or {})
            )
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"cannot load a transformers model from {folder}: {exc}") from exc
        return cls(
            model,
            tokenizer,
            max_seq_length=max_seq_length or settings.get("max_seq_length"),
            do_lower_case=bool(settings.get("do_lower_case", False)),
        )

    @classmethod
    def _weightless(cls, folder: Path, config: Any, trust_remote_code: bool) -> PreTrainedModel:
        """The architecture without weights (on the meta device) for a folder that ships only ONNX files.

        Such a folder runs on ``backend="onnx"`` alone; the skeleton supplies the config and the
        forward signature, and ``sdk.encoders.backends`` refuses it on the torch backend.
        """
        with torch.device("meta"):
            model = cls.auto_class.from_config(config, trust_remote_code=trust_remote_code)
        model.config._name_or_path = str(folder)
        return model.eval()

    def get_config(self) -> dict[str, Any]:
        return {"max_seq_length": self.max_seq_length, "do_lower_case": self.do_lower_case}

    def save(self, path: str | Path) -> None:
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.auto_model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        with open(folder / self.config_file, "w", encoding="utf8") as fh:
            json.dump(self.get_config(), fh, indent=2)

    # -- running ----------------------------------------------------------------------------

    def tokenize(
        self, texts: Sequence[str] | Sequence[tuple[str, str]], max_length: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Tokenize single texts or (a, b) pairs, padded to the longest in the batch."""
        if texts and isinstance(texts[0], tuple):
            first = [self._prep(a) for a, _ in texts]  # type: ignore[misc]
            second = [self._prep(b) for _, b in texts]  # type: ignore[misc]
            args: tuple[Any, ...] = (first, second)
        else:
            args = ([self._prep(t) for t in texts],)  # type: ignore[arg-type]
        return dict(
            self.tokenizer(
                *args,
                padding=True,
                truncation="longest_first",
                max_length=max_length or self.max_seq_length,
                return_tensors="pt",
            )
        )

    def tokenize_ragged(
        self, texts: Sequence[str] | Sequence[tuple[str, str]], max_length: int | None = None
    ) -> RaggedTokens | None:
        """``tokenize`` without the padding, through the Rust tokenizer; None where that is not exact.

        The batching pipeline pads each batch itself (see ``sdk.encoders.tokenize_fast``).
        """
        cached = self.__dict__.get("_fast_tokenizer")
        if cached is None or cached[0] != FastTokenizer.settings_of(self.tokenizer):
            # first use, or the tokenizer (or its padding/truncation side) was changed since
            cached = (FastTokenizer.settings_of(self.tokenizer), FastTokenizer.wrap(self.tokenizer))
            self.__dict__["_fast_tokenizer"] = cached
        fast = cached[1]
        if fast is None:
            return None
        if texts and isinstance(texts[0], tuple):
            items: list[Any] = [(self._prep(a), self._prep(b)) for a, b in texts]  # type: ignore[misc]
        else:
            items = [self._prep(t) for t in texts]  # type: ignore[arg-type]
        return fast(items, max_length or self.max_seq_length)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_fast_tokenizer", None)  # rebuilt on first use in the receiving process
        return state

    def _prep(self, text: str) -> str:
        return text.lower() if self.do_lower_case else text

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        inputs = {k: features[k] for k in self._forward_keys if k in features}
        outputs = self.auto_model(**inputs, return_dict=True)
        features["token_embeddings"] = outputs[0]
        return features

    def get_word_embedding_dimension(self) -> int:
        return int(self.auto_model.config.hidden_size)
