"""The torch backend: precision (``torch_dtype``) parsing and readying a loaded stack to run on torch.

Torch is the default and needs little: the transformers models already run as loaded. What
is torch-only lives here so the backend choice in ``sdk.encoders.backends`` stays a dispatch:
the half-precision option (the whole stack is cast, so Dense layers match the transformer)
and the refusal of ONNX-only folders, whose transformer is a weightless skeleton.

(Named ``pytorch`` rather than ``torch``: a ``torch`` submodule would be bound as the package
attribute ``torch`` and shadow the real library inside ``sdk.encoders.backends``.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from sdk.core.errors import InputError, ModelLoadError
from sdk.encoders.modules import Transformer
from sdk.encoders.weights import is_weightless

__all__ = ["parse_dtype", "prepare_torch"]

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def parse_dtype(value: Any) -> torch.dtype | None:
    """``torch_dtype`` / ``dtype`` from model_kwargs as a torch.dtype; None (or "auto") keeps the weights' own."""
    if value is None or value == "auto":
        return None
    if isinstance(value, torch.dtype):
        return value
    if isinstance(value, str) and value.removeprefix("torch.") in _DTYPES:
        return _DTYPES[value.removeprefix("torch.")]
    raise InputError(f"torch_dtype must be one of {sorted(_DTYPES)} or a torch.dtype, got {value!r}")


def prepare_torch(stack: Sequence[Any], transformers: Sequence[Transformer], dtype: torch.dtype | None) -> None:
    """Refuse weightless (ONNX-only) transformers and cast the whole stack to ``dtype`` if given."""
    for transformer in transformers:
        if is_weightless(transformer.auto_model):
            folder = transformer.auto_model.name_or_path
            raise ModelLoadError(
                f"{folder} ships ONNX files but no torch weights (model.safetensors); "
                "load it with backend='onnx', or add the safetensors weights to run it on torch"
            )
    if dtype is not None:
        for module in stack:
            (module[1] if isinstance(module, tuple) else module).to(dtype)
