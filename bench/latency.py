"""Single-query latency: every stage of ``RetrievalPipeline.search`` alone, and the whole search, per engine.

    python bench/latency.py --engines memory,qdrant,milvus,pgvector,weaviate --docs 5000 --queries 200
    python bench/latency.py --engines qdrant --backend onnx --quantize int8

Per engine, over the same ``--queries`` debpkg queries and ``--docs`` debpkg documents (dense only,
all-MiniLM-L6-v2 by default), the stages a caller could run by hand:

  st_encode       sentence-transformers' ``SentenceTransformer.encode(query)``: the peer's single-query encode
  encode          ``DenseEncoder.encode(query)`` (``--backend`` / ``--quantize``)
  adapter_query   ``adapter.query(collection, HybridQuery)`` with the query's vector encoded beforehand
  raw             the driver's own call with that vector: qdrant ``query_points``, pymilvus ``search``,
                  psycopg + pgvector SQL, weaviate ``near_vector`` (none for the in-memory reference)
  by_hand         ``encode_query`` then ``adapter.query``, written out: the search's own steps, no pipeline
  search          ``RetrievalPipeline.search(query)`` end to end
  search.encode, search.query   the pipeline's own timings (``SearchResult.timings``) of those searches

Stages take turns in blocks of ``--block`` queries: within a block a stage runs back to back, as a
caller's loop would (its thread pools warm), and load drifting on a shared machine hits every stage
alike. The documents are encoded once and written to every engine through its adapter with the
pipeline's own spec, so all engines hold the same vectors and indexing is not timed.

One JSON line per (engine, stage): ``{"engine", "stage", "n", "p50_ms", "p99_ms", "mean_ms",
"cpu_p50_ms", ...}``, where ``cpu_p50_ms`` is the process CPU time of a call (all its threads:
spinning thread pools show up there), then per engine one ``"summary"`` line with issue 18's goal:
``search`` p50 <= ``encode`` p50 + ``adapter_query`` p50 + 1 ms, and ``search`` p99 <= 2 x its p50.
Every line carries the machine (CPU model, CPUs, torch threads, OpenMP settings, load average,
versions). Lines are appended to ``--out`` (default ``bench/results/latency_<date>.jsonl``), and a
table is printed at the end. PostgreSQL and Weaviate come from ``SDK_TEST_POSTGRES_URL`` /
``SDK_TEST_WEAVIATE_URL`` (``scripts/engines.sh``); an engine whose URL is unset is skipped with a line
that says so. Qdrant and Milvus run embedded (local mode, Milvus Lite) unless ``SDK_TEST_QDRANT_URL`` /
``SDK_TEST_MILVUS_URL`` name a server.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ENGINES = ("memory", "qdrant", "milvus", "pgvector", "weaviate")
DISTS = ("retrieval-forge", "torch", "transformers", "tokenizers", "numpy", "onnxruntime", "openvino",
         "sentence-transformers", "qdrant-client", "pymilvus", "milvus-lite", "psycopg", "pgvector",
         "weaviate-client", "threadpoolctl")


# ---- inputs ---------------------------------------------------------------------------------------
def load_debpkg(data: Path, n_docs: int, n_queries: int) -> tuple[list[Any], list[str]]:
    """The first ``n_docs`` debpkg documents (title + text) and the first ``n_queries`` queries."""
    from sdk.core.types import Document

    root = data / "debpkg"
    docs = []
    with open(root / "corpus.jsonl", encoding="utf8") as fh:
        for line in islice(fh, n_docs):
            d = json.loads(line)
            docs.append(Document(d["_id"], f"{d.get('title', '')} {d['text']}".strip()))
    with open(root / "queries.jsonl", encoding="utf8") as fh:
        queries = [json.loads(line)["text"] for line in islice(fh, n_queries)]
    return docs, queries


def engine_url(engine: str, workdir: Path) -> str | None:
    """The engine's URL, or None when it has to be started and was not (its variable is unset)."""
    if engine == "memory":
        return "memory://"
    if engine == "qdrant":
        return os.environ.get("SDK_TEST_QDRANT_URL") or "qdrant+local::memory:"
    if engine == "milvus":
        return os.environ.get("SDK_TEST_MILVUS_URL") or f"milvus+lite:{workdir / 'milvus.db'}"
    if engine == "pgvector":
        return os.environ.get("SDK_TEST_POSTGRES_URL") or None
    if engine == "weaviate":
        return os.environ.get("SDK_TEST_WEAVIATE_URL") or None
    raise SystemExit(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")


def machine() -> dict[str, Any]:
    """CPU model, CPUs, torch threads, OpenMP settings, load average and versions: what a figure depends on."""
    from sdk.encoders.backends.machine import machine_info

    info = machine_info()
    versions: dict[str, str | None] = {}
    for dist in DISTS:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    info["versions"] = {**info.get("versions", {}), **versions}
    info["env"] = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS",
                                                  "MKL_NUM_THREADS")}
    info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    return info


