"""CLIP as one encoder module: a text tower and a vision tower that write into one vector space.

sentence-transformers folders such as ``clip-ViT-B-32`` hold a single ``CLIPModel`` module (a
transformers CLIP model plus its processor: tokenizer and image processor), at the root (v5.4+)
or in ``0_CLIPModel/`` (older releases); both load here and ``save`` writes the root layout.

A batch holds one modality: ``tokenize`` turns texts into token ids and ``image_rows`` gives the
feed a window of images that it opens and resizes one batch at a time (``ModuleEncoder``
splits a mixed list and merges the vectors back in order). Pillow is imported only when an
image is opened (``MissingDependencyError`` names the ``images`` extra when it is absent).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from sdk.core.errors import InputError, MissingDependencyError, ModelLoadError
from sdk.encoders.modules.base import EncoderModule
from sdk.encoders.weights import has_pickle_only, pickle_refused

__all__ = ["CLIPModel", "ImageRows", "is_image", "open_image", "pil_image_module"]

# What sentence-transformers (>= 5.4) writes to sentence_bert_config.json for this module.
_MODALITY_CONFIG = {
    "text": {"method": "get_text_features", "method_output_name": "pooler_output"},
    "image": {"method": "get_image_features", "method_output_name": "pooler_output"},
}


def pil_image_module() -> Any:
    """``PIL.Image``; a missing Pillow is a ``MissingDependencyError`` naming the extra."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise MissingDependencyError("pillow", "images") from exc
    return Image


def is_image(item: Any) -> bool:
    """Whether ``encode`` reads ``item`` as an image: a PIL image or a path object (a ``str`` is always text).

    Never imports Pillow: an object can only be a PIL image if the caller imported PIL already.
    """
    if isinstance(item, os.PathLike):
        return True
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(item, pil.Image)


def open_image(path: str | os.PathLike[str]) -> Any:
    """The image at ``path`` as RGB, upright per its EXIF tag (what transformers' ``load_image`` does)."""
    image_module = pil_image_module()
    from PIL import ImageOps, UnidentifiedImageError

    try:
        with image_module.open(path) as img:
            return ImageOps.exif_transpose(img).convert("RGB")
    except FileNotFoundError as exc:
        raise InputError(f"image {os.fspath(path)!r} does not exist; pass an existing image file") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(
            f"{os.fspath(path)!r} is not an image Pillow can read ({type(exc).__name__}: {exc}); "
            "pass a PNG, JPEG, WebP, GIF or BMP file, or drop it from the input"
        ) from exc


@dataclass(frozen=True)
class ImageRows:
    """A window of images in the feed's unpadded-rows protocol (``lengths``, ``take``): the rows of
    one batch are opened and resized when the feed takes them, so memory holds one batch of pixels."""

    images: Sequence[Any]
    process: Callable[[list[Any]], torch.Tensor]

    @property
    def lengths(self) -> np.ndarray:
        return np.zeros(len(self.images), dtype=np.int64)  # every image costs the same: keep the order

    def take(self, rows: np.ndarray, pin: bool = False) -> dict[str, torch.Tensor]:
        pixels = self.process([self.images[i] for i in rows])
        return {"pixel_values": pixels.pin_memory() if pin else pixels}


