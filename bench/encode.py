"""Encoding throughput: this SDK against sentence-transformers, same models, same texts, same run.

Prints one JSON object per line:
  {"impl", "model", "backend", "precision", "device", "batch_size", "texts", "sentences_per_s",
   "min_cosine_vs_reference", "mean_cosine_vs_reference", "ratio_vs_reference"}
For each model family the sentence-transformers line (torch, float32) is the reference, and
every implementation is timed interleaved with it (round-robin, best of ``--repeats``), so
load drifting on a shared machine hits all of them alike.

Families: ``dense`` (all-MiniLM-L6-v2: ours torch / ONNX fp32 / ONNX int8 / OpenVINO fp32 / OpenVINO
static int8 / ``backend="auto"``'s pick; the peer's OpenVINO fp32 and static int8 from its own
environment when ``.venv-peer-openvino`` exists, see scripts/peer_openvino_env.sh), ``sparse``
(SPLADE-tiny, SparseEncoder), ``cross`` (a MiniLM-sized cross-encoder: the MiniLM weights
with a random 1-label head; speed only, the scores mean nothing). ``--ndcg`` adds pyfaq
nDCG@10 for the dense lines (int8 must stay within 0.01 of fp32).

    python bench/encode.py --texts 2000 --batch-size 32 --repeats 3

Every line carries the machine (CPU model, instruction sets that pick the int8 kernels, cores,
threads, runtime versions): ratios from different CPUs differ several-fold and are never
compared blind. Static int8 (OpenVINO, ours and the peer's) is calibrated on 300 debpkg
documents that are not among the timed texts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load_texts(data: Path, n: int) -> list[str]:
    with open(data / "debpkg" / "corpus.jsonl", encoding="utf8") as fh:
        return [json.loads(line)["text"] for line in islice(fh, n)]


def calibration_texts(data: Path, n: int = 300) -> list[str]:
    """The last ``n`` debpkg documents: like the timed texts, never among them."""
    with open(data / "debpkg" / "corpus.jsonl", encoding="utf8") as fh:
        lines = fh.readlines()
    return [json.loads(line)["text"] for line in lines[-n:]]


def interleaved(fns: dict[str, Callable[[], Any]], n: int, repeats: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Best-of-N throughput of each function, run round-robin."""
    best = dict.fromkeys(fns, 0.0)
    outs: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            outs[name] = fn()
            best[name] = max(best[name], n / (time.perf_counter() - t0))
    return best, outs


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (a * b).sum(1)


def emit(rows: list[dict[str, Any]], ref: str, rates: dict[str, float], outs: dict[str, Any],
         common: dict[str, Any], compare: Callable[[Any, Any], dict[str, Any]]) -> None:
    for row in rows:
        key = row.pop("key")
        line = {**row, "sentences_per_s": round(rates[key], 1),
                "ratio_vs_reference": round(rates[key] / rates[ref], 3), **compare(outs[key], outs[ref]), **common}
        print(json.dumps(line), flush=True)


def dense_compare(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    c = cosines(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32))
    return {"min_cosine_vs_reference": round(float(c.min()), 6), "mean_cosine_vs_reference": round(float(c.mean()), 6),
            "max_abs_diff_vs_reference": float(np.abs(np.asarray(a) - np.asarray(b)).max())}


