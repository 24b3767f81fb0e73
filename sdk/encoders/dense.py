"""DenseEncoder: the SentenceTransformer surface on plain torch + transformers.

Loads any sentence-transformers folder or hub id and produces float, Matryoshka-truncated
and quantized embeddings. The heavy lifting lives in modules (``sdk.encoders.modules``), loading in
``sdk.encoders.options``, the batching loop and the query/document prompts in ``sdk.encoders.base``
and quantization in ``sdk.quantization``; this class only wires options together.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from sdk.core.errors import InputError
from sdk.core.similarity import Similarity
from sdk.encoders.base import VectorEncoder, check_texts, pick_device
from sdk.encoders.loading import default_dense_model
from sdk.encoders.modules import EncoderModule
from sdk.encoders.options import LoadOptions, load_stack
from sdk.quantization import Calibration, check_precision, quantize_embeddings
from sdk.util import similarity_function

__all__ = ["DenseEncoder"]


class DenseEncoder(VectorEncoder):
    """Turns texts into dense vectors; a drop-in for sentence-transformers' SentenceTransformer."""

    def __init__(
        self,
        model_name_or_path: str | Path | None = None,
        modules: Sequence[EncoderModule] | None = None,
        device: str | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        similarity_fn_name: str | Similarity | None = None,
        cache_folder: str | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        local_files_only: bool = False,
        token: bool | str | None = None,
        truncate_dim: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        backend: Literal["torch", "onnx", "openvino", "auto"] = "torch",
        allow_pickle: bool = False,
        calibration: Calibration | None = None,
    ) -> None:
        options = LoadOptions.create(
            "DenseEncoder", backend=backend, device=device, cache_folder=cache_folder, revision=revision,
            token=token, local_files_only=local_files_only, trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle, model_kwargs=model_kwargs, tokenizer_kwargs=tokenizer_kwargs,
            config_kwargs=config_kwargs,
        )
        model = load_stack(model_name_or_path, modules, options, default_model=default_dense_model)
        config = model.config
        self.model_path = model.path
        if model.path is not None:
            calibration = calibration or Calibration.load(model.path)
        super().__init__(model.modules, device=options.device)
        self._init_prompts(config, prompts, default_prompt_name)
        self.similarity_fn_name = Similarity.parse(
            similarity_fn_name or config.get("similarity_fn_name") or Similarity.COSINE
        )
        self._truncate_dim: int | None = None
        self.truncate_dim = truncate_dim
        self.calibration = calibration

    # -- dimensions and Matryoshka -------------------------------------------------------

    def _full_dimension(self) -> int:
        for module in reversed(list(self)):
            getter = getattr(module, "get_sentence_embedding_dimension", None)
            if getter is not None:
                return int(getter())
        return self.transformer.get_word_embedding_dimension()

    def _check_truncate_dim(self, dim: int | None) -> int | None:
        if dim is None:
            return None
        full = self._full_dimension()
        if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= full:
            raise InputError(f"truncate_dim must be an integer between 1 and the model's {full} dims, got {dim!r}")
        return dim

    @property
    def truncate_dim(self) -> int | None:
        return self._truncate_dim

    @truncate_dim.setter
    def truncate_dim(self, dim: int | None) -> None:
        self._truncate_dim = self._check_truncate_dim(dim)

    def get_sentence_embedding_dimension(self) -> int:
        """Width of the vectors ``encode`` returns (after truncation)."""
        return self._truncate_dim or self._full_dimension()

    @contextlib.contextmanager
    def truncate_sentence_embeddings(self, truncate_dim: int | None) -> Iterator[None]:
        """Temporarily encode to ``truncate_dim`` dims (Matryoshka models)."""
        previous = self._truncate_dim
        self.truncate_dim = truncate_dim
        try:
            yield
        finally:
            self._truncate_dim = previous

    # -- prompts ---------------------------------------------------------------------------

    def _prompt_length(self, prompt: str) -> int:
        ids = self.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        length = len(ids)
        if ids and ids[-1] in set(self.tokenizer.all_special_ids):
            length -= 1
        return length

    # -- encoding --------------------------------------------------------------------------

    def encode(
        self,
        sentences: str | Sequence[str] | np.ndarray,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        output_value: Literal["sentence_embedding", "token_embeddings"] = "sentence_embedding",
        precision: Literal["float32", "int8", "uint8", "binary", "ubinary"] = "float32",
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: str | Sequence[str] | None = None,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        calibration: Calibration | np.ndarray | None = None,
        pool: dict[str, Any] | None = None,
        chunk_size: int | None = None,
    ) -> np.ndarray | torch.Tensor | list[torch.Tensor]:
        """Encode texts. One string in gives one vector out; an empty list gives shape (0, dim).

        ``precision`` int8/uint8 uses the saved calibration (or ``calibration=``), never the
        batch itself, so a single query quantizes exactly as it would inside a large batch.
        ``pool`` (from ``start_multi_process_pool``) spreads the work over its processes; a list
        of devices (``device=["cuda:0", "cuda:1"]``) does the same with a pool for this call only.
        """
        texts, single = check_texts(sentences, images=self.accepts_images)
        if pool is not None or isinstance(device, (list, tuple)):
            return self._in_pool("encode", texts, single, pool, device, chunk_size, dict(
                prompt_name=prompt_name, prompt=prompt, batch_size=batch_size,
                output_value=output_value, precision=precision, convert_to_numpy=convert_to_numpy,
                convert_to_tensor=convert_to_tensor, normalize_embeddings=normalize_embeddings,
                truncate_dim=truncate_dim, calibration=calibration,
            ))
        check_precision(precision)
        if output_value not in ("sentence_embedding", "token_embeddings"):
            raise InputError(f"output_value must be 'sentence_embedding' or 'token_embeddings', got {output_value!r}")
        if output_value == "token_embeddings" and self.accepts_images:
            raise InputError("an image-text (CLIP) model gives one vector per text or image, no token embeddings; "
                             "use output_value='sentence_embedding'")
        dim = self._check_truncate_dim(truncate_dim) or self._truncate_dim
        prompt_text = self._resolve_prompt(prompt_name, prompt)
        extra: dict[str, Any] = {}
        if prompt_text:
            texts = [prompt_text + t if isinstance(t, str) else t for t in texts]  # images take no prompt
            extra["prompt_length"] = self._prompt_length(prompt_text)
        target = pick_device(device) if device is not None else None
        if target is not None and target != self.device:
            self.to(target)

        if output_value == "token_embeddings":
            rows = self.run_batches(texts, batch_size, _token_rows, show_progress_bar=show_progress_bar,
                                    extra_features=extra)
            return rows[0] if single else rows

        def collect(features: dict[str, torch.Tensor]) -> torch.Tensor:
            emb = features["sentence_embedding"]
            if dim is not None:
                emb = emb[:, :dim]
            if normalize_embeddings:
                emb = torch.nn.functional.normalize(emb, p=2, dim=1)
            return emb.float()

        stacked = self.run_batches(texts, batch_size, collect, show_progress_bar=show_progress_bar,
                                   extra_features=extra, stack=True)
        width = dim or self._full_dimension()
        stacked = stacked.cpu() if stacked is not None else torch.zeros((0, width), dtype=torch.float32)
        if precision != "float32":
            ranges = calibration if calibration is not None else self.calibration
            if ranges is None and precision in ("int8", "uint8"):
                raise InputError(
                    f"precision={precision!r} needs calibration ranges; call encoder.calibrate(sample_texts) "
                    "once (they are saved with the model) or pass calibration=..."
                )
            quantized = quantize_embeddings(stacked.numpy(), precision, ranges=ranges)
            out: Any = torch.from_numpy(quantized) if convert_to_tensor else quantized
        elif convert_to_tensor:
            out = stacked
        elif convert_to_numpy:
            out = stacked.numpy()
        else:
            out = list(stacked)
        return out[0] if single else out

    # -- quantization calibration ----------------------------------------------------------

    def calibrate(
        self, sentences: Sequence[str], batch_size: int = 32, normalize_embeddings: bool = False
    ) -> Calibration:
        """Compute int8/uint8 ranges from a representative sample and keep them (saved by ``save``)."""
        texts, _ = check_texts(sentences)
        if not texts:
            raise InputError("calibrate needs at least one text; pass a representative sample")
        emb = self.encode(texts, batch_size=batch_size, normalize_embeddings=normalize_embeddings)
        self.calibration = Calibration.from_embeddings(np.asarray(emb), normalized=normalize_embeddings)
        return self.calibration

    # -- similarity --------------------------------------------------------------------------

    def similarity(self, embeddings1: Any, embeddings2: Any) -> torch.Tensor:
        """All-pairs scores with the model's similarity function (higher is closer)."""
        return similarity_function(self.similarity_fn_name.value)(embeddings1, embeddings2)

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> torch.Tensor:
        """Scores of corresponding rows with the model's similarity function."""
        return similarity_function(self.similarity_fn_name.value, pairwise=True)(embeddings1, embeddings2)

    # -- saving ------------------------------------------------------------------------------

    def _extra_config(self) -> dict[str, Any]:
        return {
            "prompts": self.prompts,
            "default_prompt_name": self.default_prompt_name,
            "similarity_fn_name": self.similarity_fn_name.value,
        }

    def save(self, path: str | Path) -> None:
        """Write a sentence-transformers folder (plus saved quantization calibration)."""
        super().save(path)
        if self.calibration is not None:
            self.calibration.save(path)

    def __repr__(self) -> str:
        return f"DenseEncoder(dim={self.get_sentence_embedding_dimension()}, device={self.device}, modules={[type(m).__name__ for m in self]})"


def _token_rows(features: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Per-text token embeddings without the padding positions."""
    tokens, mask = features["token_embeddings"], features["attention_mask"]
    rows = []
    for emb, att in zip(tokens, mask, strict=True):
        nz = torch.nonzero(att, as_tuple=False)
        last = int(nz[-1]) if len(nz) else 0
        rows.append(emb[: last + 1].float().cpu())
    return rows
