"""Serving under load: our pipeline against the raw database client, same queries, same concurrency.

For each engine and each mode, for ``--seconds``:

  threads   ``--threads`` threads, each calling one search after the other
  asyncio   ``--tasks`` concurrent tasks on one event loop, each awaiting one search after the other

"ours" is ``RetrievalPipeline.search`` (threads) / ``asearch`` (asyncio) over the engine's URL: query
encoding, the stored-spec guard, the adapter's native hybrid query, hits with every stage's score, a
``search_id``. The peer is what an application would write against the driver directly:

  pgvector  psycopg + pgvector SQL: one hybrid statement (dense kNN and sparse inner product, each as
            deep as ours fetches, fused by RRF k=60 in SQL), a ``psycopg_pool.ConnectionPool`` (threads)
            or ``AsyncConnectionPool`` (asyncio), ``hnsw.ef_search`` set as ours sets it
  weaviate  ``collection.query.hybrid`` (dense vector + BM25, alpha 0.5, rankedFusion) on a
            ``WeaviateClient`` (threads) or a ``WeaviateAsyncClient`` (asyncio)

Both sides query the same collection (indexed once by our pipeline) with the same query texts and
vectors. Encoders are deterministic hashed bags of words (``tests.unit.retrieval_fakes``, microseconds
per query) so the numbers measure the serving path, not a model. Within a mode the two run back to
back, alternating which goes first per engine, so load drifting on a shared machine hits both.

Prints one JSON object per (engine, mode, impl): ``{"engine", "mode", "impl", "concurrency", "seconds",
"calls", "qps", "p50_ms", "p99_ms", "max_ms", "errors", "stuck"}``, then one per (engine, mode) with
``qps_ratio`` (ours / raw) and ``p50_ratio`` / ``p99_ratio`` (ours / raw), and a table of lines starting
with ``#``. ``tests/reliability/test_load.py`` uses ``run_threads`` / ``run_tasks`` from here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

__all__ = ["LoadResult", "percentile", "run_tasks", "run_threads"]


# ---- the harness -------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by the nearest-rank method; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(q / 100.0 * len(ordered) + 0.5))))
    return float(ordered[rank - 1])


@dataclass
class LoadResult:
    """What one load run saw. ``stuck`` counts workers still running ``grace`` seconds after the end."""

    mode: str
    concurrency: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    wrong: int = 0
    samples: list[str] = field(default_factory=list)  # the first few errors / wrong answers
    stuck: int = 0

    @property
    def calls(self) -> int:
        return len(self.latencies_ms)

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_ms
        return {"mode": self.mode, "concurrency": self.concurrency, "seconds": round(self.seconds, 2),
                "calls": self.calls, "qps": round(self.calls / self.seconds, 1) if self.seconds else 0.0,
                "p50_ms": round(percentile(lat, 50), 2), "p99_ms": round(percentile(lat, 99), 2),
                "max_ms": round(max(lat, default=0.0), 2), "errors": self.errors, "wrong": self.wrong,
                "stuck": self.stuck, "samples": self.samples[:3]}

    def _note(self, text: str) -> None:
        if len(self.samples) < 5:
            self.samples.append(text[:300])


Check = Callable[[str, Any], "str | None"]  # (query, answer) -> None when right, else what is wrong


def run_threads(call: Callable[[str], Any], queries: Sequence[str], threads: int, seconds: float, *,
                check: Check | None = None, grace: float = 30.0) -> LoadResult:
    """``threads`` threads call ``call(query)`` back to back for ``seconds`` (thread i starts at query i)."""
    result = LoadResult("threads", threads, seconds)
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(offset: int) -> None:
        lat: list[float] = []
        i = offset
        while time.monotonic() < deadline:
            q = queries[i % len(queries)]
            i += 1
            t0 = time.perf_counter()
            try:
                answer = call(q)
            except Exception as exc:  # noqa: BLE001 - counted, and the run goes on
                with lock:
                    result.errors += 1
                    result._note(f"{type(exc).__name__}: {exc}")
                continue
            lat.append((time.perf_counter() - t0) * 1000.0)
            wrong = check(q, answer) if check is not None else None
            if wrong is not None:
                with lock:
                    result.wrong += 1
                    result._note(f"{q!r}: {wrong}")
        with lock:
            result.latencies_ms.extend(lat)

    started = time.monotonic()
    pool = [threading.Thread(target=worker, args=(n,), daemon=True, name=f"load-{n}") for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=max(0.0, deadline + grace - time.monotonic()))
    result.stuck = sum(t.is_alive() for t in pool)
    result.seconds = time.monotonic() - started
    return result


async def run_tasks(acall: Callable[[str], Awaitable[Any]], queries: Sequence[str], tasks: int, seconds: float, *,
                    check: Check | None = None, grace: float = 30.0) -> LoadResult:
    """``tasks`` concurrent tasks await ``acall(query)`` back to back for ``seconds`` on the running loop."""
    result = LoadResult("asyncio", tasks, seconds)
    deadline = time.monotonic() + seconds

    async def worker(offset: int) -> None:
        i = offset
        while time.monotonic() < deadline:
            q = queries[i % len(queries)]
            i += 1
            t0 = time.perf_counter()
            try:
                answer = await acall(q)
            except Exception as exc:  # noqa: BLE001 - counted, and the run goes on
                result.errors += 1
                result._note(f"{type(exc).__name__}: {exc}")
                continue
            result.latencies_ms.append((time.perf_counter() - t0) * 1000.0)
            wrong = check(q, answer) if check is not None else None
            if wrong is not None:
                result.wrong += 1
                result._note(f"{q!r}: {wrong}")

    started = time.monotonic()
    running = [asyncio.ensure_future(worker(n)) for n in range(tasks)]
    _, pending = await asyncio.wait(running, timeout=seconds + grace)
    result.stuck = len(pending)
    for task in pending:
        task.cancel()
    result.seconds = time.monotonic() - started
    return result


# ---- the benchmark ---------------------------------------------------------------------------------
def _corpus(n_docs: int) -> tuple[list[Any], list[str]]:
    from sdk.core.types import Document
    from tests.conftest import data_dir

    root = data_dir() / "pyfaq"
    docs = []
    with (root / "corpus.jsonl").open(encoding="utf8") as fh:
        for line in fh:
            d = json.loads(line)
            docs.append(Document(d["_id"], f"{d.get('title', '')} {d['text']}".strip()[:2000]))
            if len(docs) >= n_docs:
                break
    queries = [json.loads(line)["text"] for line in (root / "queries.jsonl").read_text(encoding="utf8").splitlines()]
    return docs, queries


def _pipeline(engine: str, url: str, collection: str) -> Any:
    from sdk.retrieval import RetrievalPipeline
    from tests.unit.retrieval_fakes import FakeDense, FakeSparse

    if engine == "pgvector":
        return RetrievalPipeline(FakeDense(), FakeSparse(), store=url, collection=collection, limit=10)
    return RetrievalPipeline(FakeDense(), store=url, collection=collection, limit=10, text_leg=True)


class RawPgvector:
    """The peer on PostgreSQL: hand-written hybrid SQL on psycopg pools."""

    def __init__(self, url: str, table: str, pipe: Any, size: int) -> None:
        from psycopg import sql

        self.url, self.pipe, self.size = url, pipe, size
        probe = pipe.build_query("x", pipe.dense_encoder.encode_query("x"), pipe.sparse_encoder.encode_query("x"))
        n, self.ef = probe.candidates("dense"), str(max(40, probe.candidates("dense")))
        t = sql.Identifier(table)
        self.stmt = sql.SQL(
            "WITH d AS (SELECT id, row_number() OVER (ORDER BY dist, doc_id) AS r FROM "
            "(SELECT id, doc_id, dense <=> %(d)s AS dist FROM {t} ORDER BY dense <=> %(d)s LIMIT {n}) x), "
            "s AS (SELECT id, row_number() OVER (ORDER BY dist, doc_id) AS r FROM "
            "(SELECT id, doc_id, sparse <#> %(s)s AS dist FROM {t} WHERE (sparse <#> %(s)s) < 0 "
            "ORDER BY sparse <#> %(s)s LIMIT {n}) y), "
            "f AS (SELECT id, sum(1.0 / (60 + r)) AS score FROM (SELECT * FROM d UNION ALL SELECT * FROM s) u "
            "GROUP BY id) "
            "SELECT t.doc_id, t.text, t.metadata, f.score FROM f JOIN {t} AS t USING (id) "
            "ORDER BY f.score DESC, t.doc_id LIMIT 10").format(t=t, n=sql.Literal(n))
        self.pool: Any = None
        self.apool: Any = None

    def _params(self, text: str) -> dict[str, Any]:
        import numpy as np
        from pgvector import SparseVector, Vector

        d = Vector(np.asarray(self.pipe.dense_encoder.encode_query(text), dtype=np.float32))
        sv = self.pipe.sparse_encoder.encode_query(text)
        return {"d": d, "s": SparseVector(dict(zip(sv.indices, sv.values, strict=True)), 1_000_000_000)}

    def search(self, text: str) -> list[Any]:
        from pgvector.psycopg import register_vector
        from psycopg_pool import ConnectionPool

        if self.pool is None:
            def configure(conn: Any) -> None:
                register_vector(conn)
                conn.execute("SET hnsw.ef_search = " + self.ef)

            self.pool = ConnectionPool(self.url, min_size=self.size, max_size=self.size, open=True,
                                       configure=configure, kwargs={"autocommit": True})
        with self.pool.connection() as conn:
            return conn.execute(self.stmt, self._params(text)).fetchall()

    async def asearch(self, text: str) -> list[Any]:
        from pgvector.psycopg import register_vector_async
        from psycopg_pool import AsyncConnectionPool

        if self.apool is None:
            async def configure(conn: Any) -> None:
                await register_vector_async(conn)
                await conn.execute("SET hnsw.ef_search = " + self.ef)

            self.apool = AsyncConnectionPool(self.url, min_size=self.size, max_size=self.size, open=False,
                                             configure=configure, kwargs={"autocommit": True})
            await self.apool.open(wait=True)
        async with self.apool.connection() as conn:
            cur = await conn.execute(self.stmt, self._params(text))
            return await cur.fetchall()

    async def aclose(self) -> None:
        if self.apool is not None:
            await self.apool.close()
            self.apool = None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


class RawWeaviate:
    """The peer on Weaviate: the client's own ``hybrid`` call."""

    def __init__(self, url: str, cls: str, pipe: Any) -> None:
        from adapters.weaviate.adapter import client_options

        self.options, self.cls, self.pipe = client_options(url), cls, pipe
        self.client: Any = None
        self.aclient: Any = None

    def _args(self, text: str) -> dict[str, Any]:
        import numpy as np
        from weaviate.classes.query import HybridFusion, MetadataQuery

        return {"query": text, "vector": np.asarray(self.pipe.dense_encoder.encode_query(text), dtype=np.float32),
                "target_vector": "dense", "alpha": 0.5, "fusion_type": HybridFusion.RANKED, "limit": 10,
                "query_properties": ["text"], "return_metadata": MetadataQuery(score=True),
                "return_properties": ["doc_id", "text", "sdk__payload"]}

    def search(self, text: str) -> list[Any]:
        import weaviate

        if self.client is None:
            self.client = weaviate.connect_to_custom(**self.options)
        return self.client.collections.get(self.cls).query.hybrid(**self._args(text)).objects

    async def asearch(self, text: str) -> list[Any]:
        import weaviate

        if self.aclient is None:
            self.aclient = weaviate.use_async_with_custom(**self.options)
            await self.aclient.connect()
        res = await self.aclient.collections.get(self.cls).query.hybrid(**self._args(text))
        return res.objects

    async def aclose(self) -> None:
        if self.aclient is not None:
            await self.aclient.close()
            self.aclient = None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def _bench_engine(engine: str, url: str, args: argparse.Namespace, docs: list[Any], queries: list[str],
                  flip: bool) -> list[dict[str, Any]]:
    collection = f"load_bench_{uuid.uuid4().hex[:8]}"
    pipe = _pipeline(engine, url, collection)
    rows: list[dict[str, Any]] = []
    try:
        pipe.add_documents(docs)
        if engine == "pgvector":
            raw: Any = RawPgvector(url, collection, pipe, args.pool)
        else:
            from adapters.weaviate._mapping import class_name

            raw = RawWeaviate(url, class_name(collection), pipe)
        for q in queries[:5]:  # warm both sides (connections, caches)
            pipe.search(q)
            raw.search(q)
        impls = [("raw", raw), ("ours", pipe)]
        if flip:
            impls.reverse()
        for mode in ("threads", "asyncio"):
            got: dict[str, dict[str, Any]] = {}
            for impl, target in impls:
                if mode == "threads":
                    res = run_threads(target.search, queries, args.threads, args.seconds)
                else:
                    async def go(t: Any = target) -> LoadResult:
                        try:
                            for q in queries[:5]:
                                await t.asearch(q)
                            return await run_tasks(t.asearch, queries, args.tasks, args.seconds)
                        finally:  # the loop's async client only: the pipeline itself stays open
                            await (t.aclose() if t is raw else t.adapter.aio().aclose())

                    res = asyncio.run(go())
                got[impl] = {"engine": engine, "impl": impl, **res.summary()}
                print(json.dumps(got[impl]), flush=True)
                rows.append(got[impl])
            ours, peer = got["ours"], got["raw"]
            ratio = {"engine": engine, "mode": mode, "summary": True,
                     "qps_ratio": round(ours["qps"] / peer["qps"], 3) if peer["qps"] else None,
                     "p50_ratio": round(ours["p50_ms"] / peer["p50_ms"], 3) if peer["p50_ms"] else None,
                     "p99_ratio": round(ours["p99_ms"] / peer["p99_ms"], 3) if peer["p99_ms"] else None}
            print(json.dumps(ratio), flush=True)
            rows.append(ratio)
        raw.close()
    finally:
        pipe.drop()
        pipe.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engines", default="pgvector,weaviate")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--tasks", type=int, default=64)
    ap.add_argument("--pool", type=int, default=10, help="connections of the raw psycopg pools (ours: pool_max_size 10)")
    ap.add_argument("--docs", type=int, default=4461, help="pyfaq documents to index (all: 4461)")
    ap.add_argument("--postgres-url", default=os.environ.get("SDK_TEST_POSTGRES_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/sdk"))
    ap.add_argument("--weaviate-url", default=os.environ.get("SDK_TEST_WEAVIATE_URL",
                                                             "weaviate://127.0.0.1:8080?grpc=50051"))
    args = ap.parse_args(argv)
    docs, queries = _corpus(args.docs)
    urls = {"pgvector": args.postgres_url, "weaviate": args.weaviate_url}
    rows: list[dict[str, Any]] = []
    for i, engine in enumerate(e.strip() for e in args.engines.split(",") if e.strip()):
        rows += _bench_engine(engine, urls[engine], args, docs, queries, flip=bool(i % 2))
    print("# engine   mode     impl  conc     qps   p50 ms   p99 ms  errors")
    for r in rows:
        if not r.get("summary"):
            print(f"# {r['engine']:<9}{r['mode']:<9}{r['impl']:<5}{r['concurrency']:>5}{r['qps']:>8}"
                  f"{r['p50_ms']:>9}{r['p99_ms']:>9}{r['errors']:>8}")
        else:
            print(f"# {r['engine']:<9}{r['mode']:<9}ours/raw: qps x{r['qps_ratio']}, p50 x{r['p50_ratio']}, "
                  f"p99 x{r['p99_ratio']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
