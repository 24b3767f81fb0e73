"""CrossEncoder: sentence-transformers' CrossEncoder (reranker) surface on torch + transformers.

A cross-encoder reads query and document together and returns a relevance score, which
is slower than comparing vectors but much sharper: the retrieval pipeline uses it to
rerank a short candidate list. Loading comes from ``sdk.encoders.options``, batching and
devices from ``ModuleEncoder``; the model is one ``ClassificationTransformer`` module, saved
the way sentence-transformers (>= 5.4) saves cross-encoders, so either library loads the
other's folders.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from sdk.core.errors import InputError, ModelLoadError
from sdk.encoders.base import ModuleEncoder, pick_device
from sdk.encoders.loading import LoadedModel, read_json, resolve_model_path
from sdk.encoders.modules import ClassificationTransformer, EncoderModule
from sdk.encoders.modules.dense import _activation_from_path, _activation_path
from sdk.encoders.options import LoadOptions, load_stack

__all__ = ["CrossEncoder"]

Pair = tuple[str, str]


def _check_pair(pair: Any, index: int | None = None) -> Pair:
    where = "the pair" if index is None else f"pair {index}"
    if isinstance(pair, np.ndarray):
        pair = pair.tolist()
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise InputError(
            f"{where} must be a (query, document) pair of two strings, got {type(pair).__name__}"
            + (f" of length {len(pair)}" if isinstance(pair, (tuple, list)) else "")
        )
    for side, text in zip(("first", "second"), pair, strict=True):
        if not isinstance(text, str):
            raise InputError(f"{where}: the {side} element is {type(text).__name__} ({text!r:.40}), not a string")
    return (pair[0], pair[1])


def check_pairs(pairs: Any) -> tuple[list[Pair], bool]:
    """Validate predict input; return pairs as tuples and whether a single pair was given."""
    if pairs is None:
        raise InputError("sentences is None; pass a (query, document) pair or a list of pairs")
    if isinstance(pairs, str):
        raise InputError("a cross-encoder scores pairs; pass (query, document) or a list of such pairs, not a string")
    if isinstance(pairs, np.ndarray):
        pairs = pairs.tolist()
    if isinstance(pairs, (tuple, list)) and pairs and isinstance(pairs[0], str):
        return [_check_pair(pairs)], True
    if not isinstance(pairs, (tuple, list)):
        try:
            pairs = list(pairs)
        except TypeError:
            raise InputError(f"pairs must be a list of (query, document) pairs, got {type(pairs).__name__}") from None
    return [_check_pair(p, i) for i, p in enumerate(pairs)], False


def _classification_modules(folder: Path, **load_kwargs: Any) -> list[tuple[str, EncoderModule]]:
    """A bare transformers folder: one sequence-classification transformer."""
    return [("0", ClassificationTransformer.load(folder, **load_kwargs))]


def _check_classification_stack(model: LoadedModel) -> None:
    stack = [m[1] if isinstance(m, tuple) else m for m in model.modules]
    if len(stack) != 1 or not isinstance(stack[0], ClassificationTransformer):
        raise ModelLoadError(
            f"a CrossEncoder is one sequence-classification transformer; got modules "
            f"{[type(m).__name__ for m in stack]} (causal-LM rerankers are not supported)"
        )


class CrossEncoder(ModuleEncoder):
    """Scores (query, document) pairs with one transformer pass per pair."""

    model_type = "CrossEncoder"

    def __init__(
        self,
        model_name_or_path: str | Path | None = None,
        num_labels: int | None = None,
        max_length: int | None = None,
        activation_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        device: str | None = None,
        modules: Sequence[EncoderModule] | None = None,
        cache_folder: str | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        local_files_only: bool = False,
        token: bool | str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        backend: Literal["torch", "onnx", "openvino", "auto"] = "torch",
        allow_pickle: bool = False,
    ) -> None:
        options = LoadOptions.create(
            "CrossEncoder", backend=backend, device=device, cache_folder=cache_folder, revision=revision,
            token=token, local_files_only=local_files_only, trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle, model_kwargs=model_kwargs, tokenizer_kwargs=tokenizer_kwargs,
            config_kwargs=config_kwargs,
        )
        if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1):
            raise InputError(f"num_labels must be a positive integer, got {num_labels!r}")
        if activation_fn is not None and not callable(activation_fn):
            raise InputError(f"activation_fn must be callable (e.g. torch.nn.Sigmoid()), got {activation_fn!r}")
        hf_config: dict[str, Any] = {}
        if modules is None and model_name_or_path is not None:
            # the folder's transformers config decides the head: a base model gets a fresh 1-label one
            path = resolve_model_path(model_name_or_path, **options.hub_kwargs())
            raw_hf = read_json(path / "config.json")
            hf_config = raw_hf if isinstance(raw_hf, dict) else {}
            model_name_or_path = path
            if num_labels is not None:
                options = options.with_config(num_labels=num_labels)
            elif "num_labels" not in options.config_kwargs and not any(
                str(a).endswith("ForSequenceClassification") for a in hf_config.get("architectures") or []
            ):
                options = options.with_config(num_labels=1)
        model = load_stack(model_name_or_path, modules, options, bare_loader=_classification_modules,
                           check=_check_classification_stack)
        self.model_path = model.path
        # v6 keeps the activation in config_sentence_transformers.json, v4-v5 in config.json
        saved = model.config.get("activation_fn") or (
            (hf_config.get("sentence_transformers") or {}).get("activation_fn")
            or hf_config.get("sbert_ce_default_activation_function"))
        super().__init__(model.modules, device=options.device)
        if max_length is not None:
            self.max_length = max_length
        self.activation_fn = activation_fn if activation_fn is not None else self._saved_activation(saved)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "activation_fn":  # a plain attribute: as a submodule the stack would run it
            object.__setattr__(self, name, value)
            return
        super().__setattr__(name, value)

    # -- settings ------------------------------------------------------------------------

    def _saved_activation(self, path: str | None) -> Callable[[torch.Tensor], torch.Tensor]:
        """The activation a folder names (torch.nn classes only), else the default for num_labels."""
        if path:
            try:
                return _activation_from_path(path)
            except ModelLoadError:
                pass  # custom code is never imported from a model folder; fall back to the default
        return nn.Sigmoid() if self.num_labels == 1 else nn.Identity()

    @property
    def num_labels(self) -> int:
        return self.transformer.num_labels  # type: ignore[attr-defined]

    @property
    def max_length(self) -> int:
        """Longest (query + document) token count; longer pairs are truncated longest-first."""
        return self.max_seq_length

    @max_length.setter
    def max_length(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"max_length must be a positive integer, got {value!r}")
        self.max_seq_length = value

    @property
    def config(self) -> Any:
        return self.transformer.auto_model.config

    # -- scoring ---------------------------------------------------------------------------

    def predict(
        self,
        sentences: Pair | Sequence[Pair],
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        apply_softmax: bool = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: str | Sequence[str] | None = None,
        pool: dict[str, Any] | None = None,
        chunk_size: int | None = None,
    ) -> np.ndarray | torch.Tensor | list[torch.Tensor] | float:
        """Score pairs: one pair in, one score (or one row of label scores) out.

        ``activation_fn`` defaults to the model's (sigmoid for 1 label, identity otherwise);
        ``apply_softmax`` turns multi-label scores into probabilities. ``pool`` (from
        ``start_multi_process_pool``) or a list of devices spreads the pairs over processes.
        """
        pairs, single = check_pairs(sentences)
        if activation_fn is not None and not callable(activation_fn):
            raise InputError(f"activation_fn must be callable, got {activation_fn!r}")
        if pool is not None or isinstance(device, (list, tuple)):
            return self._in_pool("predict", pairs, single, pool, device, chunk_size, dict(
                batch_size=batch_size, activation_fn=activation_fn, apply_softmax=apply_softmax,
                convert_to_numpy=convert_to_numpy, convert_to_tensor=convert_to_tensor,
            ))
        activation = activation_fn if activation_fn is not None else self.activation_fn
        target = pick_device(device) if device is not None else None
        if target is not None and target != self.device:
            self.to(target)
        num_labels = self.num_labels

        def collect(features: dict[str, torch.Tensor]) -> list[torch.Tensor]:
            scores = features["scores"].float()
            scores = activation(scores)
            if num_labels == 1 and scores.ndim > 1:
                scores = scores.squeeze(-1)
            if apply_softmax and scores.ndim > 1:
                scores = torch.softmax(scores, dim=1)
            return list(scores)

        rows = self.run_batches(
            pairs, batch_size, collect, show_progress_bar=show_progress_bar,
            length=lambda pair: len(pair[0]) + len(pair[1]),
        )
        if convert_to_tensor:
            out: Any = torch.stack(rows) if rows else torch.zeros(0, device=self.device)
        elif convert_to_numpy:
            out = torch.stack(rows).cpu().numpy() if rows else np.zeros(0, dtype=np.float32)
        else:
            out = rows
        return out[0] if single else out

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        top_k: int | None = None,
        return_documents: bool = False,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        pool: dict[str, Any] | None = None,
        chunk_size: int | None = None,
    ) -> list[dict[str, Any]]:
        """Documents by falling score: [{"corpus_id", "score", "text"?}] (1-label models only).

        ``pool`` scores the documents in a multi-process pool, as in ``predict``."""
        if not isinstance(query, str):
            raise InputError(f"query must be a string, got {type(query).__name__}")
        if documents is None or isinstance(documents, str):
            raise InputError("documents must be a list of strings")
        documents = list(documents)
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise InputError(f"top_k must be a positive integer or None, got {top_k!r}")
        if self.num_labels != 1:
            raise InputError(
                f"rank() needs a 1-label (relevance) model; this one has {self.num_labels} labels: use predict()"
            )
        scores = self.predict([(query, d) for d in documents], batch_size=batch_size,
                              show_progress_bar=show_progress_bar, activation_fn=activation_fn,
                              convert_to_tensor=True, pool=pool, chunk_size=chunk_size)
        results = []
        for i, score in enumerate(scores.tolist() if len(documents) else []):
            hit: dict[str, Any] = {"corpus_id": i, "score": score}
            if return_documents:
                hit["text"] = documents[i]
            results.append(hit)
        results.sort(key=lambda h: h["score"], reverse=True)  # stable: ties keep corpus order
        return results[:top_k]

    # -- saving ------------------------------------------------------------------------------

    def _activation_name(self) -> str:
        fn = self.activation_fn
        return _activation_path(fn) if isinstance(fn, nn.Module) else f"{fn.__module__}.{fn.__qualname__}"

    def _extra_config(self) -> dict[str, Any]:
        return {"activation_fn": self._activation_name(), "prompts": {}, "default_prompt_name": None}

    def save(self, path: str | Path) -> None:
        """Write a folder sentence-transformers' CrossEncoder loads (v6 via modules.json, older via config.json)."""
        # older sentence-transformers read the activation from the transformers config
        self.config.sentence_transformers = {"activation_fn": self._activation_name()}
        super().save(path)

    def __repr__(self) -> str:
        return f"CrossEncoder(num_labels={self.num_labels}, max_length={self.max_length}, device={self.device})"
