"""``sdk encode``: embed the lines of a text file and report (or save) what came out."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from sdk.core.errors import InputError

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    p = sub.add_parser("encode", help="encode the lines of a text file with a dense model")
    p.add_argument("file", nargs="?", help="text file, one text per line ('-' for stdin; default: a bundled sample)")
    p.add_argument("--model", default=None, help="model folder or hub id (default: all-MiniLM-L6-v2, packaged)")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precision", default="float32", choices=["float32", "int8", "uint8", "binary", "ubinary"])
    p.add_argument("--truncate-dim", type=int, default=None, help="Matryoshka: keep the first N dims")
    p.add_argument("--normalize", action="store_true", help="L2-normalise the output vectors")
    p.add_argument("--prompt-name", default=None, help="use one of the model's prompts (e.g. query)")
    p.add_argument("--output", type=Path, default=None, help="write the embeddings to this .npy file")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(handler=run)


def _read_texts(file: str | None) -> tuple[str, list[str]]:
    if file is None:
        sample = Path(__file__).resolve().parent.parent / "data" / "sample.txt"
        return str(sample), _lines(sample.read_text(encoding="utf8"))
    if file == "-":
        return "<stdin>", _lines(sys.stdin.read())
    path = Path(file)
    if not path.is_file():
        raise InputError(f"{file} is not a readable file; pass a text file with one text per line")
    return file, _lines(path.read_text(encoding="utf8"))


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from sdk.encoders.dense import DenseEncoder

    source, texts = _read_texts(args.file)
    if not texts:
        raise InputError(f"{source} has no non-empty lines to encode")
    t0 = time.perf_counter()
    encoder = DenseEncoder(args.model, device=args.device, truncate_dim=args.truncate_dim)
    t1 = time.perf_counter()
    if args.precision in ("int8", "uint8") and encoder.calibration is None:
        encoder.calibrate(texts, normalize_embeddings=args.normalize)
    emb = encoder.encode(
        texts,
        batch_size=args.batch_size,
        precision=args.precision,
        normalize_embeddings=args.normalize,
        prompt_name=args.prompt_name,
    )
    t2 = time.perf_counter()
    if args.output is not None:
        np.save(args.output, emb)
    report = {
        "source": source,
        "texts": len(texts),
        "model": str(encoder.model_path or args.model),
        "device": str(encoder.device),
        "shape": list(emb.shape),
        "dtype": str(emb.dtype),
        "precision": args.precision,
        "load_s": round(t1 - t0, 3),
        "encode_s": round(t2 - t1, 3),
        "sentences_per_s": round(len(texts) / max(t2 - t1, 1e-9), 1),
        "output": str(args.output) if args.output else None,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"encoded {report['texts']} texts from {source} with {report['model']} on {report['device']}")
    print(f"  embeddings: shape {tuple(emb.shape)}, dtype {emb.dtype}, precision {args.precision}")
    print(f"  time: load {report['load_s']} s, encode {report['encode_s']} s ({report['sentences_per_s']} texts/s)")
    if args.precision == "float32":
        norms = np.linalg.norm(emb, axis=1)
        print(f"  L2 norms: min {norms.min():.4f}, max {norms.max():.4f}")
        if len(texts) > 1:
            sims = encoder.similarity(emb[:1], emb[1:]).numpy()[0]
            best = int(sims.argmax()) + 1
            print(f"  nearest to {texts[0][:50]!r}: {texts[best][:50]!r} (score {sims.max():.3f})")
    for text, row in list(zip(texts, emb, strict=True))[:3]:
        print(f"  {text[:40]!r:44} -> [{', '.join(f'{v:.3f}' if args.precision == 'float32' else str(v) for v in row[:4])}, ...]")
    if args.output:
        print(f"  saved to {args.output}")
    return 0
