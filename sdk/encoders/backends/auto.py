"""``backend="auto"``: time every backend and precision on this CPU once, keep the fastest that is exact enough.

Which runtime wins depends on the CPU (ONNX int8 is 3.5x torch on one machine here and 1.6x on
another; OpenVINO's static int8 needs VNNI/AMX to shine). So on first use per machine and model,
a calibration batch (32 texts, the batch size ``encode`` uses) runs through each candidate:
torch fp32, ONNX fp32 / dynamic int8, OpenVINO fp32 / static int8 (those installed). A candidate
counts only when it meets the quality bar against the fp32 reference on the same batch: fp32 paths
must agree to a mean cosine of 0.9999, int8 paths to 0.99 (cosines of the pooled output:
mean-pooled token embeddings, SPLADE's max-pooled log-saturated logits, or the score rows of a
multi-label head; a 1-label head has no cosine, so its int8 paths are not candidates). The fastest
candidate wins, but torch is kept unless the winner is at least ``MARGIN`` faster, so noise never
moves a model off torch for nothing. The choice is cached in ``$SDK_CACHE_DIR/backend-choice.json``
keyed by the CPU's model and instruction sets, the runtimes' versions, the thread count and the
weights' fingerprint, and a log line says what was chosen and why.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from sdk.core.errors import CapabilityError, InputError, ModelLoadError
from sdk.encoders.backends.graph import cpu_source, file_digest, weights_fingerprint
from sdk.encoders.backends.machine import cpu_flags, cpu_model, runtime_versions
from sdk.encoders.weights import is_weightless, onnx_files

if TYPE_CHECKING:  # pragma: no cover
    from sdk.encoders.backends import BackendOptions
    from sdk.encoders.modules import Transformer

__all__ = ["CHOICE_FILE", "MARGIN", "apply_auto", "candidates"]

logger = logging.getLogger(__name__)

CHOICE_FILE = "backend-choice.json"
#: a non-torch path must be this much faster than torch to be chosen
MARGIN = 1.10
FP32_COSINE = 0.9999
INT8_COSINE = 0.99
BATCH = 32
REPEATS = 3


def candidates(weightless: bool) -> list[tuple[str, str | None]]:
    """(backend, quantize) pairs this install can run: torch needs torch weights; the others their runtime."""
    found: list[tuple[str, str | None]] = [] if weightless else [("torch", None)]
    if importlib.util.find_spec("onnxruntime") is not None:
        found += [("onnx", None), ("onnx", "int8")]
    if importlib.util.find_spec("openvino") is not None and importlib.util.find_spec("nncf") is not None:
        found += [("openvino", None), ("openvino", "int8")]
    return found


def _label(backend: str, quantize: str | None) -> str:
    return f"{backend} {'int8' if quantize else 'fp32'}"


# -- the cached choice ------------------------------------------------------------------------------


def _cache_file() -> Path:
    root = Path(os.environ.get("SDK_CACHE_DIR", Path.home() / ".cache" / "retrieval-forge")).expanduser()
    return root / CHOICE_FILE


def _model_identity(transformers: Sequence[Transformer]) -> list[str]:
    ids = []
    for transformer in transformers:
        model = transformer.auto_model
        if is_weightless(model):
            ids.append(file_digest(*onnx_files(Path(str(model.name_or_path)))))
        else:
            ids.append(weights_fingerprint(model))
    return ids


def _key(transformers: Sequence[Transformer], options: BackendOptions, pairs: list[tuple[str, str | None]]) -> str:
    threads = options.threads or torch.get_num_threads()
    basis = {"cpu": cpu_model(), "flags": cpu_flags(), "versions": runtime_versions(), "threads": threads,
             "models": _model_identity(transformers), "candidates": [_label(*p) for p in pairs],
             "calibration": options.calibration if isinstance(options.calibration, (str, Path)) else None}
    return hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _read_choices() -> dict[str, Any]:
    try:
        data = json.loads(_cache_file().read_text(encoding="utf8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_choice(key: str, decision: dict[str, Any]) -> None:
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read_choices()
        data[key] = decision
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".choice-")
        with os.fdopen(fd, "w", encoding="utf8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache costs a re-measurement next time, nothing else
        logger.warning("could not cache the backend choice in %s: %s", path, exc)


# -- measuring --------------------------------------------------------------------------------------


def _features(transformer: Transformer, texts: list[str]) -> dict[str, torch.Tensor]:
    features = transformer.tokenize(texts)
    return {k: features[k] for k in transformer._forward_keys if k in features}


def _view(output: torch.Tensor, mask: torch.Tensor, vocab: int | None) -> np.ndarray | None:
    """What the quality bar compares: one row per text (None when a row has a single number)."""
    out = output.detach().float()
    if out.dim() == 3:
        m = mask.unsqueeze(-1).to(out.dtype)
        if vocab is not None and out.shape[-1] == vocab:  # MLM logits: SPLADE's view of them
            return (torch.log1p(torch.relu(out)) * m).amax(1).numpy()
        return ((out * m).sum(1) / m.sum(1).clamp(min=1)).numpy()
    if out.dim() == 2 and out.shape[1] > 1:
        return out.numpy()
    return None


def _mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    cos = (a * b).sum(1) / np.maximum(na * nb, 1e-12)
    return float(np.where(both_zero, 1.0, cos).mean())


def _build(backend: str, quantize: str | None, transformer: Transformer, options: BackendOptions) -> nn.Module:
    """The model that would run ``transformer`` on that backend (files exported or quantized if needed)."""
    if backend == "torch":
        return cpu_source(transformer.auto_model)
    candidate = replace(options, backend=backend, quantize=quantize)
    if backend == "onnx":
        from sdk.encoders.backends.onnx import ort_model_for

        return ort_model_for(transformer, candidate)
    from sdk.encoders.backends.openvino import ov_model_for

    return ov_model_for(transformer, candidate)


def _timed(models: list[nn.Module], feeds: list[dict[str, torch.Tensor]]) -> tuple[float, list[torch.Tensor]]:
    """Best-of-REPEATS seconds for one pass over every transformer (after one warm-up pass)."""
    outputs: list[torch.Tensor] = []
    best = float("inf")
    with torch.inference_mode():
        for attempt in range(REPEATS + 1):
            started = time.perf_counter()
            outputs = [model(**feed, return_dict=True)[0] for model, feed in zip(models, feeds, strict=True)]
            if attempt:
                best = min(best, time.perf_counter() - started)
    return best, outputs


def _measure(transformers: Sequence[Transformer], options: BackendOptions,
             pairs: list[tuple[str, str | None]]) -> tuple[dict[str, Any], dict[str, list[nn.Module]]]:
    from sdk.encoders.backends.openvino import calibration_texts

    texts = (calibration_texts(options.calibration) * BATCH)[:BATCH]
    feeds = [_features(t, texts) for t in transformers]
    vocabs = [getattr(t.auto_model.config, "vocab_size", None) for t in transformers]
    reference: list[np.ndarray | None] | None = None
    rows: dict[str, dict[str, Any]] = {}
    built: dict[str, list[nn.Module]] = {}
    for backend, quantize in pairs:
        label = _label(backend, quantize)
        try:
            models = [_build(backend, quantize, t, options) for t in transformers]
            seconds, outputs = _timed(models, feeds)
        except (CapabilityError, ModelLoadError, InputError) as exc:
            rows[label] = {"skipped": str(exc)}
            continue
        views = [_view(o, f["attention_mask"], v) for o, f, v in zip(outputs, feeds, vocabs, strict=True)]
        if reference is None:  # the first candidate is exact fp32: torch, or ONNX fp32 for graph-only folders
            reference = views
        if quantize and any(v is None for v in views):
            rows[label] = {"skipped": "a 1-label head has no cosine to check int8 against"}
            continue
        cosine = min((_mean_cosine(v, r) for v, r in zip(views, reference, strict=True)
                      if v is not None and r is not None), default=1.0)
        bar = INT8_COSINE if quantize else FP32_COSINE
        rows[label] = {"texts_per_s": round(len(texts) / seconds, 1), "mean_cosine": round(cosine, 5),
                       "passes": cosine >= bar}
        if cosine >= bar:
            built[label] = models
    return rows, built


def _pick(rows: dict[str, dict[str, Any]]) -> str:
    passing = {label: row["texts_per_s"] for label, row in rows.items() if row.get("passes")}
    if not passing:
        raise CapabilityError("backend='auto' found no backend that runs this model; try backend='torch' for the "
                              f"error it gives (measured: {rows})")
    best = max(passing, key=passing.__getitem__)
    torch_rate = passing.get("torch fp32")
    if torch_rate is not None and passing[best] < torch_rate * MARGIN:
        return "torch fp32"
    return best


def apply_auto(stack: list[Any], transformers: Sequence[Transformer], options: BackendOptions,
               prepare_torch: Callable[..., None]) -> dict[str, Any]:
    """Run ``transformers`` on the fastest backend this CPU measured (cached); returns the decision."""
    if not transformers:
        prepare_torch(stack, transformers, None)
        return {"choice": "torch fp32", "reason": "no transformer to run elsewhere"}
    weightless = any(is_weightless(t.auto_model) for t in transformers)
    pairs = candidates(weightless)
    key = _key(transformers, options, pairs)
    cached = _read_choices().get(key)
    label = cached.get("choice") if isinstance(cached, dict) else None
    if label in {_label(*p) for p in pairs}:
        decision = dict(cached, cached=True)
        backend, precision = label.split()
        quantize = "int8" if precision == "int8" else None
        models = [_build(backend, quantize, t, options) for t in transformers]
    else:
        rows, built = _measure(transformers, options, pairs)
        label = _pick(rows)
        models = built[label]
        decision = {"choice": label, "measured": rows, "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "cpu": cpu_model(), "flags": cpu_flags(), "threads": options.threads or torch.get_num_threads()}
        _write_choice(key, decision)
        decision = dict(decision, cached=False)
    for transformer, model in zip(transformers, models, strict=True):
        transformer.auto_model = model
    if label == "torch fp32":
        prepare_torch(stack, transformers, None)
    rates = {k: v.get("texts_per_s") for k, v in decision.get("measured", {}).items() if v.get("texts_per_s")}
    logger.info("backend='auto' runs %s on %s (%s%s): %s", transformers[0].auto_model.name_or_path or "the model",
                label, cpu_model(), ", cached choice" if decision["cached"] else "",
                ", ".join(f"{k} {v}/s" for k, v in rates.items()))
    for transformer in transformers:
        transformer.__dict__["backend_choice"] = decision
    return decision