def bench_dense(args: argparse.Namespace, texts: list[str], common: dict[str, Any]) -> None:
    from sentence_transformers import SentenceTransformer

    from sdk.encoders.dense import DenseEncoder
    from sdk.encoders.loading import default_dense_model

    model = args.model or default_dense_model()
    calibration = calibration_texts(args.data)
    st = SentenceTransformer(model, device=args.device)
    impls = {
        "st": st,
        "torch": DenseEncoder(model, device=args.device),
        "onnx": DenseEncoder(model, device=args.device, backend="onnx"),
        "int8": DenseEncoder(model, device=args.device, backend="onnx", model_kwargs={"quantize": "int8"}),
        "openvino": DenseEncoder(model, device=args.device, backend="openvino"),
        "openvino_int8": DenseEncoder(model, device=args.device, backend="openvino",
                                      model_kwargs={"quantize": "int8", "calibration": calibration}),
        "auto": DenseEncoder(model, device=args.device, backend="auto"),
    }
    bs = args.batch_size
    fns = {k: (lambda m=m: m.encode(texts, batch_size=bs)) for k, m in impls.items()}
    for m in impls.values():
        m.encode(texts[:64], batch_size=bs)  # warm-up
    rates, outs = interleaved(fns, len(texts), args.repeats)
    auto_choice = impls["auto"][0].__dict__.get("backend_choice", {}).get("choice", "torch fp32")
    rows = [
        {"key": "st", "impl": "sentence-transformers", "backend": "torch", "precision": "float32"},
        {"key": "torch", "impl": "retrieval-forge", "backend": "torch", "precision": "float32"},
        {"key": "onnx", "impl": "retrieval-forge", "backend": "onnx", "precision": "float32"},
        {"key": "int8", "impl": "retrieval-forge", "backend": "onnx", "precision": "int8"},
        {"key": "openvino", "impl": "retrieval-forge", "backend": "openvino", "precision": "float32"},
        {"key": "openvino_int8", "impl": "retrieval-forge", "backend": "openvino", "precision": "int8 (static)"},
        {"key": "auto", "impl": "retrieval-forge", "backend": f"auto -> {auto_choice}", "precision": "-"},
    ]
    peer = peer_openvino(args, model, texts, calibration)
    for key, row in peer.items():
        rates[key] = row["sentences_per_s"]
        outs[key] = row["embeddings"]
        rows.append({"key": key, "impl": "sentence-transformers", "backend": "openvino",
                     "precision": "int8 (static)" if key.endswith("int8") else "float32",
                     "peer_ratio_vs_its_own_torch_in_process": row["ratio_vs_st_in_process"]})
    if args.ndcg:
        scores = {k: pyfaq_ndcg(impls[k], args.data, bs) for k in ("torch", "onnx", "int8", "openvino", "openvino_int8")}
        for row in rows:
            if row["key"] in scores:
                row["pyfaq_ndcg@10"] = round(scores[row["key"]], 4)
    emit(rows, "st", rates, outs, {"model": "all-MiniLM-L6-v2", **common}, dense_compare)


def peer_openvino(args: argparse.Namespace, model: str, texts: list[str],
                  calibration: list[str]) -> dict[str, dict[str, Any]]:
    """sentence-transformers' OpenVINO fp32 / static int8 timed in its own environment (if set up)."""
    import subprocess

    python = Path(args.peer_python)
    if not python.is_file():
        print(json.dumps({"skipped": "peer OpenVINO lines", "reason": f"{python} missing; run "
                          "scripts/peer_openvino_env.sh"}), flush=True)
        return {}
    work = Path(tempfile.mkdtemp(prefix="peer-ov-bench-"))
    (work / "texts.json").write_text(json.dumps(texts), encoding="utf8")
    (work / "calibration.json").write_text(json.dumps(calibration), encoding="utf8")
    cmd = [str(python), str(REPO / "bench" / "peer_st_openvino.py"), "--model", model, "--texts",
           str(work / "texts.json"), "--calibration", str(work / "calibration.json"), "--batch-size",
           str(args.batch_size), "--repeats", str(args.repeats), "--out", str(work / "out")]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if done.returncode != 0:
        print(json.dumps({"skipped": "peer OpenVINO lines", "reason": done.stderr[-2000:]}), flush=True)
        return {}
    rows = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            if row["key"] != "st":
                row["embeddings"] = np.load(work / "out" / f"{row['key']}.npy")
                rows[row["key"]] = row
    return rows


def pyfaq_ndcg(encoder: Any, data: Path, batch_size: int) -> float:
    from sdk.evaluation.beir import load_beir
    from sdk.evaluation.metrics import ndcg_at_k
    from sdk.util import semantic_search

    ds = load_beir(data / "pyfaq", "test")
    ids = ds.corpus_ids
    docs = encoder.encode([ds.corpus[i] for i in ids], batch_size=batch_size, normalize_embeddings=True)
    qids = list(ds.queries)
    queries = encoder.encode([ds.queries[q] for q in qids], batch_size=batch_size, normalize_embeddings=True)
    hits = semantic_search(queries, docs, top_k=10)
    run = {q: [ids[h["corpus_id"]] for h in hs] for q, hs in zip(qids, hits, strict=True)}
    return ndcg_at_k(run, ds.qrels, 10)


