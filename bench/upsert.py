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
from adapters.base import CollectionSpec, DenseField, PayloadField, SparseField
from adapters.ids import point_id
from sdk.core.types import Record, SparseVector

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


# ---- pgvector and Weaviate ------------------------------------------------------------------------
# Added by the pgvector/Weaviate adapter work: raw-client paths, URL factories, and (Weaviate has no
# user-supplied sparse vectors) a dense + text + payload SDK path for Weaviate. Registered by one call,
# ``register_pgvector_weaviate()``, below.
def _engine_url(env: str, default: str) -> str:
    import os

    return os.environ.get(env, default)


def raw_pgvector(url: str, name: str, data: dict[str, Any]) -> float:
    """psycopg 3 + pgvector-python: ``executemany`` of INSERT ... ON CONFLICT per batch in a transaction,
    into a table with the columns and indexes the SDK creates (HNSW cosine, GIN on the payload)."""
    import psycopg
    from pgvector import SparseVector as PgSparse
    from pgvector import Vector
    from pgvector.psycopg import register_vector
    from psycopg.types.json import Jsonb

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(f"CREATE TABLE {name} (id uuid PRIMARY KEY, doc_id text NOT NULL, text text, "
                     f"metadata jsonb NOT NULL, dense vector({DIM}), sparse sparsevec(1000000000))")
        conn.execute(f"CREATE INDEX ON {name} USING hnsw (dense vector_cosine_ops) WITH (m = 16, ef_construction = 100)")
        conn.execute(f"CREATE INDEX ON {name} USING gin (metadata jsonb_path_ops)")
        stmt = (f"INSERT INTO {name} (id, doc_id, text, metadata, dense, sparse) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET doc_id = EXCLUDED.doc_id, text = EXCLUDED.text, "
                "metadata = EXCLUDED.metadata, dense = EXCLUDED.dense, sparse = EXCLUDED.sparse")
        n = len(data["ids"])
        t0 = time.perf_counter()
        for a in range(0, n, BATCH):
            b = min(a + BATCH, n)
            rows = [(str(uuid.uuid5(uuid.NAMESPACE_URL, i)), i, t, Jsonb(m), Vector(d),
                     PgSparse(dict(zip(s[0].tolist(), s[1].tolist(), strict=True)), 1_000_000_000))
                    for i, t, m, d, s in zip(data["ids"][a:b], data["texts"][a:b], data["metas"][a:b],
                                             data["dense"][a:b], data["sparse"][a:b], strict=True)]
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(stmt, rows)
        elapsed = time.perf_counter() - t0
        conn.execute(f"DROP TABLE {name}")
    return elapsed


def _weaviate_client(url: str) -> Any:
    from urllib.parse import parse_qs, urlsplit

    import weaviate

    parts = urlsplit(url)
    return weaviate.connect_to_custom(http_host=parts.hostname, http_port=parts.port or 8080, http_secure=False,
                                      grpc_host=parts.hostname, grpc_port=int(parse_qs(parts.query)["grpc"][0]),
                                      grpc_secure=False)


def raw_weaviate(url: str, name: str, data: dict[str, Any]) -> float:
    """weaviate-client v4: ``insert_many`` per batch (errors checked) of the dense vector, text and payload.
    Weaviate stores no user-supplied sparse vectors, so neither path writes them."""
    from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances
    from weaviate.classes.data import DataObject

    client = _weaviate_client(url)
    cls = name[0].upper() + name[1:]
    if client.collections.exists(cls):
        client.collections.delete(cls)
    coll = client.collections.create(
        cls,
        vector_config=[Configure.Vectors.self_provided(
            name="dense", vector_index_config=Configure.VectorIndex.hnsw(
                distance_metric=VectorDistances.COSINE, max_connections=16, ef_construction=100))],  # = the SDK's
        # The same inverted indexes as the SDK's collection, so both sides index the same things.
        properties=[Property(name="doc_id", data_type=DataType.TEXT, tokenization=Tokenization.FIELD,
                             index_searchable=False),
                    Property(name="text", data_type=DataType.TEXT, tokenization=Tokenization.WORD, index_filterable=False),
                    Property(name="payload", data_type=DataType.TEXT, index_filterable=False, index_searchable=False),
                    Property(name="source", data_type=DataType.TEXT, tokenization=Tokenization.FIELD,
                             index_searchable=False),
                    Property(name="chunk", data_type=DataType.INT)],
    )
    n = len(data["ids"])
    t0 = time.perf_counter()
    for a in range(0, n, BATCH):
        b = min(a + BATCH, n)
        objs = [DataObject(uuid=uuid.uuid5(uuid.NAMESPACE_URL, i),
                           properties={"doc_id": i, "text": t, "payload": json.dumps(m), "source": m["source"],
                                       "chunk": m["chunk"]},
                           vector={"dense": d})
                for i, t, m, d in zip(data["ids"][a:b], data["texts"][a:b], data["metas"][a:b], data["dense"][a:b],
                                      strict=True)]
        result = coll.data.insert_many(objs)
        if result.errors:
            raise RuntimeError(f"raw insert_many refused objects: {list(result.errors.values())[:2]}")
    elapsed = time.perf_counter() - t0
    client.collections.delete(cls)
    client.close()
    return elapsed


def sdk_weaviate(url: str, name: str, data: dict[str, Any]) -> float:
    """The SDK path for Weaviate: ``spec_for`` without its sparse field (Weaviate refuses one)."""
    full = spec_for(name)
    spec = CollectionSpec(name, dense=full.dense, payload=full.payload, encoder=full.encoder)
    with connect(url) as db:
        db.ensure_collection(spec)
        recs = [Record(r.id, r.vectors, {}, r.text, r.metadata) for r in records(data)]
        t0 = time.perf_counter()
        db.upsert(name, recs, batch_size=BATCH)
        elapsed = time.perf_counter() - t0
        assert db.count(name) == len(recs)  # noqa: S101 - benchmark sanity check
        db.drop(name)
    return elapsed


def register_pgvector_weaviate() -> None:
    """Add pgvector and Weaviate (servers from ``scripts/engines.sh``; URLs from the same environment
    variables as the integration tests) to the engines ``main`` runs."""
    global sdk_upsert
    RAW["pgvector"] = raw_pgvector
    URLS["pgvector"] = lambda d: _engine_url("SDK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/sdk")
    RAW["weaviate"] = raw_weaviate
    URLS["weaviate"] = lambda d: _engine_url("SDK_TEST_WEAVIATE_URL", "weaviate://127.0.0.1:8080?grpc=50051")
    generic = sdk_upsert

    def sdk_upsert_any(url: str, name: str, data: dict[str, Any]) -> float:
        return sdk_weaviate(url, name, data) if url.startswith("weaviate") else generic(url, name, data)

    sdk_upsert = sdk_upsert_any


register_pgvector_weaviate()


if __name__ == "__main__":
    sys.exit(main())
