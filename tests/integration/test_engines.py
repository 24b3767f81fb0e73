"""Each engine answers its own raw client: the ground under the adapter conformance suite.

These tests use only the drivers, never ``adapters``: when one fails, the engine or its setup is at
fault (scripts/engines.sh, docker-compose.yml, the fixtures), not the SDK. A missing driver fails
(ImportError) rather than skips. Engine markers come from the fixtures (see conftest.py).
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import pytest


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def test_postgres_has_pgvector_08(postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        assert row is not None, "extension vector is not installed in this database"
        assert row[0].startswith("0.8."), row[0]
        # The types and operators the adapter relies on exist.
        distance = conn.execute("SELECT '[1,0,0]'::vector <=> '[0,1,0]'::vector").fetchone()[0]
        assert distance == pytest.approx(1.0)
        hamming = conn.execute("SELECT '101'::bit(3) <~> '111'::bit(3)").fetchone()[0]
        assert hamming == pytest.approx(1.0)


def test_weaviate_is_ready(weaviate_url: str) -> None:
    import weaviate

    parts = urlsplit(weaviate_url)
    grpc_port = int(parse_qs(parts.query).get("grpc", ["50051"])[0])
    client = weaviate.connect_to_custom(
        http_host=parts.hostname,
        http_port=parts.port,
        http_secure=False,
        grpc_host=parts.hostname,
        grpc_port=grpc_port,
        grpc_secure=False,
    )
    try:
        assert client.is_ready()
        version = client.get_meta()["version"]
        major, minor = (int(x) for x in version.split(".")[:2])
        assert (major, minor) >= (1, 27), (
            f"weaviate-client 4.x refuses servers older than 1.27, got {version}"
        )
    finally:
        client.close()


def test_milvus_insert_and_search(milvus_url: str) -> None:
    import pymilvus

    if milvus_url.startswith("milvus+lite:"):
        uri = milvus_url.removeprefix("milvus+lite:")
    else:
        parts = urlsplit(milvus_url)
        uri = f"http://{parts.hostname}:{parts.port or 19530}"
    client = pymilvus.MilvusClient(uri)
    name = _name("engines")
    try:
        client.create_collection(name, dimension=4, metric_type="COSINE")
        client.insert(name, [{"id": i, "vector": [1.0, float(i), 0.0, 0.0]} for i in range(5)])
        hits = client.search(name, [[1.0, 3.0, 0.0, 0.0]], limit=1)
        assert hits[0][0]["id"] == 3
    finally:
        if client.has_collection(name):
            client.drop_collection(name)
        client.close()


def test_qdrant_upsert_and_query(qdrant_url: str) -> None:
    import qdrant_client
    from qdrant_client import models

    if qdrant_url.startswith("qdrant+local:"):
        location = qdrant_url.removeprefix("qdrant+local:")
        client = (
            qdrant_client.QdrantClient(location=":memory:")
            if location == ":memory:"
            else qdrant_client.QdrantClient(path=location)
        )
    else:
        parts = urlsplit(qdrant_url)
        client = qdrant_client.QdrantClient(host=parts.hostname, port=parts.port or 6333)
    name = _name("engines")
    try:
        client.create_collection(
            name, vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE)
        )
        client.upsert(
            name, [models.PointStruct(id=i, vector=[1.0, float(i), 0.0, 0.0]) for i in range(5)], wait=True
        )
        hits = client.query_points(name, query=[1.0, 3.0, 0.0, 0.0], limit=1).points
        assert hits[0].id == 3
    finally:
        if client.collection_exists(name):
            client.delete_collection(name)
        client.close()