def bench_sparse(args: argparse.Namespace, texts: list[str], common: dict[str, Any]) -> None:
    from sentence_transformers import SparseEncoder as STSparse

    from sdk.encoders.sparse import SparseEncoder, default_sparse_model

    model = default_sparse_model()
    bs = args.batch_size
    st = STSparse(model, device=args.device)
    impls = {
        "st": lambda: st.encode(texts, batch_size=bs, convert_to_sparse_tensor=False).cpu().numpy(),
    }
    ours = {
        "torch": SparseEncoder(model, device=args.device),
        "onnx": SparseEncoder(model, device=args.device, backend="onnx"),
        "int8": SparseEncoder(model, device=args.device, backend="onnx", model_kwargs={"quantize": "int8"}),
    }
    for k, m in ours.items():
        impls[k] = (lambda m=m: m.encode(texts, batch_size=bs, convert_to_tensor=True,
                                         convert_to_sparse_tensor=False).numpy())
    for fn in impls.values():
        fn()  # warm-up (and the first run allocates the big logits buffers)
    rates, outs = interleaved(impls, len(texts), args.repeats)
    rows = [
        {"key": "st", "impl": "sentence-transformers", "backend": "torch", "precision": "float32"},
        {"key": "torch", "impl": "retrieval-forge", "backend": "torch", "precision": "float32"},
        {"key": "onnx", "impl": "retrieval-forge", "backend": "onnx", "precision": "float32"},
        {"key": "int8", "impl": "retrieval-forge", "backend": "onnx", "precision": "int8"},
    ]
    emit(rows, "st", rates, outs, {"model": "SPLADE-tiny (SparseEncoder)", **common}, dense_compare)


def minilm_cross_encoder(folder: Path) -> Path:
    """all-MiniLM-L6-v2's weights under a random 1-label head: a MiniLM-sized reranker."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from sdk.encoders.loading import default_dense_model

    torch.manual_seed(0)
    source = default_dense_model()
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder


def bench_cross(args: argparse.Namespace, texts: list[str], common: dict[str, Any]) -> None:
    from sentence_transformers import CrossEncoder as STCross

    from sdk.encoders.cross_encoder import CrossEncoder

    folder = minilm_cross_encoder(Path(tempfile.mkdtemp(prefix="minilm-ce-")))
    pairs = [(" ".join(t.split()[:8]), t) for t in texts]
    bs = args.batch_size
    st = STCross(str(folder), device=args.device, max_length=256)
    ours = {
        "torch": CrossEncoder(folder, device=args.device, max_length=256),
        "onnx": CrossEncoder(folder, device=args.device, max_length=256, backend="onnx"),
        "int8": CrossEncoder(folder, device=args.device, max_length=256, backend="onnx",
                             model_kwargs={"quantize": "int8"}),
    }
    impls: dict[str, Callable[[], Any]] = {"st": lambda: st.predict(pairs, batch_size=bs)}
    for k, m in ours.items():
        impls[k] = lambda m=m: m.predict(pairs, batch_size=bs)
    for fn in impls.values():
        fn()
    rates, outs = interleaved(impls, len(pairs), args.repeats)

    def compare(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        return {"min_cosine_vs_reference": None, "max_abs_diff_vs_reference": float(np.abs(a - b).max()),
                "score_correlation_vs_reference": round(float(np.corrcoef(a, b)[0, 1]), 6)}

    rows = [
        {"key": "st", "impl": "sentence-transformers", "backend": "torch", "precision": "float32"},
        {"key": "torch", "impl": "retrieval-forge", "backend": "torch", "precision": "float32"},
        {"key": "onnx", "impl": "retrieval-forge", "backend": "onnx", "precision": "float32"},
        {"key": "int8", "impl": "retrieval-forge", "backend": "onnx", "precision": "int8"},
    ]
    emit(rows, "st", rates, outs, {"model": "MiniLM-L6 cross-encoder (random head)", **common}, compare)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="dense model folder (default: packaged all-MiniLM-L6-v2)")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("SDK_DATA_DIR", REPO.parent / "shared" / "data")))
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", default="dense,sparse,cross", help="comma-separated: dense, sparse, cross")
    parser.add_argument("--ndcg", action="store_true", help="add pyfaq nDCG@10 to the dense lines")
    parser.add_argument("--peer-python", default=str(REPO / ".venv-peer-openvino" / "bin" / "python"),
                        help="python of the peer's OpenVINO environment (scripts/peer_openvino_env.sh)")
    args = parser.parse_args(argv)

    import torch

    texts = load_texts(args.data, args.texts)
    from sdk.encoders.backends.machine import machine_info

    common = {"device": args.device, "batch_size": args.batch_size, "texts": len(texts),
              "torch_threads": torch.get_num_threads(), "machine": machine_info()}
    families = {"dense": bench_dense, "sparse": bench_sparse, "cross": bench_cross}
    for name in args.only.split(","):
        families[name.strip()](args, texts, common)
    return 0


if __name__ == "__main__":
    sys.exit(main())