def document_vectors(encoder: Any, docs: list[Any], cache: Path | None, made_by: dict[str, Any]) -> np.ndarray:
    """The documents' vectors: encoded once (``encode_document``), or read from ``cache`` when its
    sidecar (``<cache>.json``) says the same model, backend and documents made them."""
    sidecar = cache.with_name(cache.name + ".json") if cache is not None else None
    if cache is not None and sidecar is not None and cache.exists() and sidecar.exists():
        if json.loads(sidecar.read_text(encoding="utf8")) == made_by:
            return np.load(cache)
    t0 = time.perf_counter()
    vectors = np.asarray(encoder.encode_document([d.text for d in docs], batch_size=64), dtype=np.float32)
    print(f"# encoded {len(docs)} documents in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    if cache is not None and sidecar is not None:
        np.save(cache, vectors)
        sidecar.write_text(json.dumps(made_by), encoding="utf8")
    return vectors


# ---- raw driver calls -----------------------------------------------------------------------------
def raw_call(engine: str, url: str, pipe: Any, collection: str) -> tuple[Callable[[np.ndarray], Any] | None,
                                                                       Callable[[], None]]:
    """``(call(vector), close)``: the driver's own top-10 query on the collection the pipeline wrote."""
    adapter = pipe.adapter
    field = adapter.describe(collection).dense_field("dense")
    if engine == "qdrant":
        client = adapter._client  # local mode keeps the points inside this client

        def qdrant(vec: np.ndarray) -> Any:
            return client.query_points(collection, query=vec.tolist(), using="dense", limit=10, with_payload=True)

        return qdrant, lambda: None
    if engine == "milvus":
        from adapters.milvus._mapping import search_params

        client, params = adapter._client, search_params(field)  # Lite: one process holds the database file

        def milvus(vec: np.ndarray) -> Any:
            return client.search(collection, data=[vec.tolist()], anns_field="dense", limit=10, search_params=params,
                                 output_fields=["doc_id", "text", "metadata"])

        return milvus, lambda: None
    if engine == "pgvector":
        import psycopg
        from pgvector.psycopg import register_vector
        from psycopg import sql

        conn = psycopg.connect(adapter._conninfo, autocommit=True)  # the URL as the adapter resolved it
        register_vector(conn)
        conn.execute("SET hnsw.ef_search = 40")
        stmt = sql.SQL("SELECT doc_id, text, metadata, dense <=> %(v)s AS d FROM {} ORDER BY dense <=> %(v)s "
                       "LIMIT 10").format(sql.Identifier(collection))

        def pgvector(vec: np.ndarray) -> Any:
            return conn.execute(stmt, {"v": vec.astype(np.float32)}).fetchall()

        return pgvector, conn.close
    if engine == "weaviate":
        import weaviate
        from weaviate.classes.query import MetadataQuery

        from adapters.weaviate._mapping import class_name
        from adapters.weaviate.adapter import client_options

        client = weaviate.connect_to_custom(**client_options(url))
        coll = client.collections.get(class_name(collection))

        def weaviate_call(vec: np.ndarray) -> Any:
            return coll.query.near_vector(near_vector=vec.tolist(), target_vector="dense", limit=10,
                                          return_metadata=MetadataQuery(distance=True),
                                          return_properties=["doc_id", "text", "sdk__payload"]).objects

        return weaviate_call, client.close
    return None, lambda: None


# ---- timing ----------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (0-100), as bench/load.py computes it."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(q / 100.0 * len(ordered) + 0.5))))
    return float(ordered[rank - 1])


def run_stages(stages: dict[str, Callable[[str], Any]], queries: list[str], block: int,
               on_result: Callable[[str, Any], None] | None = None) -> dict[str, tuple[list[float], list[float]]]:
    """Wall and process-CPU milliseconds of every stage on every query, stages taking turns per block."""
    out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in stages}
    for start in range(0, len(queries), block):
        chunk = queries[start:start + block]
        for name, fn in stages.items():
            wall, cpu = out[name]
            for q in chunk:
                c0, t0 = time.process_time(), time.perf_counter()
                result = fn(q)
                wall.append((time.perf_counter() - t0) * 1e3)
                cpu.append((time.process_time() - c0) * 1e3)
                if on_result is not None:
                    on_result(name, result)
    return out


