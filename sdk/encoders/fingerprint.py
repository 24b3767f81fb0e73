"""What identifies the vectors an encoder produces, as one short string collections and the sync ledger store.

Sync re-embeds a whole collection when, and only when, the encoder would now produce different
vectors for the same text. A model name is not enough (a folder can be fine-tuned in place, a
prompt or ``truncate_dim`` changed, a Normalize module dropped), so the fingerprint hashes the
weights themselves (every parameter and buffer, streamed tensor by tensor) together with
everything else that shapes the output: the module stack and each module's saved config, the
transformers config and tokenizer, prompts, similarity, truncation, calibration, the backend
(torch or ONNX, and which ONNX file) and any settings the caller adds. The weight hash is cached
on the encoder and recomputed when a tensor changes (its in-place ``_version`` counter moves).
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sdk.core.errors import InputError

__all__ = ["encoder_fingerprint", "encoder_manifest", "tokenizer_digest", "weights_digest"]

#: Bumped when what the manifest holds changes, so older fingerprints never match by accident.
FORMAT = 1
_CACHE_ATTR = "_sdk_sync_weights_digest"
_BLOCK = 1 << 22  # bytes per hashlib.update when streaming a file
#: transformers config keys that say nothing about the vectors (paths, versions, label names).
_CONFIG_NOISE = frozenset({"transformers_version", "architectures", "id2label", "label2id", "torch_dtype", "dtype"})


def encoder_fingerprint(encoder: nn.Module, **settings: Any) -> str:
    """``"sha256:"`` + 32 hex chars identifying the vectors ``encoder`` produces (see the module docstring).

    ``settings`` are JSON-able extras that also change the stored vectors (``precision="int8"``...).
    Works for DenseEncoder, SparseEncoder and CrossEncoder; the same folder loaded twice gives the
    same fingerprint, on any device.
    """
    manifest = encoder_manifest(encoder, **settings)
    blob = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def encoder_manifest(encoder: nn.Module, **settings: Any) -> dict[str, Any]:
    """The JSON-able description ``encoder_fingerprint`` hashes; diff two of them to see what changed."""
    if not isinstance(encoder, nn.Module) or not callable(getattr(encoder, "named_children", None)):
        raise InputError(
            f"encoder_fingerprint needs a DenseEncoder, SparseEncoder or CrossEncoder, got {type(encoder).__name__}"
        )
    extra = getattr(encoder, "_extra_config", None)
    calibration = getattr(encoder, "calibration", None)
    return {
        "format": FORMAT,
        "encoder": type(encoder).__name__,
        "modules": [_module_entry(name, module) for name, module in encoder.named_children()],
        # the same dict save() writes to config_sentence_transformers.json: prompts, similarity, activation...
        "config": _jsonable(extra() if callable(extra) else {}, "config"),
        "max_seq_length": _jsonable(getattr(encoder, "max_seq_length", None), "max_seq_length"),
        "truncate_dim": _jsonable(getattr(encoder, "truncate_dim", None), "truncate_dim"),
        "calibration": _calibration(calibration),
        "backend": _backend(encoder),
        "weights": weights_digest(encoder),
        "settings": _jsonable(dict(settings), "settings"),
    }


def tokenizer_digest(tokenizer: Any) -> str:
    """A hex sha256 of what decides how a tokenizer splits text: its serialised pipeline (normalizer,
    pre-tokenizer, model, vocabulary, added tokens) or, for a slow tokenizer, its vocabulary.

    Padding and truncation are left out: transformers re-configures them on every call.
    """
    digest = hashlib.sha256()
    try:
        size = len(tokenizer)
    except TypeError:
        size = None
    digest.update(f"size={size}\0".encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and callable(getattr(backend, "to_str", None)):
        data = json.loads(backend.to_str())
        data.pop("truncation", None)
        data.pop("padding", None)
        digest.update(json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    else:
        get_vocab = getattr(tokenizer, "get_vocab", None)
        if not callable(get_vocab):
            raise InputError(f"cannot fingerprint a {type(tokenizer).__name__}: it has neither a Rust backend nor a vocabulary")
        vocab = sorted((str(k), int(v)) for k, v in get_vocab().items())
        digest.update(json.dumps(vocab, ensure_ascii=False).encode("utf-8"))
        digest.update(f"lower={getattr(tokenizer, 'do_lower_case', None)}".encode())
    return digest.hexdigest()


# -- the module stack -------------------------------------------------------------------------


def _module_entry(name: str, module: nn.Module) -> dict[str, Any]:
    """Class name and saved config of one module (Routers: of every module on every route)."""
    from sdk.encoders.modules import CLIPModel, EncoderModule, Router, Transformer

    entry: dict[str, Any] = {"name": name, "type": type(module).__name__}
    if isinstance(module, EncoderModule):
        entry["config"] = _jsonable(module.get_config(), f"{name} config")
    if isinstance(module, CLIPModel):  # how images are resized and normalised shapes the vectors too
        entry["image_processor"] = json.loads(module.image_processor.to_json_string())
    if isinstance(module, (Transformer, CLIPModel)):
        entry["model_config"] = _model_config(module.auto_model)
        entry["tokenizer"] = tokenizer_digest(module.tokenizer)
        entry["truncation_side"] = getattr(module.tokenizer, "truncation_side", None)
    if isinstance(module, Router):
        entry["routes"] = {
            route: [_module_entry(str(i), sub) for i, sub in enumerate(modules)]
            for route, modules in module.sub_modules.items()
        }
    return entry


def _model_config(model: nn.Module) -> dict[str, Any]:
    """The transformers config (activation, layer-norm eps, heads...) without paths and versions."""
    config = getattr(model, "config", None)
    if config is None or not callable(getattr(config, "to_json_string", None)):
        return {}
    data = json.loads(config.to_json_string(use_diff=False))
    return {k: v for k, v in data.items() if not k.startswith("_") and k not in _CONFIG_NOISE}


def _calibration(calibration: Any) -> dict[str, Any] | None:
    if calibration is None:
        return None
    ranges = getattr(calibration, "ranges", None)
    if ranges is None:
        raise InputError(f"the encoder's calibration is a {type(calibration).__name__}, not a Calibration")
    import numpy as np

    data = np.ascontiguousarray(ranges, dtype=np.float32)
    return {"sha256": hashlib.sha256(data.tobytes()).hexdigest(), "shape": list(data.shape),
            "normalized": bool(getattr(calibration, "normalized", False))}


def _graph_models(encoder: nn.Module) -> list[tuple[str, Any]]:
    from sdk.encoders.backends.graph import GraphModel

    return [(name, m) for name, m in encoder.named_modules() if isinstance(m, GraphModel)]


def _backend(encoder: nn.Module) -> dict[str, Any]:
    """torch, or onnx/openvino with the file each transformer runs (the name says fp32 or int8)."""
    graphs = _graph_models(encoder)
    if not graphs:
        return {"name": "torch"}
    return {"name": graphs[0][1].backend, "files": {name: Path(m.path).name for name, m in graphs}}


# -- weights ---------------------------------------------------------------------------------


def _tensors(encoder: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Every parameter, then every buffer, of the stack; plus the torch weights an ONNX model was
    exported from (kept unregistered beside the graph), in a fixed order."""
    from sdk.encoders.weights import is_weightless

    yield from encoder.named_parameters()
    yield from encoder.named_buffers()
    for name, ort in _graph_models(encoder):
        source = ort.__dict__.get("torch_model")
        if source is None or is_weightless(source):
            continue  # an ONNX-only folder: the graph file is hashed instead
        yield from source.named_parameters(prefix=name)  # named as on the torch backend
        yield from source.named_buffers(prefix=name)


