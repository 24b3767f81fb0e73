"""Upsert throughput through this SDK vs. the raw client, per engine, in the same run.

10,000 records with a 384-d dense vector and a SPLADE-like sparse vector (~30 active dims of a
30,522 vocabulary, Zipf-distributed term ids, log-normal weights), text and metadata. Both paths
write the same data into a fresh collection with the same schema and batch size; the SDK path
includes everything the SDK adds (validation, uuid5 ids, the metadata guard, retries). Each
engine prints one JSON line::

    {"engine": "qdrant-local", "records": 10000, "raw_rps": ..., "sdk_rps": ..., "ratio": ...,
     "overhead_pct": ...}

``ratio`` is sdk_rps / raw_rps (1.0 = no overhead). Runs alternate raw/SDK ``--repeat`` times and
report the median. Add an engine by adding a function to ``RAW`` and a URL factory to ``URLS``.

    python bench/upsert.py [--records 10000] [--engines qdrant-local,milvus-lite] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from adapters import connect
from adapters._common import point_id
from adapters.base import CollectionSpec, DenseField, PayloadField, SparseField
from sdk.types import Record, SparseVector

DIM, VOCAB, ACTIVE, BATCH = 384, 30_522, 30, 256


def make_data(n: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(n, DIM)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    sparse = []
    for _ in range(n):
        k = int(rng.integers(ACTIVE - 10, ACTIVE + 10))
        idx = np.unique(np.minimum(rng.zipf(1.3, size=k * 2) + 999, VOCAB - 1))[:k]
        sparse.append((idx.astype(np.int64), rng.lognormal(-0.5, 0.6, size=len(idx)).astype(np.float32)))
    ids = [f"doc-{i}" for i in range(n)]
    texts = [f"document {i} " + "lorem ipsum " * 20 for i in range(n)]
    metas = [{"source": f"file-{i % 50}.txt", "chunk": i % 17, "lang": "en"} for i in range(n)]
    return {"ids": ids, "dense": dense, "sparse": sparse, "texts": texts, "metas": metas}


def spec_for(name: str) -> CollectionSpec:
    return CollectionSpec(name, dense=(DenseField("dense", DIM, "cosine"),), sparse=(SparseField("sparse"),),
                          payload=(PayloadField("source"), PayloadField("chunk", "int")), encoder="bench")


def records(data: dict[str, Any]) -> list[Record]:
    return [Record(i, {"dense": d}, {"sparse": SparseVector(tuple(s[0].tolist()), tuple(s[1].tolist()))}, t, m)
            for i, d, s, t, m in zip(data["ids"], data["dense"], data["sparse"], data["texts"], data["metas"],
                                     strict=True)]


# ---- raw clients: what a user would write with the driver alone -------------------------------
def raw_qdrant(url: str, name: str, data: dict[str, Any]) -> float:
    from qdrant_client import QdrantClient, models

    path = url.removeprefix("qdrant+local:")
    client = QdrantClient(location=":memory:") if path == ":memory:" else QdrantClient(path=path)
    client.create_collection(name, vectors_config={"dense": models.VectorParams(size=DIM, distance=models.Distance.COSINE)},
                             sparse_vectors_config={"sparse": models.SparseVectorParams()})
    n = len(data["ids"])
    t0 = time.perf_counter()
    for a in range(0, n, BATCH):
        b = min(a + BATCH, n)
        client.upsert(name, models.Batch(
            ids=[str(uuid.uuid5(uuid.NAMESPACE_URL, i)) for i in data["ids"][a:b]],
            vectors={"dense": data["dense"][a:b].tolist(),
                     "sparse": [models.SparseVector(indices=s[0].tolist(), values=s[1].tolist())
                                for s in data["sparse"][a:b]]},
            payloads=[{"doc_id": i, "text": t, "metadata": m} for i, t, m in
                      zip(data["ids"][a:b], data["texts"][a:b], data["metas"][a:b], strict=True)]), wait=True)
    elapsed = time.perf_counter() - t0
    assert client.count(name).count == n  # noqa: S101 - a benchmark sanity check, not validation
    client.close()
    return elapsed


def raw_milvus(url: str, name: str, data: dict[str, Any]) -> float:
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(uri=url.removeprefix("milvus+lite:"))
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=36)
    schema.add_field("doc_id", DataType.VARCHAR, max_length=65_535)
    schema.add_field("text", DataType.VARCHAR, max_length=65_535)
    schema.add_field("metadata", DataType.JSON)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    index = client.prepare_index_params()
    index.add_index("dense", index_type="FLAT", metric_type="COSINE")
    index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
    n = len(data["ids"])
    t0 = time.perf_counter()
    for a in range(0, n, BATCH):
        b = min(a + BATCH, n)
        rows = [{"pk": str(uuid.uuid5(uuid.NAMESPACE_URL, i)), "doc_id": i, "text": t, "metadata": m,
                 "dense": d.tolist(), "sparse": dict(zip(s[0].tolist(), s[1].tolist(), strict=True))}
                for i, t, m, d, s in zip(data["ids"][a:b], data["texts"][a:b], data["metas"][a:b],
                                         data["dense"][a:b], data["sparse"][a:b], strict=True)]
        client.upsert(name, rows)
    elapsed = time.perf_counter() - t0
    client.drop_collection(name)
    client.close()
    return elapsed


def sdk_upsert(url: str, name: str, data: dict[str, Any]) -> float:
    with connect(url) as db:
        db.ensure_collection(spec_for(name))
        recs = records(data)  # building the neutral values is the caller's side, like the raw arrays
        t0 = time.perf_counter()
        db.upsert(name, recs, batch_size=BATCH)
        elapsed = time.perf_counter() - t0
        assert db.count(name) == len(recs)  # noqa: S101 - benchmark sanity check
        db.drop(name)
    return elapsed


RAW: dict[str, Callable[[str, str, dict[str, Any]], float]] = {
    "qdrant-local": raw_qdrant,
    "milvus-lite": raw_milvus,
}
URLS: dict[str, Callable[[Path], str]] = {
    "qdrant-local": lambda d: "qdrant+local::memory:",
    "milvus-lite": lambda d: f"milvus+lite:{d / 'bench_milvus.db'}",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--engines", default=",".join(RAW))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    data = make_data(args.records)
    _ = point_id  # the SDK's id function; the raw path uses an equivalent uuid5
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines.split(","):
            url = URLS[engine](Path(tmp))
            raw_t, sdk_t = [], []
            for rep in range(args.repeat):
                raw_t.append(RAW[engine](url, f"bench_raw_{rep}", data))
                sdk_t.append(sdk_upsert(url, f"bench_sdk_{rep}", data))
            raw_rps = args.records / statistics.median(raw_t)
            sdk_rps = args.records / statistics.median(sdk_t)
            print(json.dumps({"engine": engine, "records": args.records, "dim": DIM, "batch": BATCH,
                              "raw_rps": round(raw_rps, 1), "sdk_rps": round(sdk_rps, 1),
                              "ratio": round(sdk_rps / raw_rps, 3),
                              "overhead_pct": round(100 * (raw_rps / sdk_rps - 1), 1),
                              "raw_s": [round(t, 3) for t in raw_t], "sdk_s": [round(t, 3) for t in sdk_t]}),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
