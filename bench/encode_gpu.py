"""GPU end-to-end encoding: sentence-transformers' best setting against ours, same device, same run.

Prepared for a machine with a CUDA GPU (not measured from the CPU-only sessions). Texts are
mixed-length real texts (debpkg descriptions and queries, pyfaq), repeated up to ``--texts``.
Lines (JSON): sentence-transformers fp16 batch 256; ours fp16 / bf16 at ``--batch-size``
(length-sorted batches, tokenization in a background thread into pinned memory); and the
model forward alone on pre-tokenized batches, and the feed alone (tokenize + pad + pin, no
model) on both tokenizer paths: the two bounds on what end-to-end can reach.
``--profile`` adds a torch.profiler table of our run (what limits it).

    python bench/encode_gpu.py --texts 100000 --batch-size 1024
    python bench/encode_gpu.py --device cpu --texts 300 --batch-size 64   # smoke test
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
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def mixed_texts(data: Path, n: int) -> list[str]:
    texts: list[str] = []
    for name in ("debpkg/corpus.jsonl", "debpkg/queries.jsonl", "pyfaq/corpus.jsonl", "pyfaq/queries.jsonl"):
        with open(data / name, encoding="utf8") as fh:
            texts += [json.loads(line)["text"] for line in islice(fh, n)]
    return (texts * (n // max(len(texts), 1) + 1))[:n]


def timed(fn, n: int, sync) -> tuple[float, object]:
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return n / (time.perf_counter() - t0), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("SDK_DATA_DIR", REPO.parent / "shared" / "data")))
    parser.add_argument("--texts", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--st-batch-size", type=int, default=256)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from sdk.encoders.dense import DenseEncoder
    from sdk.encoders.loading import default_dense_model

    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    half = torch.float16 if cuda else torch.bfloat16
    model = default_dense_model()
    texts = mixed_texts(args.data, args.texts)
    common = {"device": torch.cuda.get_device_name() if cuda else "cpu", "texts": len(texts)}
    st = SentenceTransformer(model, device=args.device, model_kwargs={"torch_dtype": half})
    ours = DenseEncoder(model, device=args.device, model_kwargs={"torch_dtype": half})
    for enc in (st, ours):
        enc.encode(texts[:2048], batch_size=256)  # warm-up: kernels, allocator
    st_rate, ref = timed(lambda: st.encode(texts, batch_size=args.st_batch_size), len(texts), sync)
    our_rate, emb = timed(lambda: ours.encode(texts, batch_size=args.batch_size), len(texts), sync)
    ref, emb = np.asarray(ref, dtype=np.float32), np.asarray(emb, dtype=np.float32)
    cos = (ref * emb).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(emb, axis=1)

    # forward alone: batches tokenized and on the device beforehand
    from sdk.encoders.feed import batches

    ready = [(i, {k: v.to(args.device) for k, v in f.items()})
             for i, f in batches(texts, args.batch_size, ours.transformer.tokenize, background=False)]

    def forward_only() -> None:
        with torch.inference_mode():
            for _, features in ready:
                for module in ours:
                    features = module(features)

    fwd_rate, _ = timed(forward_only, len(texts), sync)

    # feed alone: what the CPU side delivers with no model (tokenize + pad + pin), both tokenizer paths
    pin_device = torch.device(args.device)

    def feed(ragged) -> None:
        for _ in batches(texts, args.batch_size, ours.transformer.tokenize, device=pin_device, ragged=ragged):
            pass

    feed_fast, _ = timed(lambda: feed(ours.transformer.tokenize_ragged), len(texts), sync)
    feed_hf, _ = timed(lambda: feed(None), len(texts), sync)
    precision = str(half).removeprefix("torch.")
    for line in (
        {"impl": "sentence-transformers", "backend": "torch", "precision": precision, "batch_size": args.st_batch_size,
         "sentences_per_s": round(st_rate, 1), "min_cosine_vs_reference": 1.0},
        {"impl": "retrieval-forge", "backend": "torch", "precision": precision, "batch_size": args.batch_size,
         "sentences_per_s": round(our_rate, 1), "min_cosine_vs_reference": round(float(cos.min()), 5),
         "ratio_vs_reference": round(our_rate / st_rate, 2)},
        {"impl": "retrieval-forge forward only (pre-tokenized)", "backend": "torch", "precision": precision,
         "batch_size": args.batch_size, "sentences_per_s": round(fwd_rate, 1), "min_cosine_vs_reference": None},
        {"impl": "retrieval-forge feed only (Rust tokenizer, numpy padding)", "backend": "tokenizers",
         "precision": None, "batch_size": args.batch_size, "sentences_per_s": round(feed_fast, 1),
         "min_cosine_vs_reference": None},
        {"impl": "retrieval-forge feed only (transformers tokenizer call)", "backend": "tokenizers",
         "precision": None, "batch_size": args.batch_size, "sentences_per_s": round(feed_hf, 1),
         "min_cosine_vs_reference": None},
    ):
        print(json.dumps({**line, **common}), flush=True)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            ours.encode(texts[: min(len(texts), 20_000)], batch_size=args.batch_size)
        key = "cuda_time_total" if cuda else "cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=20), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
