"""Serving under load: many concurrent searches against PostgreSQL, Weaviate and embedded Qdrant.

For each engine, a pipeline (deterministic fake encoders, so the load is on the serving path and not
on a model) over a few hundred documents, then for ``SDK_LOAD_SECONDS`` (default 10) each:

- ``THREADS`` threads calling ``search`` back to back (PostgreSQL: the sync connection pool);
- ``TASKS`` concurrent ``asearch`` tasks on one event loop (native async clients; Qdrant local mode:
  worker threads).

Asserted: no error, no worker still running ``GRACE`` seconds after the end (no deadlock), every
answer non-empty and equal to the sequential answer for the same query, and (PostgreSQL) every
connection back in its pool afterwards. Reported: qps, p50 / p99 latency, printed and, when
``SDK_RELIABILITY_REPORT`` names a folder, written there as ``load_<engine>_<mode>.json``.
``bench/load.py`` compares the same paths with the raw database clients.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.load import LoadResult, run_tasks, run_threads
from sdk.core.types import Document
from sdk.retrieval import RetrievalPipeline
from tests.integration.conftest import postgres_url, qdrant_url, weaviate_url  # noqa: F401 - fixtures
from tests.unit.retrieval_fakes import DIM, FakeDense, FakeSparse

pytestmark = [pytest.mark.integration]

SECONDS = float(os.environ.get("SDK_LOAD_SECONDS", "10"))
THREADS = 16
TASKS = 64
GRACE = 30.0
N_DOCS = 400
WORDS = ("python package install debian vector search query document sentence text model encode file data "
         "system user error list tuple table key value index server client thread loop pool socket "
         "cache memory disk network timeout retry batch stream string unicode bytes number").split()


def _corpus() -> tuple[list[Document], list[str]]:
    rng = np.random.default_rng(16)
    docs = [Document(f"load-{i:04d}", " ".join(rng.choice(WORDS, size=int(rng.integers(6, 20)))),
                     {"kind": "even" if i % 2 == 0 else "odd"}) for i in range(N_DOCS)]
    queries = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 5)))) for _ in range(60)]
    return docs, queries


class WordVectors(FakeDense):
    """Each word a fixed random direction, a text the normalised sum: unlike hashed bags of words, two
    different texts never tie exactly. Exact ties are ordered by float noise in some engines (Qdrant
    local mode's numpy scores differ in the last bit between threads), which would flip ranks."""

    def _one(self, text: str) -> np.ndarray:
        v = np.zeros(DIM, dtype=np.float64)
        for w in text.lower().split():
            v += np.random.default_rng(int.from_bytes(hashlib.sha1(w.encode()).digest()[:4], "big")).standard_normal(DIM)
        return (v / (np.linalg.norm(v) or 1.0)).astype(np.float32)


def _canonical(hits: Any) -> list[tuple[float, str]]:
    """Hits as (-score, id) in that order: engines may order equal scores either way."""
    return sorted((-h.score, h.id) for h in hits)


def _same(got: list[tuple[float, str]], want: list[tuple[float, str]]) -> bool:
    return [i for _, i in got] == [i for _, i in want] and bool(
        np.allclose([s for s, _ in got], [s for s, _ in want], rtol=1e-5, atol=1e-6))


def _pipeline(engine: str, url: str, collection: str) -> RetrievalPipeline:
    if engine == "weaviate":  # no user sparse vectors: its own BM25 is the keyword leg
        return RetrievalPipeline(WordVectors(), store=url, collection=collection, text_leg=True, limit=10)
    return RetrievalPipeline(WordVectors(), FakeSparse(), store=url, collection=collection, limit=10)


@pytest.fixture(scope="module", params=[pytest.param(e, marks=getattr(pytest.mark, e))
                                        for e in ("pgvector", "weaviate", "qdrant")])
def loaded(request: pytest.FixtureRequest) -> Iterator[tuple[str, RetrievalPipeline, dict[str, Any], list[str]]]:
    engine = request.param
    fixture = {"pgvector": "postgres_url", "weaviate": "weaviate_url", "qdrant": "qdrant_url"}[engine]
    url = request.getfixturevalue(fixture)
    if engine == "pgvector":  # the default pool (10 connections) serves 16 threads or 64 tasks: some wait
        sep = "&" if "?" in url else "?"
        url = f"{url}{sep}application_name=rf_load"
    docs, queries = _corpus()
    pipe = _pipeline(engine, url, f"rf_load_{uuid.uuid4().hex[:8]}")
    try:
        pipe.add_documents(docs)
        expected = {q: _canonical(pipe.search(q)) for q in queries}
        assert all(expected.values()), "a query found nothing; the corpus or the encoders changed"
        yield engine, pipe, expected, queries
    finally:
        pipe.drop()
        pipe.close()


def _check(expected: dict[str, Any]) -> Any:
    def check(query: str, answer: Any) -> str | None:
        if not answer:
            return "no hits"
        got = _canonical(answer)
        return None if _same(got, expected[query]) else f"got {got}, sequential answer {expected[query]}"

    return check


def _report(engine: str, result: LoadResult) -> dict[str, Any]:
    summary = {"engine": engine, **result.summary()}
    print(f"\n[load] {json.dumps(summary)}")
    folder = os.environ.get("SDK_RELIABILITY_REPORT")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"load_{engine}_{result.mode}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _assert_clean(result: LoadResult) -> None:
    assert result.stuck == 0, f"{result.stuck} workers still running {GRACE:g} s after the end: deadlock"
    assert result.errors == 0, result.samples
    assert result.wrong == 0, result.samples
    assert result.calls >= result.concurrency, "hardly any search finished"


def test_threads(loaded: tuple[str, RetrievalPipeline, dict[str, Any], list[str]]) -> None:
    engine, pipe, expected, queries = loaded
    result = run_threads(pipe.search, queries, THREADS, SECONDS, check=_check(expected), grace=GRACE)
    _report(engine, result)
    _assert_clean(result)
    if engine == "pgvector":
        stats = pipe.adapter.pool_stats()
        assert stats["pool_available"] == stats["pool_size"] and stats["requests_waiting"] == 0, stats


def test_asyncio(loaded: tuple[str, RetrievalPipeline, dict[str, Any], list[str]]) -> None:
    engine, pipe, expected, queries = loaded
    twin = pipe.adapter.aio()
    assert twin.native is (engine != "qdrant" or "hnsw" not in pipe.adapter.capabilities.emulated)

    async def run() -> tuple[LoadResult, dict[str, int]]:
        result = await run_tasks(pipe.asearch, queries, TASKS, SECONDS, check=_check(expected), grace=GRACE)
        stats = twin.pool_stats() if engine == "pgvector" else {}
        await twin.aclose()
        return result, stats

    result, stats = asyncio.run(run())
    _report(engine, result)
    _assert_clean(result)
    if stats:
        assert stats["pool_available"] == stats["pool_size"] and stats["requests_waiting"] == 0, stats
