"""int8 storage with float rescoring keeps retrieval quality on real data (pyfaq test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sdk.encoders.dense import DenseEncoder
from sdk.evaluation import load_beir, recall_at_k
from sdk.quantization import quantize_embeddings, search_quantized
from sdk.util import semantic_search

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pyfaq(shared_data: Path):
    return load_beir(shared_data / "pyfaq", "test")


@pytest.fixture(scope="module")
def encoded(minilm_path: Path, pyfaq):
    encoder = DenseEncoder(minilm_path, device="cpu")
    doc_ids = pyfaq.corpus_ids
    docs = encoder.encode([pyfaq.corpus[d] for d in doc_ids], batch_size=64)
    qids = list(pyfaq.queries)
    queries = encoder.encode([pyfaq.queries[q] for q in qids])
    return encoder, doc_ids, docs, qids, queries


def _run(results, qids, doc_ids):
    return {q: [doc_ids[h["corpus_id"]] for h in hits] for q, hits in zip(qids, results, strict=True)}


def test_int8_with_rescoring_keeps_99_percent_of_float_recall(encoded, pyfaq) -> None:
    encoder, doc_ids, docs, qids, queries = encoded
    # calibrate on a sample of the corpus (not on the queries being searched)
    cal = encoder.calibrate([pyfaq.corpus[d] for d in doc_ids[::8]])
    float_run = _run(semantic_search(queries, docs, top_k=10), qids, doc_ids)
    codes = quantize_embeddings(docs, "int8", ranges=cal)
    # queries quantized one at a time, exactly as a live search would
    single = np.stack([encoder.encode(pyfaq.queries[q], precision="int8") for q in qids[:20]])
    np.testing.assert_array_equal(single, encoder.encode([pyfaq.queries[q] for q in qids[:20]], precision="int8"))
    int8_run = _run(search_quantized(queries, codes, "int8", ranges=cal, top_k=10, oversampling=4), qids, doc_ids)
    float_recall = recall_at_k(float_run, pyfaq.qrels, 10)
    int8_recall = recall_at_k(int8_run, pyfaq.qrels, 10)
    print(f"pyfaq Recall@10 float32={float_recall:.4f} int8+rescore={int8_recall:.4f}")
    assert float_recall > 0.3
    assert int8_recall >= 0.99 * float_recall


def test_binary_with_rescoring_stays_close(encoded, pyfaq) -> None:
    _, doc_ids, docs, qids, queries = encoded
    float_recall = recall_at_k(_run(semantic_search(queries, docs, top_k=10), qids, doc_ids), pyfaq.qrels, 10)
    codes = quantize_embeddings(docs, "ubinary")
    results = search_quantized(queries, codes, "ubinary", top_k=10, oversampling=10, dim=384)
    binary_recall = recall_at_k(_run(results, qids, doc_ids), pyfaq.qrels, 10)
    print(f"pyfaq Recall@10 float32={float_recall:.4f} binary+rescore(x10)={binary_recall:.4f}")
    assert binary_recall >= 0.85 * float_recall
