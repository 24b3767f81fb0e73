"""``sdk export onnx|openvino MODEL [--quantize int8]``: write the files the onnx / openvino backends run.

Exporting is what ``backend="onnx"`` / ``"openvino"`` does on first use anyway; doing it ahead
of time (at build or deploy time) keeps the first request fast and lets read-only deployments
ship the files. They are written beside the model (``onnx/model.onnx``,
``onnx/model_qint8_<arch>.onnx``; ``openvino/openvino_model.xml``,
``openvino/openvino_model_qint8_quantized.xml``) unless ``--output`` names another folder.
OpenVINO's int8 is static: ``--calibration FILE`` (texts like those you will encode) sets the
activation ranges.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from sdk.core.errors import InputError

__all__ = ["detect_kind", "register", "run"]

_KINDS = ("auto", "dense", "sparse", "cross")


def register(sub: Any) -> None:
    p = sub.add_parser("export", help="export a model for another backend (ONNX Runtime, OpenVINO)",
                       description="Write a model's ONNX or OpenVINO files next to it (or to --output) for "
                                   "backend='onnx' or backend='openvino'.",
                       epilog="examples:\n  sdk export onnx ./my-model --quantize int8\n"
                              "  sdk export openvino ./my-model --quantize int8 --calibration docs.jsonl",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    formats = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    onnx = formats.add_parser("onnx", help="export to ONNX (fp32, optionally dynamic int8)",
                              description="Export a dense, sparse or cross-encoder folder to ONNX (fp32, optionally "
                                          "per-channel dynamic int8); DenseEncoder(folder, backend='onnx') loads it.",
                              epilog="examples:\n  sdk export onnx ./my-model\n"
                                     "  sdk export onnx ./splade --kind sparse --quantize int8 --output ./splade/onnx",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    onnx.add_argument("--quantize", choices=["int8"], default=None,
                      help="also write the per-channel dynamic int8 file for this CPU")
    openvino = formats.add_parser(
        "openvino", help="export to OpenVINO IR (fp32, optionally static int8)",
        description="Convert a dense, sparse or cross-encoder folder to OpenVINO IR (fp32, optionally static int8 "
                    "calibrated on your texts); DenseEncoder(folder, backend='openvino') loads it.",
        epilog="examples:\n  sdk export openvino ./my-model\n"
               "  sdk export openvino ./my-model --quantize int8 --calibration ./docs.jsonl",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    openvino.add_argument("--quantize", choices=["int8"], default=None,
                          help="also write the static int8 file (NNCF post-training quantization)")
    openvino.add_argument("--calibration", type=Path, default=None,
                          help="texts to calibrate int8 on: .jsonl with 'text' fields or .txt, one per line "
                               "(default: the bundled sample texts; your own documents quantize best)")
    for fmt in (onnx, openvino):
        fmt.add_argument("model", help="model folder or hub id")
        fmt.add_argument("--kind", choices=_KINDS, default="auto",
                         help="encoder type (default: from the folder: fill-mask -> sparse, classification -> cross)")
        fmt.add_argument("--output", type=Path, default=None,
                         help=f"folder for the files (default: <model>/{fmt.prog.split()[-1]})")
        fmt.add_argument("--force", action="store_true", help="re-export even when up-to-date files exist")
        fmt.add_argument("--json", action="store_true", help="print one JSON object instead of text")
        fmt.set_defaults(handler=run)


def detect_kind(folder: Path) -> str:
    """dense, sparse or cross, from the saved manifest or the transformers architecture."""
    from sdk.encoders.loading import read_json

    config = read_json(folder / "config_sentence_transformers.json")
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type in ("SparseEncoder", "CrossEncoder"):
        return "sparse" if model_type == "SparseEncoder" else "cross"
    hf = read_json(folder / "config.json")
    archs = [str(a) for a in (hf.get("architectures") or [])] if isinstance(hf, dict) else []
    if any(a.endswith("ForMaskedLM") for a in archs):
        return "sparse"
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "cross"
    return "dense"


def run(args: argparse.Namespace) -> int:
    from sdk.encoders.backends import transformers_in
    from sdk.encoders.loading import resolve_model_path

    folder = resolve_model_path(args.model)
    kind = detect_kind(folder) if args.kind == "auto" else args.kind
    if getattr(args, "calibration", None) is not None and not args.quantize:
        raise InputError("--calibration sets the int8 activation ranges; add --quantize int8 (or drop --calibration)")
    model_kwargs: dict[str, Any] = {"export": args.force}
    if args.output is not None:
        if args.output.exists() and not args.output.is_dir():
            raise InputError(f"--output {args.output} is a file; pass a folder")
        model_kwargs["export_dir"] = args.output
    backend = args.format
    t0 = time.perf_counter()
    files = [str(t.auto_model.path) for t in transformers_in(list(_load(kind, folder, backend, model_kwargs)))]
    if args.quantize:
        model_kwargs = {**model_kwargs, "quantize": "int8", "export": False}
        if getattr(args, "calibration", None) is not None:
            model_kwargs["calibration"] = args.calibration
        files += [str(t.auto_model.path) for t in transformers_in(list(_load(kind, folder, backend, model_kwargs)))]
    seconds = time.perf_counter() - t0
    report = {"model": str(folder), "kind": kind, "format": backend, "files": files,
              "bytes": [Path(f).stat().st_size for f in files], "seconds": round(seconds, 2)}
    if args.json:
        print(json.dumps(report))
    else:
        for path, size in zip(files, report["bytes"], strict=True):
            print(f"{path}  ({size / 1e6:.1f} MB)")
        print(f"exported a {kind} model in {seconds:.1f}s; load it with backend={backend!r}"
              + (", model_kwargs={'quantize': 'int8'}" if args.quantize else ""))
    return 0


def _load(kind: str, folder: Path, backend: str, model_kwargs: dict[str, Any]) -> Any:
    if kind == "sparse":
        from sdk.encoders.sparse import SparseEncoder

        return SparseEncoder(folder, device="cpu", backend=backend, model_kwargs=model_kwargs)
    if kind == "cross":
        from sdk.encoders.cross_encoder import CrossEncoder

        return CrossEncoder(folder, device="cpu", backend=backend, model_kwargs=model_kwargs)
    from sdk.encoders.dense import DenseEncoder

    return DenseEncoder(folder, device="cpu", backend=backend, model_kwargs=model_kwargs)
