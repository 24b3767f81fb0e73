"""``sdk encode``: embed the lines of a text file and report (or save) what came out.

The input is read and encoded in chunks (a file is counted first so the output can be written
into a ``.npy`` of the right shape as it goes); the output lands exactly at ``--output``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from sdk.core.errors import InputError

__all__ = ["register", "run"]

CHUNK = 1024  # texts per encode call: bounds memory on large inputs
CALIBRATION_SAMPLE = 1000  # texts used to calibrate int8/uint8 when no --calibration file is given

_EXAMPLES = """examples:
  sdk encode                                   encode the bundled sample and describe the vectors
  sdk encode docs.txt --output docs.npy        one text per line -> float32 matrix
  sdk encode docs.txt --precision int8 --calibration sample.txt --output docs_int8.npy
  sdk encode docs.txt --truncate-dim 128 --normalize --json
  cat queries.txt | sdk encode - --prompt-name query --output q.npy
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "encode", help="encode the lines of a text file with a dense model",
        description="Embed a text file (one text per line) with a dense model: float32, Matryoshka-truncated or "
                    "quantized (int8/uint8 with a calibration set, binary). Prints a summary, saves a .npy.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", nargs="?", help="text file, one text per line ('-' for stdin; default: a bundled sample)")
    p.add_argument("--model", default=None, help="model folder or hub id (default: all-MiniLM-L6-v2, packaged)")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    p.add_argument("--backend", default="torch", choices=["torch", "onnx", "openvino", "auto"],
                   help="what runs the model (auto: time each backend on this CPU once, keep the fastest within "
                        "the quality bar; default: torch)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precision", default="float32", choices=["float32", "int8", "uint8", "binary", "ubinary"])
    p.add_argument("--calibration", type=Path, default=None,
                   help="int8/uint8: text file (one text per line) to compute the quantization ranges from "
                        f"(default: the model's saved calibration, else the first {CALIBRATION_SAMPLE} input texts)")
    p.add_argument("--truncate-dim", type=int, default=None, help="Matryoshka: keep the first N dims")
    p.add_argument("--normalize", action="store_true", help="L2-normalise the output vectors")
    p.add_argument("--prompt-name", default=None, help="use one of the model's prompts (e.g. query)")
    p.add_argument("--output", type=Path, default=None, help="write the embeddings to this file (.npy format)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text (no progress bar)")
    p.set_defaults(handler=run)


def _lines(stream: Any) -> Iterator[str]:
    for line in stream:
        line = line.strip()
        if line:
            yield line


def _open_input(file: str | None) -> tuple[str, Any, int | None]:
    """(name, line stream, number of texts when it can be known before reading: files only)."""
    if file == "-":
        return "<stdin>", sys.stdin, None
    path = Path(file) if file is not None else Path(__file__).resolve().parent.parent / "data" / "sample.txt"
    if not path.is_file():
        raise InputError(f"{file} is not a readable file; pass a text file with one text per line")
    try:
        with path.open(encoding="utf8") as counting:
            total = sum(1 for _ in _lines(counting))
        return str(path), path.open(encoding="utf8"), total
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); convert it, "
                         "e.g. iconv -f latin1 -t utf8") from exc


def _check_output(output: Path | None) -> None:
    if output is None:
        return
    if output.is_dir():
        raise InputError(f"--output {output} is a folder; name a file, e.g. {output / 'embeddings.npy'}")
    if not output.parent.is_dir():
        raise InputError(f"the folder of --output {output} does not exist; create it (mkdir -p {output.parent})")


