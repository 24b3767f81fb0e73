"""OpenVINO backend: convert our ONNX graph to OpenVINO IR, quantize it statically to int8 (NNCF), run it.

``OvModel`` is a ``GraphModel``: it stands in for the transformers model inside a
``Transformer`` module exactly as the ONNX backend's ``OrtModel`` does, so pooling, SPLADE and
classification heads run unchanged.

Files live where sentence-transformers puts them: ``<model>/openvino/openvino_model.xml`` (+
``.bin``; fp32) and ``<model>/openvino/openvino_model_qint8_quantized.xml`` (static int8). The
fp32 IR is converted from the ONNX export (``onnx/model.onnx``, made on demand), so one export
path serves both runtimes. Static int8 needs calibration text: the activations' ranges are
measured on it once (NNCF post-training quantization, transformer preset with SmoothQuant), so
a calibration set from the user's own documents quantizes best; without one, the bundled sample
texts are used. The sidecar ``openvino/sdk_export.json`` records the weights each file came
from and the calibration set's digest.

OpenVINO's CPU plugin runs in bfloat16 on CPUs that have it unless told otherwise; we always ask
for f32 inference (fp32 parity with torch, and int8 kernels where the graph was quantized);
``ov_config`` overrides any property.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from sdk.core.errors import CapabilityError, InputError, MissingDependencyError, ModelLoadError
from sdk.core.textfiles import read_texts
from sdk.encoders.backends.graph import (
    EXPORTER,
    OUTPUT_NAMES,
    GraphModel,
    cpu_source,
    current,
    export_folder,
    file_digest,
    input_names,
    read_sidecar,
    record,
    stale,
    weights_fingerprint,
)
from sdk.encoders.backends.onnx import ONNX_FILE, _shipped_onnx_file, resolve_onnx_file
from sdk.encoders.weights import is_weightless

if TYPE_CHECKING:  # pragma: no cover
    from sdk.encoders.backends import BackendOptions
    from sdk.encoders.modules import Transformer

__all__ = ["OV_FILE", "OV_INT8_FILE", "OvModel", "calibration_texts", "prepare_openvino", "resolve_openvino_file"]

logger = logging.getLogger(__name__)

OV_FILE = "openvino_model.xml"
OV_INT8_FILE = "openvino_model_qint8_quantized.xml"
SUBDIR = "openvino"
_SAMPLES = Path(__file__).resolve().parents[2] / "data"
#: NNCF measures activation ranges on at most this many calibration texts (its own default subset)
MAX_CALIBRATION = 300


def _ov() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise MissingDependencyError("openvino", "openvino") from exc
    return openvino


def _bin(xml: Path) -> Path:
    return xml.with_suffix(".bin")


# -- calibration ---------------------------------------------------------------------------------


def calibration_texts(calibration: str | Path | Iterable[str] | None) -> list[str]:
    """The texts static int8 is calibrated on: a list of texts, a file (``.jsonl`` with ``text``
    fields, else one text per line), or None for the bundled sample texts."""
    if calibration is None:
        texts = read_texts(_SAMPLES / "sample_corpus.jsonl") + read_texts(_SAMPLES / "sample.txt")
    elif isinstance(calibration, (str, Path)):
        path = Path(calibration).expanduser()
        if not path.is_file():
            raise InputError(f"calibration file {path} does not exist; pass a .jsonl (with 'text' fields) "
                             "or .txt file (one text per line), or a list of texts")
        texts = read_texts(path)
    else:
        texts = list(calibration)
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise InputError(f"calibration texts must be strings; item {bad} is {type(texts[bad]).__name__}")
    texts = [t for t in texts if t.strip()][:MAX_CALIBRATION]
    if not texts:
        raise InputError("the calibration set has no non-empty text; pass texts like those you will encode")
    return texts


def _calibration_digest(texts: Sequence[str]) -> str:
    return hashlib.sha256("\x00".join(texts).encode("utf8", "surrogatepass")).hexdigest()[:16]


# -- conversion and quantization -----------------------------------------------------------------


def _save_ir(model: Any, target: Path) -> None:
    """Write ``target`` (.xml + .bin) atomically enough: both to temp names, then moved into place."""
    ov = _ov()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ov-", dir=target.parent))
    try:
        ov.save_model(model, str(tmp / target.name), compress_to_fp16=False)
        os.replace(tmp / _bin(target).name, _bin(target))
        os.replace(tmp / target.name, target)  # the .xml last: its presence means both are there
    finally:
        for leftover in tmp.iterdir():
            leftover.unlink()
        tmp.rmdir()


def convert_onnx(onnx_path: Path, target: Path) -> Path:
    """OpenVINO IR (fp32 weights) from an ONNX graph."""
    ov = _ov()
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:  # OpenVINO raises its own untyped errors
        raise CapabilityError(f"OpenVINO could not convert {onnx_path} ({type(exc).__name__}: {exc}); "
                              "use backend='onnx' or backend='torch' for this model") from exc
    _save_ir(model, target)
    return target


def quantize_static_int8(source: Path, target: Path, transformer: Transformer, texts: Sequence[str]) -> Path:
    """Static int8 IR: NNCF measures activation ranges on ``texts`` (tokenized one by one, as served)."""
    ov = _ov()
    try:
        import nncf
    except ImportError as exc:
        raise MissingDependencyError("nncf", "openvino") from exc
    model = ov.Core().read_model(str(source))
    names = [p.get_any_name() for p in model.inputs]

    def feed(text: str) -> dict[str, np.ndarray]:
        features = transformer.tokenize([text])
        out = {}
        for name in names:
            value = features.get(name)
            out[name] = (value if value is not None else torch.zeros_like(features["input_ids"])).numpy().astype(np.int64)
        return out

    dataset = nncf.Dataset([feed(t) for t in texts])
    try:
        # NNCF draws progress bars on stdout, which `sdk encode` may be streaming vectors to
        with contextlib.redirect_stdout(sys.stderr):
            quantized = nncf.quantize(model, dataset, model_type=nncf.ModelType.TRANSFORMER,
                                      subset_size=len(texts))
    except Exception as exc:  # NNCF's own errors
        raise CapabilityError(f"NNCF could not quantize {source} to int8 ({type(exc).__name__}: {exc}); "
                              "run the fp32 OpenVINO file or backend='onnx' with quantize='int8'") from exc
    _save_ir(quantized, target)
    return target


def resolve_openvino_file(
    transformer: Transformer,
    input_names: tuple[str, ...],
    *,
    file_name: str | None = None,
    quantize: str | None = None,
    calibration: Any = None,
    export_dir: str | Path | None = None,
    force_export: bool = False,
) -> Path:
    """The IR file to run: an existing one, or one converted (and quantized) now and cached."""
    model = transformer.auto_model
    if quantize not in (None, "int8", "qint8", "static_int8"):
        raise InputError(f"quantize must be 'int8' (static, calibrated) or None, got {quantize!r}")
    if file_name is not None and quantize is not None:
        raise InputError("pass either file_name or quantize, not both")
    name = file_name or (OV_INT8_FILE if quantize else OV_FILE)
    source = Path(str(getattr(model, "name_or_path", "") or ""))
    base = Path(name).name
    if file_name is not None:
        candidates = [Path(name).expanduser()] if Path(name).is_absolute() else []
        if source.is_dir():
            candidates += [source / name, source / SUBDIR / name]
        if export_dir is not None:
            candidates.append(Path(export_dir).expanduser() / base)
        found = next((c for c in candidates if c.is_file() and _bin(c).is_file()), None)
        if found is not None and not (force_export and base in (OV_FILE, OV_INT8_FILE)) and not stale(found, model):
            return found
        if base not in (OV_FILE, OV_INT8_FILE):
            raise ModelLoadError(
                f"OpenVINO file {file_name!r} not found (looked in {[str(c) for c in candidates]}; an .xml needs its "
                f".bin beside it); pass an existing file, '{OV_FILE}' or '{OV_INT8_FILE}' (both are created on demand)"
            )
    if is_weightless(model):
        if force_export:
            raise ModelLoadError(f"{source} has no torch weights, so it cannot be re-exported; drop export=True")
        onnx = _shipped_onnx_file(model, source, ONNX_FILE, export_dir, False)
        fingerprint = file_digest(onnx)
    else:
        onnx = None
        fingerprint = weights_fingerprint(model)
    folder = export_folder(model, export_dir, fingerprint, SUBDIR)
    target = folder / base
    texts = calibration_texts(calibration) if base == OV_INT8_FILE else []
    wanted = _calibration_digest(texts) if calibration is not None and texts else None
    info = read_sidecar(folder).get(base, {})
    if target.is_file() and _bin(target).is_file() and not force_export and current(info, fingerprint) \
            and (wanted is None or info.get("calibration") in (None, wanted)):
        return target
    fp32 = folder / OV_FILE
    if force_export or not (fp32.is_file() and _bin(fp32).is_file()) \
            or not current(read_sidecar(folder).get(OV_FILE, {}), fingerprint):
        if onnx is None:
            onnx = resolve_onnx_file(model, transformer.tokenizer, input_names, export_dir=export_dir,
                                     force_export=force_export)
        logger.info("converting %s to OpenVINO IR at %s", onnx, fp32)
        convert_onnx(onnx, fp32)
        record(folder, OV_FILE, fingerprint, source=str(Path(onnx).name), exporter=EXPORTER)
    if base == OV_FILE:
        return fp32
    logger.info("quantizing %s to static int8 on %d calibration texts", fp32, len(texts))
    quantize_static_int8(fp32, target, transformer, texts)
    record(folder, base, fingerprint, quantization="static int8 (NNCF, transformer preset)", exporter=EXPORTER,
           calibration=_calibration_digest(texts), calibration_texts=len(texts))
    return target


# -- the stand-in model ----------------------------------------------------------------------------


class OvModel(GraphModel):
    """Runs an OpenVINO IR file behind a transformers model's call signature.

    One compiled model, one infer request per calling thread (requests are not thread-safe,
    compiled models are).
    """

    subdir = SUBDIR
    backend = "openvino"

    def __init__(
        self,
        path: Path,
        torch_model: nn.Module,
        device: str = "CPU",
        config: Mapping[str, Any] | None = None,
        threads: int | None = None,
    ) -> None:
        self.ov_device = device
        self.ov_config = dict(config or {})
        self._local = threading.local()
        super().__init__(path, torch_model, threads)

    def _open(self, threads: int, streams: int = 1) -> Any:
        ov = _ov()
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                                  "INFERENCE_NUM_THREADS": threads}
        if streams > 1:  # one CPU thread per stream, each stream runs its own request
            config.update({"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams})
        config.update(self.ov_config)
        if self.ov_device != "CPU":
            config.pop("INFERENCE_NUM_THREADS", None)
        try:
            compiled = ov.Core().compile_model(str(self.path), self.ov_device, config)
        except Exception as exc:  # OpenVINO raises its own untyped errors
            raise ModelLoadError(f"OpenVINO cannot load {self.path} on {self.ov_device}: {exc}") from exc
        self._inputs = [p.get_any_name() for p in compiled.inputs]
        outputs = [o.get_any_name() for o in compiled.outputs]
        self._output = next((n for n in OUTPUT_NAMES if n in outputs), outputs[0])
        return compiled

    @property
    def narrow_sessions(self) -> bool:  # type: ignore[override]
        return self.ov_device == "CPU"

    def _open_streams(self, n: int) -> Any:
        """A compiled model runs one request per stream: ``n`` streams of one thread each."""
        return self._open(n, streams=n)

    def _run(self, session: Any, feed: dict[str, np.ndarray]) -> np.ndarray:
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        request = requests.get(id(session))
        if request is None:
            request = requests[id(session)] = session.create_infer_request()
        request.infer(feed)
        return np.array(request.get_tensor(self._output).data, copy=True)

    def files(self) -> list[Path]:
        return [self.path, _bin(self.path)]

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_local"] = None  # thread-locals do not pickle; a fresh one comes with the session
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state["_local"] = threading.local()
        super().__setstate__(state)


def ov_model_for(transformer: Transformer, options: BackendOptions) -> OvModel:
    """An ``OvModel`` running the file ``options`` pick for ``transformer`` (converted/quantized if needed)."""
    path = resolve_openvino_file(
        transformer, input_names(transformer), file_name=options.file_name, quantize=options.quantize,
        calibration=options.calibration, export_dir=options.export_dir, force_export=options.export,
    )
    return OvModel(path, cpu_source(transformer.auto_model), options.ov_device, options.ov_config, options.threads)


def prepare_openvino(transformers: Sequence[Transformer], options: BackendOptions) -> None:
    """Swap each transformer's model for an ``OvModel`` running the file ``options`` pick (made if needed)."""
    _ov()  # a missing runtime is named before anything is exported
    for transformer in transformers:
        model = transformer.auto_model
        if isinstance(model, OvModel):
            continue
        if isinstance(model, GraphModel):
            raise CapabilityError(f"this transformer already runs on backend={model.backend!r}; load the model again "
                                  "with backend='openvino'")
        transformer.auto_model = ov_model_for(transformer, options)
