"""Encoding throughput: this SDK against sentence-transformers, same model, same texts, same run.

Prints one JSON object per line:
  {"impl", "backend", "precision", "device", "batch_size", "texts", "sentences_per_s", "min_cosine_vs_reference"}
The sentence-transformers line is the reference; ``ratio_vs_reference`` compares throughput.

    python bench/encode.py --texts 2000 --batch-size 32 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from itertools import islice
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def load_texts(data: Path, n: int) -> list[str]:
    with open(data / "debpkg" / "corpus.jsonl", encoding="utf8") as fh:
        return [json.loads(line)["text"] for line in islice(fh, n)]


def best_rate(fn, n: int, repeats: int) -> tuple[float, np.ndarray]:
    """Best-of-N throughput (the machine is shared: the best run is the least disturbed)."""
    best, out = 0.0, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = max(best, n / (time.perf_counter() - t0))
    return best, out


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: packaged all-MiniLM-L6-v2)")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("SDK_DATA_DIR", REPO.parent / "shared" / "data")))
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    import torch
    from sentence_transformers import SentenceTransformer

    from sdk.encoders.dense import DenseEncoder
    from sdk.encoders.loading import default_dense_model

    model = args.model or default_dense_model()
    texts = load_texts(args.data, args.texts)
    common = {"device": args.device, "batch_size": args.batch_size, "texts": len(texts),
              "torch_threads": torch.get_num_threads()}

    st = SentenceTransformer(model, device=args.device)
    ours = DenseEncoder(model, device=args.device)
    st.encode(texts[:64], batch_size=args.batch_size)  # warm-up both
    ours.encode(texts[:64], batch_size=args.batch_size)

    # interleave the two so drifting machine load hits both alike
    ref_rate, ref = best_rate(lambda: st.encode(texts, batch_size=args.batch_size), len(texts), args.repeats)
    our_rate, emb = best_rate(lambda: ours.encode(texts, batch_size=args.batch_size), len(texts), args.repeats)
    rows = [
        {"impl": "sentence-transformers", "backend": "torch", "precision": "float32",
         "sentences_per_s": round(ref_rate, 1), "min_cosine_vs_reference": 1.0, "ratio_vs_reference": 1.0},
        {"impl": "retrieval-forge", "backend": "torch", "precision": "float32",
         "sentences_per_s": round(our_rate, 1), "min_cosine_vs_reference": round(min_cosine(emb, ref), 6),
         "ratio_vs_reference": round(our_rate / ref_rate, 3)},
    ]
    for row in rows:
        print(json.dumps({**row, **common}))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
