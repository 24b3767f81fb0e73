"""The one place that decides how an encoder's transformer runs: torch (default) or ONNX Runtime.

DenseEncoder, SparseEncoder and CrossEncoder all build their ``LoadOptions``
(``sdk.encoders.options``) with ``split_model_kwargs`` before loading (backend options must
not reach ``from_pretrained``) and call ``apply_backend`` after. For ``backend="onnx"`` every
``Transformer`` module in the stack (inside Router routes too) gets its transformers model
swapped for an ``OrtModel`` (``backends.onnx``) that answers the same call, so pooling, SPLADE
and classification modules run unchanged on either backend; ``backends.pytorch`` holds what
only the torch backend does.

Backend options travel in ``model_kwargs`` like sentence-transformers':

* ONNX: ``file_name`` (e.g. ``"onnx/model_qint8_avx512_vnni.onnx"``), ``quantize="int8"``
  (the per-channel int8 file for this CPU, created on demand), ``export=True`` (re-export),
  ``export_dir`` (for read-only model folders), ``provider`` / ``providers``,
  ``intra_op_num_threads``.
* torch: ``torch_dtype`` / ``dtype`` (``"float16"``, ``"bfloat16"``, a ``torch.dtype``) to run
  in half precision on a GPU; the whole module stack is cast so Dense layers match.

A folder that ships ONNX files and no torch weights (``onnx/model.onnx`` next to config and
tokenizer) loads as a weightless skeleton and runs on ``backend="onnx"`` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sdk.core.errors import CapabilityError, InputError
from sdk.encoders.backends.pytorch import parse_dtype, prepare_torch
from sdk.encoders.modules import Router, Transformer

__all__ = ["BACKENDS", "BackendOptions", "apply_backend", "split_model_kwargs", "transformers_in"]

BACKENDS = ("torch", "onnx")
_ONNX_KEYS = ("file_name", "quantize", "export", "export_dir", "provider", "providers", "intra_op_num_threads")


@dataclass(frozen=True)
class BackendOptions:
    """What ``apply_backend`` needs, parsed and validated once."""

    backend: str = "torch"
    dtype: torch.dtype | None = None
    file_name: str | None = None
    quantize: str | None = None
    export: bool = False
    export_dir: Path | None = None
    providers: tuple[str, ...] | None = None
    threads: int | None = None


def split_model_kwargs(
    backend: str, model_kwargs: dict[str, Any] | None, owner: str
) -> tuple[dict[str, Any], BackendOptions]:
    """Separate backend options from what goes to transformers' ``from_pretrained``."""
    if backend not in BACKENDS:
        raise CapabilityError(f"backend {backend!r} is not available for {owner}; use one of {list(BACKENDS)}")
    kwargs = dict(model_kwargs or {})
    torch_dtype, dtype_kw = kwargs.pop("torch_dtype", None), kwargs.pop("dtype", None)
    dtype = parse_dtype(torch_dtype if torch_dtype is not None else dtype_kw)
    onnx = {key: kwargs.pop(key) for key in _ONNX_KEYS if key in kwargs}
    if backend == "torch":
        if onnx:
            raise InputError(f"model_kwargs {sorted(onnx)} apply to backend='onnx' only; pass backend='onnx'")
        if dtype is not None:
            kwargs["dtype"] = dtype  # load the weights in that precision, no fp32 copy first
        return kwargs, BackendOptions(dtype=dtype)
    if dtype not in (None, torch.float32):
        raise CapabilityError(
            f"backend='onnx' runs float32 or int8 (model_kwargs={{'quantize': 'int8'}}), not {dtype}; "
            "use backend='torch' for float16/bfloat16"
        )
    providers = onnx.get("providers") or onnx.get("provider")
    if isinstance(providers, str):
        providers = (providers,)
    threads = onnx.get("intra_op_num_threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InputError(f"intra_op_num_threads must be a positive integer, got {threads!r}")
    export_dir = onnx.get("export_dir")
    return kwargs, BackendOptions(
        backend="onnx", file_name=onnx.get("file_name"), quantize=onnx.get("quantize"),
        export=bool(onnx.get("export", False)), export_dir=Path(export_dir) if export_dir else None,
        providers=tuple(providers) if providers else None, threads=threads,
    )


def transformers_in(modules: Sequence[Any]) -> list[Transformer]:
    """Every Transformer in a module stack, including those inside Router routes (each once)."""
    found: list[Transformer] = []
    for module in modules:
        module = module[1] if isinstance(module, tuple) else module
        if isinstance(module, Transformer):
            found.append(module)
        elif isinstance(module, Router):
            for route in module.sub_modules.values():
                found.extend(t for t in transformers_in(list(route)) if all(t is not f for f in found))
    return found


def apply_backend(modules: Sequence[Any], options: BackendOptions) -> list[Any]:
    """Prepare a loaded module stack for ``options.backend``; returns the (same) modules."""
    stack = list(modules)
    transformers = transformers_in(stack)
    if options.backend == "torch":
        prepare_torch(stack, transformers, options.dtype)
        return stack
    from sdk.encoders.backends.onnx import prepare_onnx

    if not transformers:
        raise CapabilityError("backend='onnx' needs a Transformer module to export; this stack has none")
    prepare_onnx(transformers, options)
    return stack


def backend_of(module: nn.Module) -> str:
    """'onnx' when any transformer in ``module`` runs on onnxruntime, else 'torch'."""
    from sdk.encoders.backends.onnx import OrtModel

    return "onnx" if any(isinstance(m, OrtModel) for m in module.modules()) else "torch"