class CLIPModel(EncoderModule):
    """Texts -> ``get_text_features``, images -> ``get_image_features``, into ``sentence_embedding``."""

    st_type: ClassVar[str] = "sentence_transformers.models.CLIPModel"
    config_file: ClassVar[str] = "sentence_bert_config.json"
    #: ``ModuleEncoder`` lets images through to a stack whose input module says so.
    accepts_images: ClassVar[bool] = True

    def __init__(self, model: Any, processor: Any, max_seq_length: int | None = None) -> None:
        super().__init__()
        for method in ("get_text_features", "get_image_features"):
            if not callable(getattr(model, method, None)):
                raise ModelLoadError(f"{type(model).__name__} has no {method}(); a CLIPModel module needs an "
                                     "image-text model such as transformers' CLIPModel")
        tokenizer, image_processor = getattr(processor, "tokenizer", None), getattr(processor, "image_processor", None)
        if tokenizer is None or image_processor is None:
            raise ModelLoadError(f"{type(processor).__name__} lacks a tokenizer or an image processor; "
                                 "a CLIP folder needs both (e.g. a CLIPProcessor)")
        self.auto_model = model
        self.processor = processor
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        if max_seq_length is None:
            limits = [getattr(self._text_config(), "max_position_embeddings", None), tokenizer.model_max_length]
            finite = [int(x) for x in limits if isinstance(x, int) and 0 < x < 1_000_000]
            max_seq_length = min(finite) if finite else 77
        self.max_seq_length = int(max_seq_length)

    def _text_config(self) -> Any:
        config = self.auto_model.config
        return getattr(config, "text_config", config)

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
        **_: Any,
    ) -> CLIPModel:
        from transformers import AutoConfig, AutoModel, AutoProcessor

        folder = Path(path)
        if has_pickle_only(folder) and not allow_pickle:
            raise pickle_refused(folder)
        settings_path = folder / cls.config_file
        settings = json.loads(settings_path.read_text(encoding="utf8")) if settings_path.exists() else {}
        try:
            config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code, **(config_kwargs or {}))
            model = AutoModel.from_pretrained(
                folder, config=config, trust_remote_code=trust_remote_code,
                use_safetensors=None if allow_pickle else True, **(model_kwargs or {}),
            )
            processor = AutoProcessor.from_pretrained(
                folder, trust_remote_code=trust_remote_code, **(tokenizer_kwargs or {})
            )
        except ImportError as exc:
            if "PIL" in str(exc) or "Pillow" in str(exc) or getattr(exc, "name", "") == "PIL":
                raise MissingDependencyError("pillow", "images") from exc
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"cannot load a CLIP model and processor from {folder}: {exc}") from exc
        return cls(model.eval(), processor, max_seq_length=settings.get("max_seq_length"))

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"transformer_task": "feature-extraction", "modality_config": _MODALITY_CONFIG,
                                  "module_output_name": "sentence_embedding"}
        if self.max_seq_length != self.tokenizer.model_max_length:  # the default needs no entry
            config["max_seq_length"] = self.max_seq_length
        return config

    def save(self, path: str | Path) -> None:
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.auto_model.save_pretrained(folder)
        self.processor.save_pretrained(folder)
        with open(folder / self.config_file, "w", encoding="utf8") as fh:
            json.dump(self.get_config(), fh, indent=2)

    # -- running ----------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Token ids of texts, padded to the longest (images go through ``image_rows``)."""
        if any(not isinstance(t, str) for t in texts):
            raise InputError("CLIPModel.tokenize takes texts only; encode() splits images from texts for you")
        return dict(self.tokenizer(list(texts), padding=True, truncation="longest_first",
                                   max_length=max_length or self.max_seq_length, return_tensors="pt"))

    def pixel_values(self, images: Sequence[Any]) -> torch.Tensor:
        """Resized, normalised pixels of PIL images or image paths (opened here)."""
        opened = [image if not isinstance(image, (str, os.PathLike)) else open_image(image) for image in images]
        return self.image_processor(images=opened, return_tensors="pt")["pixel_values"]

    def image_rows(self, images: Sequence[Any]) -> ImageRows:
        """What the feed batches images from (see ``ImageRows``)."""
        return ImageRows(list(images), self.pixel_values)

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "pixel_values" in features:
            dtype = next(self.auto_model.parameters()).dtype
            out = self.auto_model.get_image_features(pixel_values=features["pixel_values"].to(dtype))
        else:
            out = self.auto_model.get_text_features(input_ids=features["input_ids"],
                                                    attention_mask=features.get("attention_mask"))
        # transformers < 5 returns the projected tensor, >= 5 an output whose pooler_output it is
        features["sentence_embedding"] = out if isinstance(out, torch.Tensor) else out.pooler_output
        return features

    def get_sentence_embedding_dimension(self) -> int:
        return int(self.auto_model.config.projection_dim)
