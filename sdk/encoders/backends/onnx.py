"""ONNX Runtime backend: export a transformers model with torch.onnx, quantize it, run it.

``OrtModel`` stands in for the transformers model *inside* a ``Transformer`` module: it is
called with the same keyword inputs and returns an output whose ``[0]`` / ``.logits`` /
``.last_hidden_state`` is the same tensor. So tokenization, pooling, SPLADE and
classification code never learn which backend ran; only ``sdk.encoders.backends`` decides,
and ``prepare_onnx`` is what it calls to make the swap.

Files live where sentence-transformers puts them: ``<model>/onnx/model.onnx`` (fp32) and
``<model>/onnx/model_qint8_<arch>.onnx`` (dynamic int8, per-channel weights). A sidecar
``onnx/sdk_export.json`` records the fingerprint of the torch weights each file came from,
so a fine-tuned model saved into the same folder is re-exported instead of silently reusing
a stale graph. Files without a sidecar entry (shipped by the hub) are trusted as they are.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from sdk.core.errors import CapabilityError, InputError, MissingDependencyError, ModelLoadError
from sdk.encoders.backends.graph import (
    EXPORTER,
    OUTPUT_NAMES,
    SIDECAR,
    GraphModel,
    GraphOutput,
    cpu_source,
    current,
    eager_attention,
    export_folder,
    file_digest,
    input_names,
    publish,
    read_sidecar,
    record,
    stale,
    weights_fingerprint,
)
from sdk.encoders.weights import is_weightless, onnx_files

if TYPE_CHECKING:  # pragma: no cover
    from sdk.encoders.backends import BackendOptions
    from sdk.encoders.modules import Transformer

__all__ = [
    "ONNX_FILE",
    "SIDECAR",
    "OrtModel",
    "export_onnx",
    "host_arch",
    "prepare_onnx",
    "quantize_int8",
    "quantized_name",
    "weights_fingerprint",
]

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
OPSET = 17
_QINT8 = re.compile(r"^model_qint8_(arm64|avx2|avx512|avx512_vnni)\.onnx$")


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "onnx") from exc
    return onnxruntime


def host_arch() -> str:
    """The int8 kernel family this CPU runs: names the quantized file like sentence-transformers does."""
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf8", errors="ignore")
    except OSError:
        return "avx2"
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


def quantized_name(arch: str | None = None) -> str:
    return f"model_qint8_{arch or host_arch()}.onnx"


def default_threads() -> int:
    """Intra-op threads: the CPUs this process may use (affinity capped by a cgroup quota), at least 1."""
    from sdk.encoders.pool import available_cpus  # the one place that counts usable CPUs

    return available_cpus()


# -- export and quantization ---------------------------------------------------------------


class _Head(nn.Module):
    """Calls the transformers model with keywords and returns its first output as one tensor."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs, strict=True)), return_dict=True)[0]


def export_onnx(model: nn.Module, tokenizer: Any, target: Path, input_names: tuple[str, ...]) -> Path:
    """Export ``model`` (batch and sequence axes dynamic) to ``target``, atomically.

    The legacy TorchScript exporter is used because the dynamo exporter needs onnxscript,
    which is not a dependency; it leaves the model in training mode, so the previous mode
    is restored before anything else runs on the model.
    """
    dummy = tokenizer(["an example text to trace", "short"], padding=True, return_tensors="pt")
    args = tuple(dummy[name] if name in dummy else torch.zeros_like(dummy["input_ids"]) for name in input_names)
    axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    axes["output"] = {0: "batch"} if _is_pooled(model) else {0: "batch", 1: "sequence"}
    target.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=target.parent)
    os.close(fd)
    try:
        import warnings

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
            with eager_attention(model):
                torch.onnx.export(
                    _Head(model.eval(), input_names), args, tmp, input_names=list(input_names),
                    output_names=["output"], dynamic_axes=axes, opset_version=OPSET, dynamo=False,
                    do_constant_folding=True,
                )
        publish(tmp, target)
    except Exception as exc:
        raise CapabilityError(
            f"torch.onnx could not export {type(model).__name__} ({type(exc).__name__}: {exc}); "
            "use backend='torch' for this model"
        ) from exc
    finally:
        model.train(was_training)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _is_pooled(model: nn.Module) -> bool:
    """Sequence-classification heads return (batch, labels): no sequence axis on the output."""
    return type(model).__name__.endswith("ForSequenceClassification")