def row(engine: str, stage: str, wall: list[float], cpu: list[float] | None, common: dict[str, Any]) -> dict[str, Any]:
    return {"engine": engine, "stage": stage, "n": len(wall), "p50_ms": round(percentile(wall, 50), 3),
            "p99_ms": round(percentile(wall, 99), 3), "mean_ms": round(float(np.mean(wall)), 3) if wall else 0.0,
            "cpu_p50_ms": round(percentile(cpu, 50), 3) if cpu else None, **common}


def bench_engine(engine: str, url: str, args: argparse.Namespace, encoder: Any, st: Any, docs: list[Any],
                 doc_vectors: np.ndarray, queries: list[str], common: dict[str, Any]) -> list[dict[str, Any]]:
    from sdk.core.types import EncodedBatch
    from sdk.retrieval import RetrievalPipeline

    collection = f"latency_{uuid.uuid4().hex[:8]}"
    pipe = RetrievalPipeline(encoder, store=url, collection=collection, limit=10)
    close_raw: Callable[[], None] = lambda: None  # noqa: E731
    try:
        spec = pipe.collection_spec()
        pipe.adapter.ensure_collection(spec)
        for start in range(0, len(docs), 1000):
            part = EncodedBatch(tuple(docs[start:start + 1000]), {"dense": doc_vectors[start:start + 1000]}, {})
            pipe.adapter.upsert(collection, part.records(), expect=spec)
        raw, close_raw = raw_call(engine, url, pipe, collection)
        vectors = {q: np.asarray(encoder.encode_query(q)) for q in queries}
        stages: dict[str, Callable[[str], Any]] = {
            "st_encode": lambda q: st.encode(q),
            "encode": lambda q: encoder.encode(q),
            "adapter_query": lambda q: pipe.adapter.query(collection, pipe.build_query(q, vectors[q])),
        }
        if raw is not None:
            stages["raw"] = lambda q: raw(vectors[q])
        # the search's two steps written by hand (no pipeline): what running them back to back costs
        stages["by_hand"] = lambda q: pipe.adapter.query(collection, pipe.build_query(q, encoder.encode_query(q)))
        stages["search"] = pipe.search
        run_stages(stages, queries[:args.warmup], args.warmup)  # connections, caches, thread pools
        timings: dict[str, list[float]] = {"encode_dense": [], "query": []}

        def keep(stage: str, result: Any) -> None:
            if stage == "search":
                for key in timings:
                    timings[key].append(result.timings.get(key, 0.0) * 1e3)

        common = {**common, "machine": {**common["machine"], "loadavg": [round(x, 2) for x in os.getloadavg()]}}
        got = run_stages(stages, queries, args.block, keep)
        rows = [row(engine, name, wall, cpu, common) for name, (wall, cpu) in got.items()]
        rows.append(row(engine, "search.encode", timings["encode_dense"], None, common))
        rows.append(row(engine, "search.query", timings["query"], None, common))
        p50 = {r["stage"]: r["p50_ms"] for r in rows}
        search = next(r for r in rows if r["stage"] == "search")
        budget = p50["encode"] + p50["adapter_query"] + 1.0
        rows.append({"engine": engine, "summary": True, "search_p50_ms": search["p50_ms"],
                     "search_p99_ms": search["p99_ms"], "budget_p50_ms": round(budget, 3),
                     "overhead_p50_ms": round(search["p50_ms"] - p50["encode"] - p50["adapter_query"], 3),
                     "by_hand_p50_ms": p50["by_hand"],
                     "p50_goal_met": search["p50_ms"] <= budget,
                     "p99_over_p50": round(search["p99_ms"] / search["p50_ms"], 2) if search["p50_ms"] else None,
                     "p99_goal_met": search["p99_ms"] <= 2 * search["p50_ms"],
                     "encode_vs_st_p50": round(p50["encode"] / p50["st_encode"], 3) if p50["st_encode"] else None,
                     **common})
        return rows
    finally:
        close_raw()
        try:
            pipe.drop()
        finally:
            pipe.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--docs", type=int, default=5000, help="debpkg documents to index")
    ap.add_argument("--queries", type=int, default=200, help="debpkg queries to time")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SDK_DATA_DIR", REPO.parent / "shared" / "data")))
    ap.add_argument("--model", default=None, help="dense model folder (default: the packaged all-MiniLM-L6-v2)")
    ap.add_argument("--backend", default="torch", choices=["torch", "onnx", "openvino", "auto"])
    ap.add_argument("--quantize", default=None, choices=["int8"], help="int8 weights (onnx / openvino backends)")
    ap.add_argument("--block", type=int, default=20, help="queries each stage runs back to back before the next")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--vectors", type=Path, default=None,
                    help="an .npy of the documents' vectors: loaded when the same model, backend and documents "
                         "made it, else written after encoding")
    ap.add_argument("--label", default=None, help="a tag copied into every line (e.g. which code was timed)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / f"latency_{time.strftime('%Y-%m-%d')}.jsonl"),
                    help="append the JSON lines here ('' for stdout only)")
    args = ap.parse_args(argv)

    from sentence_transformers import SentenceTransformer

    from sdk.encoders.dense import DenseEncoder
    from sdk.encoders.packaged import DEFAULT_MODELS

    model = args.model or str(DEFAULT_MODELS[0].folder() or DEFAULT_MODELS[0].hub_id)
    kwargs = {"model_kwargs": {"quantize": args.quantize}} if args.quantize else {}
    encoder = DenseEncoder(model, device="cpu", backend=args.backend, **kwargs)
    st = SentenceTransformer(model, device="cpu")
    docs, queries = load_debpkg(args.data, args.docs, args.queries)
    made_by = {"model": model, "backend": args.backend, "quantize": args.quantize,
               "docs": [d.id for d in docs[:3]] + [len(docs)]}
    doc_vectors = document_vectors(encoder, docs, args.vectors, made_by)
    common = {"model": args.model or DEFAULT_MODELS[0].name, "backend": args.backend, "quantize": args.quantize,
              "docs": len(docs), "queries": len(queries), "block": args.block, "label": args.label,
              "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine()}
    out = open(args.out, "a", encoding="utf8") if args.out else None  # noqa: SIM115 - closed below
    rows: list[dict[str, Any]] = []

    def emit(line: dict[str, Any]) -> None:
        text = json.dumps(line)
        print(text, flush=True)
        if out is not None:
            out.write(text + "\n")
            out.flush()

    try:
        with tempfile.TemporaryDirectory(prefix="latency-") as tmp:
            for engine in (e.strip() for e in args.engines.split(",") if e.strip()):
                url = engine_url(engine, Path(tmp))
                if url is None:
                    var = "SDK_TEST_POSTGRES_URL" if engine == "pgvector" else "SDK_TEST_WEAVIATE_URL"
                    emit({"engine": engine, "skipped": f"{var} is unset; start the engine (scripts/engines.sh "
                                                       f"start) and export {var} to time it", **common})
                    continue
                for line in bench_engine(engine, url, args, encoder, st, docs, doc_vectors, queries, common):
                    emit(line)
                    rows.append(line)
    finally:
        if out is not None:
            out.close()
    print("# engine    stage            p50 ms   p99 ms  cpu p50")
    for r in rows:
        if r.get("summary"):
            print(f"# {r['engine']:<10}search p50 {r['search_p50_ms']} vs budget {r['budget_p50_ms']} "
                  f"(met: {r['p50_goal_met']}; by hand {r['by_hand_p50_ms']}), p99/p50 {r['p99_over_p50']} "
                  f"(met: {r['p99_goal_met']})")
        else:
            cpu = "" if r["cpu_p50_ms"] is None else f"{r['cpu_p50_ms']:>9.2f}"
            print(f"# {r['engine']:<10}{r['stage']:<15}{r['p50_ms']:>8.2f}{r['p99_ms']:>9.2f}{cpu}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
