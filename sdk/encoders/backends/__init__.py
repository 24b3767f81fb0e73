"""The one place that decides how an encoder's transformer runs: torch (default), ONNX Runtime or OpenVINO.

DenseEncoder, SparseEncoder and CrossEncoder all build their ``LoadOptions``
(``sdk.encoders.options``) with ``split_model_kwargs`` before loading (backend options must
not reach ``from_pretrained``) and call ``apply_backend`` after. For ``backend="onnx"`` every
``Transformer`` module in the stack (inside Router routes too) gets its transformers model
swapped for an ``OrtModel`` (``backends.onnx``) that answers the same call; for
``backend="openvino"`` for an ``OvModel`` (``backends.openvino``, converted from the same ONNX
export). Both are ``GraphModel``s (``backends.graph``), so pooling, SPLADE and classification
modules run unchanged on any backend; ``backends.pytorch`` holds what only torch does, and
``backends.auto`` times the candidates on this CPU and picks the fastest (``backend="auto"``).

Backend options travel in ``model_kwargs`` like sentence-transformers':

* ONNX: ``file_name`` (e.g. ``"onnx/model_qint8_avx512_vnni.onnx"``), ``quantize="int8"``
  (the per-channel int8 file for this CPU, created on demand), ``export=True`` (re-export),
  ``export_dir`` (for read-only model folders), ``provider`` / ``providers``,
  ``intra_op_num_threads``.
* OpenVINO: ``file_name`` (e.g. ``"openvino/openvino_model_qint8_quantized.xml"``),
  ``quantize="int8"`` (static int8, calibrated with NNCF on ``calibration``: a list of texts or
  a .jsonl/.txt file; the bundled sample texts by default), ``export``, ``export_dir``,
  ``ov_device`` (``"CPU"``), ``ov_config`` (OpenVINO properties), ``intra_op_num_threads``.
* auto: ``calibration``, ``export_dir``, ``intra_op_num_threads`` (see ``backends.auto``).
* torch: ``torch_dtype`` / ``dtype`` (``"float16"``, ``"bfloat16"``, a ``torch.dtype``) to run
  in half precision on a GPU; the whole module stack is cast so Dense layers match.

A folder that ships ONNX files and no torch weights (``onnx/model.onnx`` next to config and
tokenizer) loads as a weightless skeleton and runs on ``backend="onnx"`` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sdk.core.errors import CapabilityError, InputError
from sdk.encoders.backends.pytorch import parse_dtype, prepare_torch
from sdk.encoders.modules import Router, Transformer

__all__ = ["BACKENDS", "BackendOptions", "apply_backend", "backend_arguments", "backend_label", "split_model_kwargs",
           "transformers_in"]

BACKENDS = ("torch", "onnx", "openvino", "auto")
_GRAPH_KEYS = ("file_name", "quantize", "export", "export_dir", "intra_op_num_threads")
_BACKEND_KEYS = {"onnx": _GRAPH_KEYS + ("provider", "providers"),
                 "openvino": _GRAPH_KEYS + ("calibration", "ov_device", "ov_config"),
                 "auto": ("export_dir", "intra_op_num_threads", "calibration")}
_ALL_KEYS = tuple(dict.fromkeys(_BACKEND_KEYS["onnx"] + _BACKEND_KEYS["openvino"]))


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
    calibration: Any = None
    ov_device: str = "CPU"
    ov_config: Mapping[str, Any] | None = None


def split_model_kwargs(
    backend: str, model_kwargs: dict[str, Any] | None, owner: str
) -> tuple[dict[str, Any], BackendOptions]:
    """Separate backend options from what goes to transformers' ``from_pretrained``."""
    if backend not in BACKENDS:
        raise CapabilityError(f"backend {backend!r} is not available for {owner}; use one of {list(BACKENDS)}")
    kwargs = dict(model_kwargs or {})
    torch_dtype, dtype_kw = kwargs.pop("torch_dtype", None), kwargs.pop("dtype", None)
    dtype = parse_dtype(torch_dtype if torch_dtype is not None else dtype_kw)
    graph = {key: kwargs.pop(key) for key in _ALL_KEYS if key in kwargs}
    if backend == "torch":
        if graph:
            raise InputError(f"model_kwargs {sorted(graph)} apply to backend='onnx' or 'openvino' only; "
                             "pass that backend")
        if dtype is not None:
            kwargs["dtype"] = dtype  # load the weights in that precision, no fp32 copy first
        return kwargs, BackendOptions(dtype=dtype)
    foreign = sorted(set(graph) - set(_BACKEND_KEYS[backend]))
    if foreign:
        raise InputError(f"model_kwargs {foreign} do not apply to backend={backend!r}; "
                         f"it takes {sorted(_BACKEND_KEYS[backend])}")
    if dtype not in (None, torch.float32):
        raise CapabilityError(
            f"backend={backend!r} runs float32 or int8 (model_kwargs={{'quantize': 'int8'}}), not {dtype}; "
            "use backend='torch' for float16/bfloat16"
        )
    providers = graph.get("providers") or graph.get("provider")
    if isinstance(providers, str):
        providers = (providers,)
    threads = graph.get("intra_op_num_threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InputError(f"intra_op_num_threads must be a positive integer, got {threads!r}")
    ov_config = graph.get("ov_config")
    if ov_config is not None and not isinstance(ov_config, Mapping):
        raise InputError(f"ov_config must be a dict of OpenVINO properties, got {type(ov_config).__name__}")
    ov_device = graph.get("ov_device", "CPU")
    if not isinstance(ov_device, str) or not ov_device:
        raise InputError(f"ov_device must be an OpenVINO device name such as 'CPU' or 'GPU', got {ov_device!r}")
    export_dir = graph.get("export_dir")
    return kwargs, BackendOptions(
        backend=backend, file_name=graph.get("file_name"), quantize=graph.get("quantize"),
        export=bool(graph.get("export", False)), export_dir=Path(export_dir) if export_dir else None,
        providers=tuple(providers) if providers else None, threads=threads,
        calibration=graph.get("calibration"), ov_device=ov_device, ov_config=dict(ov_config) if ov_config else None,
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


def apply_backend(modules: Sequence[Any], options: BackendOptions, device: Any = None) -> list[Any]:
    """Prepare a loaded module stack for ``options.backend``; returns the (same) modules.

    ``backend="auto"`` on an accelerator is torch (the graph runtimes here are CPU paths)."""
    stack = list(modules)
    transformers = transformers_in(stack)
    if options.backend == "torch" or (options.backend == "auto" and not _on_cpu(device)):
        prepare_torch(stack, transformers, options.dtype)
        return stack
    if options.backend == "auto":
        from sdk.encoders.backends.auto import apply_auto

        apply_auto(stack, transformers, options, prepare_torch)
        return stack
    if not transformers:
        raise CapabilityError(f"backend={options.backend!r} needs a Transformer module to export; this stack has none")
    if options.backend == "openvino":
        from sdk.encoders.backends.openvino import prepare_openvino

        prepare_openvino(transformers, options)
    else:
        from sdk.encoders.backends.onnx import prepare_onnx

        prepare_onnx(transformers, options)
    return stack


def _on_cpu(device: Any) -> bool:
    """Whether the encoder will run on the CPU (the device it asked for, else what ``pick_device`` picks)."""
    if device is None:
        mps = getattr(torch.backends, "mps", None)
        return not (torch.cuda.is_available() or (mps is not None and mps.is_available()))
    try:
        return torch.device(device).type == "cpu"
    except (RuntimeError, TypeError):
        return True  # the encoder refuses the device name itself, with the fix


def backend_of(module: nn.Module) -> str:
    """'onnx' or 'openvino' when a transformer in ``module`` runs on that runtime, else 'torch'."""
    from sdk.encoders.backends.graph import GraphModel

    return next((m.backend for m in module.modules() if isinstance(m, GraphModel)), "torch")


def backend_label(module: nn.Module) -> str:
    """What runs ``module``, reproducibly: ``"torch"``, or ``"onnx:<file>"`` / ``"openvino:<file>"``.

    A sync records it beside the model name so ``sdk search`` (and repairs) load the very same
    path, whatever ``backend="auto"`` would pick on the machine that reads it."""
    from sdk.encoders.backends.graph import GraphModel

    modules = getattr(module, "modules", None)
    if not callable(modules):  # an encoder object of the caller's own: nothing of ours runs it
        return "torch"
    graph = next((m for m in modules() if isinstance(m, GraphModel)), None)
    return "torch" if graph is None else f"{graph.backend}:{graph.path.name}"


def backend_arguments(label: str) -> tuple[str, dict[str, Any]]:
    """``(backend, model_kwargs)`` for a ``backend_label`` or a plain backend name (``"auto"``, ``"onnx"``...)."""
    backend, _, file_name = str(label).partition(":")
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {label!r}; use one of {list(BACKENDS)}")
    return backend, ({"file_name": file_name} if file_name else {})