def quantize_int8(source: Path, target: Path, arch: str | None = None) -> Path:
    """Dynamic int8 quantization with per-channel weight scales.

    Per-tensor scales (onnxruntime's default) cost too much quality on MiniLM (mean cosine
    0.954 against fp32); one scale per output channel keeps it above 0.99 at the same speed.
    Without VNNI, u8 x s8 products can saturate, so 7-bit weights (``reduce_range``) are used.
    """
    _ort()
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    arch = arch or host_arch()
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=target.parent)
    os.close(fd)
    hint = _DropPreprocessHint()
    logging.getLogger().addFilter(hint)
    try:
        quantize_dynamic(
            str(source), tmp, weight_type=QuantType.QInt8, per_channel=True,
            reduce_range=arch in ("avx2", "avx512"),
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        publish(tmp, target)
    finally:
        logging.getLogger().removeFilter(hint)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


class _DropPreprocessHint(logging.Filter):
    """onnxruntime's quantizer logs a pre-processing hint on the root logger on every call."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def resolve_onnx_file(
    model: nn.Module,
    tokenizer: Any,
    input_names: tuple[str, ...],
    *,
    file_name: str | None = None,
    quantize: str | None = None,
    export_dir: str | Path | None = None,
    force_export: bool = False,
) -> Path:
    """The ONNX file to run: an existing one, or one exported (and quantized) now and cached."""
    if quantize not in (None, "int8", "qint8"):
        raise InputError(f"quantize must be 'int8' or None, got {quantize!r}")
    if file_name is not None and quantize is not None:
        raise InputError("pass either file_name or quantize, not both")
    name = file_name or (quantized_name() if quantize else ONNX_FILE)
    source = Path(str(getattr(model, "name_or_path", "") or ""))
    if file_name is not None:
        candidates = [Path(name).expanduser()] if Path(name).is_absolute() else []
        if source.is_dir():
            candidates += [source / name, source / "onnx" / name]
        if export_dir is not None:
            candidates.append(Path(export_dir).expanduser() / Path(name).name)
        found = next((c for c in candidates if c.is_file()), None)
        base = Path(name).name
        if found is not None and not (force_export and (base == ONNX_FILE or _QINT8.match(base))):
            if not stale(found, model):
                return found
        if base != ONNX_FILE and not _QINT8.match(base):
            raise ModelLoadError(
                f"ONNX file {file_name!r} not found (looked in {[str(c) for c in candidates]}); "
                f"pass an existing file, '{ONNX_FILE}' or '{quantized_name()}' (both are created on demand)"
            )
        name = base
    if is_weightless(model):
        return _shipped_onnx_file(model, source, name, export_dir, force_export)
    fingerprint = weights_fingerprint(model)
    folder = export_folder(model, export_dir, fingerprint, "onnx")
    target = folder / name
    if target.is_file() and not force_export and current(read_sidecar(folder).get(name, {}), fingerprint):
        return target
    fp32 = folder / ONNX_FILE
    if force_export or not fp32.is_file() or not current(read_sidecar(folder).get(ONNX_FILE, {}), fingerprint):
        logger.info("exporting %s to %s", type(model).__name__, fp32)
        export_onnx(model, tokenizer, fp32, input_names)
        record(folder, ONNX_FILE, fingerprint, opset=OPSET, exporter=EXPORTER)
    if name == ONNX_FILE:
        return fp32
    match = _QINT8.match(name)
    quantize_int8(fp32, target, match.group(1) if match else None)
    record(folder, name, fingerprint, quantization="dynamic int8, per-channel weights", exporter=EXPORTER)
    return target


def _shipped_onnx_file(
    model: nn.Module, source: Path, name: str, export_dir: str | Path | None, force_export: bool
) -> Path:
    """The file to run for a folder with ONNX graphs and no torch weights: nothing can be exported.

    ``model.onnx`` must be there; the int8 file is used when shipped, else quantized from it.
    """
    if force_export:
        raise ModelLoadError(
            f"{source} has no torch weights, so its ONNX graph cannot be re-exported; drop export=True"
        )
    places = [source / "onnx", source] + ([Path(export_dir).expanduser()] if export_dir is not None else [])
    found = next((d / name for d in places if (d / name).is_file()), None)
    if found is not None:
        return found
    fp32 = next((d / ONNX_FILE for d in places if (d / ONNX_FILE).is_file()), None)
    if fp32 is None:
        shipped = [str(f.relative_to(source)) for f in onnx_files(source)]
        raise ModelLoadError(
            f"{source} has no torch weights and no {name}; its ONNX files are {shipped or 'none'}: "
            "pick one with model_kwargs={'file_name': ...}, or add model.safetensors to export from"
        )
    digest = file_digest(fp32)
    folder = export_folder(model, export_dir, digest, "onnx")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if not target.is_file():
        match = _QINT8.match(name)
        quantize_int8(fp32, target, match.group(1) if match else None)
        record(folder, name, digest, quantization="dynamic int8, per-channel weights", source="model.onnx")
    return target


# -- the stand-in model ------------------------------------------------------------------------


OrtOutput = GraphOutput  # the name earlier releases exported


class OrtModel(GraphModel):
    """Runs an ONNX file with onnxruntime behind a transformers model's call signature."""

    subdir = "onnx"
    backend = "onnx"

    def __init__(
        self,
        path: Path,
        torch_model: nn.Module,
        providers: tuple[str, ...] | None = None,
        threads: int | None = None,
    ) -> None:
        self.providers = providers
        super().__init__(path, torch_model, threads)

    @property
    def narrow_sessions(self) -> bool:  # type: ignore[override]
        return all(p == "CPUExecutionProvider" for p in self.providers or ())

    def _open(self, threads: int) -> Any:
        ort = _ort()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # torch's thread count by default: one knob (torch.set_num_threads / OMP_NUM_THREADS) for both
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers = list(self.providers or ["CPUExecutionProvider"])
        try:
            session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"onnxruntime cannot load {self.path}: {exc}") from exc
        self._inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        self._output = next((n for n in OUTPUT_NAMES if n in outputs), outputs[0])
        return session

    def _run(self, session: Any, feed: dict[str, np.ndarray]) -> np.ndarray:
        return session.run([self._output], feed)[0]

    def shipped_companions(self) -> Iterator[Path]:
        if self.path.name != ONNX_FILE and (self.path.parent / ONNX_FILE).is_file():
            yield self.path.parent / ONNX_FILE


def ort_model_for(transformer: Transformer, options: BackendOptions) -> OrtModel:
    """An ``OrtModel`` running the file ``options`` pick for ``transformer`` (exported if needed)."""
    model = transformer.auto_model
    path = resolve_onnx_file(
        model, transformer.tokenizer, input_names(transformer), file_name=options.file_name,
        quantize=options.quantize, export_dir=options.export_dir, force_export=options.export,
    )
    return OrtModel(path, cpu_source(model), options.providers, options.threads)


def prepare_onnx(transformers: Sequence[Transformer], options: BackendOptions) -> None:
    """Swap each transformer's model for an ``OrtModel`` running the file ``options`` pick (exported if needed)."""
    for transformer in transformers:
        if not isinstance(transformer.auto_model, OrtModel):
            transformer.auto_model = ort_model_for(transformer, options)