def _calibration_texts(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"--calibration {path} is not a readable file; pass a text file with one text per line")
    with path.open(encoding="utf8") as stream:
        texts = list(_lines(stream))
    if not texts:
        raise InputError(f"--calibration {path} has no non-empty lines")
    return texts


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from sdk.core.progress import progress_bar
    from sdk.encoders.backends import backend_label
    from sdk.encoders.dense import DenseEncoder

    _check_output(args.output)
    source, stream, total = _open_input(args.file)
    texts_iter = _lines(stream)
    head = list(islice(texts_iter, CHUNK))
    if not head:
        raise InputError(f"{source} has no non-empty lines to encode")
    t0 = time.perf_counter()
    encoder = DenseEncoder(args.model, device=args.device, truncate_dim=args.truncate_dim, backend=args.backend)
    t1 = time.perf_counter()
    calibrated = "model"
    if args.precision in ("int8", "uint8"):
        if args.calibration is not None:
            encoder.calibrate(_calibration_texts(args.calibration), normalize_embeddings=args.normalize)
            calibrated = str(args.calibration)
        elif encoder.calibration is None:
            sample = head[:CALIBRATION_SAMPLE]
            encoder.calibrate(sample, normalize_embeddings=args.normalize)
            calibrated = f"first {len(sample)} input texts"
            if not args.json:
                print(f"note: int8/uint8 ranges computed from the {calibrated}; pass --calibration FILE "
                      "to use a representative sample", file=sys.stderr)
    bar = progress_bar(total or 0, "encoding", None if not args.json else False, unit="text")
    parts: list[Any] = []
    first: list[str] = head
    preview: Any = None
    written = 0
    out_array = None
    chunk = head
    try:
        while chunk:
            emb = encoder.encode(chunk, batch_size=args.batch_size, precision=args.precision,
                                 normalize_embeddings=args.normalize, prompt_name=args.prompt_name)
            if args.output is not None and total is not None:  # stream into a .npy of known shape
                if out_array is None:
                    out_array = np.lib.format.open_memmap(args.output, mode="w+", dtype=emb.dtype,
                                                          shape=(total, *emb.shape[1:]))
                out_array[written:written + len(emb)] = emb
            else:
                parts.append(emb)
            written += len(emb)
            bar.update(len(emb))
            if preview is None:
                preview = emb  # the first chunk: for the summary below
            chunk = list(islice(texts_iter, CHUNK))
    finally:
        bar.close()
        if stream is not sys.stdin:
            stream.close()
    t2 = time.perf_counter()
    if out_array is not None:
        out_array.flush()
        shape, dtype = out_array.shape, out_array.dtype
        del out_array
    else:
        full = np.concatenate(parts) if parts else np.empty((0,))
        if args.output is not None:
            with args.output.open("wb") as out:  # exactly this path (np.save(path) would append .npy)
                np.save(out, full)
        shape, dtype = full.shape, full.dtype
    report = {
        "source": source,
        "texts": written,
        "model": str(encoder.model_path or args.model),
        "device": str(encoder.device),
        "backend": backend_label(encoder),
        "shape": list(shape),
        "dtype": str(dtype),
        "precision": args.precision,
        "calibration": calibrated if args.precision in ("int8", "uint8") else None,
        "load_s": round(t1 - t0, 3),
        "encode_s": round(t2 - t1, 3),
        "sentences_per_s": round(written / max(t2 - t1, 1e-9), 1),
        "output": str(args.output) if args.output else None,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"encoded {written} texts from {source} with {report['model']} on {report['device']} "
          f"({report['backend']})")
    print(f"  embeddings: shape {tuple(shape)}, dtype {dtype}, precision {args.precision}")
    print(f"  time: load {report['load_s']} s, encode {report['encode_s']} s ({report['sentences_per_s']} texts/s)")
    if args.precision == "float32":
        norms = np.linalg.norm(preview, axis=1)
        print(f"  L2 norms (first {len(preview)} rows): min {norms.min():.4f}, max {norms.max():.4f}")
        if len(preview) > 1:
            sims = encoder.similarity(preview[:1], preview[1:]).numpy()[0]
            best = int(sims.argmax()) + 1
            print(f"  nearest to {first[0][:50]!r}: {first[best][:50]!r} (score {sims.max():.3f})")
    for text, row in zip(first[:3], preview[:3], strict=True):
        print(f"  {text[:40]!r:44} -> [{', '.join(f'{v:.3f}' if args.precision == 'float32' else str(v) for v in row[:4])}, ...]")
    if args.output:
        print(f"  saved to {args.output}")
    return 0