def _graph_files(encoder: nn.Module) -> list[tuple[str, Path]]:
    """Graph files (with their backend) that stand in for weights: those of transformers loaded
    without torch weights (an OpenVINO IR is its .xml and its .bin)."""
    from sdk.encoders.weights import is_weightless

    files = []
    for _, graph in _graph_models(encoder):
        source = graph.__dict__.get("torch_model")
        if source is None or is_weightless(source):
            files.extend((graph.backend, Path(file)) for file in graph.files())
    return files


def _cache_key(tensors: list[tuple[str, torch.Tensor]], files: list[tuple[str, Path]]) -> tuple[Any, ...] | None:
    """Identity and in-place version of every tensor (and each graph file's size and mtime);
    None when a tensor has no version counter (inference tensors), which disables the cache."""
    parts: list[Any] = []
    for name, tensor in tensors:
        try:
            version = tensor._version
        except RuntimeError:
            return None
        ptr = 0 if tensor.is_meta else tensor.data_ptr()
        parts.append((name, id(tensor), version, ptr, str(tensor.dtype), tuple(tensor.shape), str(tensor.device)))
    for backend, file in files:
        try:
            info = file.stat()
        except OSError as exc:
            raise InputError(f"cannot read the {backend} file {file} to fingerprint it: {exc.strerror}") from exc
        parts.append((str(file), info.st_size, info.st_mtime_ns))
    return tuple(parts)


def weights_digest(encoder: nn.Module) -> str:
    """A hex sha256 of every tensor's name, dtype, shape and bytes (ONNX-only models: the graph files'
    bytes), cached on ``encoder`` until a tensor is replaced or changed in place."""
    tensors = list(_tensors(encoder))
    files = _graph_files(encoder)
    key = _cache_key(tensors, files)
    cached = encoder.__dict__.get(_CACHE_ATTR)
    if key is not None and cached is not None and cached[0] == key:
        return cached[1]
    digest = hashlib.sha256()
    for name, tensor in tensors:
        _hash_tensor(digest, name, tensor)
    for backend, file in files:
        digest.update(f"{backend}\0{file.name}\0".encode())
        with open(file, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(_BLOCK), b""):
                digest.update(block)
    value = digest.hexdigest()
    if key is not None:
        encoder.__dict__[_CACHE_ATTR] = (key, value)
    return value


def _hash_tensor(digest: Any, name: str, tensor: torch.Tensor) -> None:
    digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
    if tensor.is_meta:
        digest.update(b"meta\0")
        return
    data = tensor.detach()
    if data.layout != torch.strided:
        data = data.to_dense()
    if data.device.type != "cpu":
        data = data.cpu()  # one tensor at a time: never a copy of the whole model
    try:
        raw = data.contiguous().reshape(-1).view(torch.uint8).numpy()
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"cannot read the bytes of tensor {name!r} ({tensor.dtype}) to fingerprint it: {exc}") from exc
    digest.update(f"{raw.nbytes}\0".encode())
    digest.update(memoryview(raw))


# -- settings ----------------------------------------------------------------------------------


def _jsonable(value: Any, where: str) -> Any:
    """``value`` as plain JSON types; anything whose text form could vary between runs is refused."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else repr(value)
    if isinstance(value, enum.Enum):
        return _jsonable(value.value, where)
    if isinstance(value, (os.PathLike, torch.dtype)):
        return str(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise InputError(f"{where}: key {key!r} is a {type(key).__name__}; use string keys")
            out[str(key)] = _jsonable(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    item = getattr(value, "item", None)  # numpy / torch scalars
    if callable(item) and getattr(value, "ndim", None) == 0:
        return _jsonable(item(), where)
    raise InputError(
        f"{where} is a {type(value).__name__}, which has no stable JSON form; "
        "pass strings, numbers, booleans, lists or dicts"
    )
