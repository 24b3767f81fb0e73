"""backend="onnx" on the real all-MiniLM-L6-v2 over 500+ real texts, and int8 retrieval quality.

fp32 ONNX must equal the torch backend to 1e-4 (max abs diff, normalized embeddings);
per-channel dynamic int8 must keep mean cosine >= 0.99 against fp32 and pyfaq nDCG@10
within 0.01 of fp32. Files are exported into a copy of the model folder, so the packaged
model is left as it was.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from sdk.encoders.dense import DenseEncoder
from sdk.evaluation.beir import load_beir
from sdk.evaluation.metrics import ndcg_at_k
from sdk.util import semantic_search
from tests.encoder_fixtures import read_jsonl

pytestmark = pytest.mark.slow
BATCH = 32


@pytest.fixture(scope="module")
def minilm_copy(minilm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("minilm") / "model"
    shutil.copytree(minilm_path, target, ignore=shutil.ignore_patterns("onnx"))
    return target


@pytest.fixture(scope="module")
def encoders(minilm_copy: Path) -> dict[str, DenseEncoder]:
    return {
        "torch": DenseEncoder(minilm_copy, device="cpu"),
        "onnx": DenseEncoder(minilm_copy, device="cpu", backend="onnx"),
        "int8": DenseEncoder(minilm_copy, device="cpu", backend="onnx", model_kwargs={"quantize": "int8"}),
    }


def test_fp32_equal_and_int8_close_over_real_texts(encoders: dict[str, DenseEncoder], shared_data: Path) -> None:
    texts = [row["text"] for row in read_jsonl(shared_data / "debpkg" / "corpus.jsonl", 520)]
    texts += [row["text"] for row in read_jsonl(shared_data / "pyfaq" / "queries.jsonl", 80)]
    out = {k: e.encode(texts, batch_size=BATCH, normalize_embeddings=True) for k, e in encoders.items()}
    assert np.abs(out["onnx"] - out["torch"]).max() <= 1e-4
    cos = (out["int8"] * out["onnx"]).sum(1)
    print(f"fp32 max abs diff {np.abs(out['onnx'] - out['torch']).max():.2e}; int8 cosine mean {cos.mean():.4f} min {cos.min():.4f}")
    assert cos.mean() >= 0.99, f"int8 mean cosine {cos.mean():.4f} (min {cos.min():.4f})"


def test_int8_keeps_pyfaq_ndcg(encoders: dict[str, DenseEncoder], shared_data: Path) -> None:
    ds = load_beir(shared_data / "pyfaq", "test")
    ids, qids = ds.corpus_ids, list(ds.queries)
    scores = {}
    for name in ("torch", "int8"):
        enc = encoders[name]
        docs = enc.encode([ds.corpus[i] for i in ids], batch_size=BATCH, normalize_embeddings=True)
        queries = enc.encode([ds.queries[q] for q in qids], batch_size=BATCH, normalize_embeddings=True)
        hits = semantic_search(queries, docs, top_k=10)
        run = {q: [ids[h["corpus_id"]] for h in hs] for q, hs in zip(qids, hits, strict=True)}
        scores[name] = ndcg_at_k(run, ds.qrels, 10)
    print(f"pyfaq nDCG@10: {scores}")  # shown with -s; the figure quoted in the issue note
    assert abs(scores["int8"] - scores["torch"]) <= 0.01, scores
