"""The Ray sync's overhead on this machine, and a cost model fitted from measured per-chunk costs.

    python bench/scale.py --docs 3000 --actors 1,2,4                     # debpkg slice, Qdrant local
    python bench/scale.py --docs 3000 --store-url postgresql://postgres@127.0.0.1:5432/sdk

Measured, in one process, on the same corpus (the first ``--docs`` debpkg documents) and encoder
(all-MiniLM-L6-v2 by default, dense only, torch):

  local sync        ``sdk.sync.sync`` (one process): wall time and chunks/s
  ray sync, A=...   ``sync(..., engine="ray")`` with A encoder actors of ``--cpus-per-actor`` CPUs each,
                    into a fresh collection each time; the Ray instance is started before the clock
                    (a cluster is already running where this engine is used); actor start-up is timed
  components        per chunk: scan (read + chunk + fingerprint), encode on one actor's threads,
                    store ingest (upsert of ready records, per store), ledger (pending + commit rows)

The model. A run is a scan followed by a pipeline whose rate is its slowest stage:

    wall(chunks, A) = T0 + chunks * scan_s / P + chunks / min(A_eff * r_actor, r_store, r_ledger)
    A_eff = min(A, cores / cpus_per_actor)

The rates come from the components measured alone (``r_actor = 1 / encode_s`` on one actor's
threads, ``r_store``, ``r_ledger``); ``T0`` (start-up: Ray tasks and actors importing and loading
the model, first and last batches) is what the first two ``--actors`` runs leave unexplained, on
average. The other runs are predicted and compared with what was measured (on 2 cores, A=4 actors
of 1 CPU each is capped by the cores). The fitted model then
predicts wall time, actor-hours and cost for 10^6, 10^7 and 10^8 documents on ``--cluster-actors``
actors, naming the bottleneck at each size (encoder, database ingest, ledger). GPU actors enter
with ``--gpu-chunks-per-s`` (measured on a lent GPU: ``bench/encode_gpu.py``); without it the
GPU rows are not printed.

One JSON line per measurement and prediction is appended to ``--out``
(default ``bench/results/scale_<date>.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("SDK_DATA_DIR", REPO.parent / "shared" / "data"))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def write_corpus(path: Path, docs: int) -> int:
    """The first ``docs`` debpkg documents as JSONL; returns how many."""
    n = 0
    with (DATA / "debpkg" / "corpus.jsonl").open(encoding="utf8") as src, path.open("w", encoding="utf8") as out:
        for line in src:
            if n >= docs:
                break
            out.write(line)
            n += 1
    return n


def fresh_store(base: str, tag: str, work: Path) -> str:
    """A store URL for one run: its own folder for embedded stores (a server URL is shared: names differ)."""
    if base.startswith("qdrant+local:"):
        return f"qdrant+local:{work / tag}"
    if base.startswith("milvus+lite:"):
        return f"milvus+lite:{work / (tag + '.db')}"
    return base


def timed_sync(source: Path, url: str, name: str, model: str, ledger: Path, **kw: Any) -> tuple[float, Any]:
    from sdk.sync import sync

    started = time.perf_counter()
    report = sync(source, url, name, dense=model, sparse=False, ledger=str(ledger), progress=False, **kw)
    return time.perf_counter() - started, report


def components(source: Path, model: str, store_url: str, work: Path, threads: int) -> dict[str, float]:
    """Per-chunk seconds of each stage, measured alone."""
    import torch

    from sdk.core.registry import connect
    from sdk.encoders.dense import DenseEncoder
    from sdk.retrieval.pipeline import RetrievalPipeline
    from sdk.sync import Ledger
    from sdk.sync.chunking import TokenChunker
    from sdk.sync.engine import chunk_fingerprint, encode_chunks
    from sdk.sync.sources import open_source

    dense = DenseEncoder(model, device="cpu")
    chunker = TokenChunker.from_encoder(dense)
    started = time.perf_counter()
    chunks = [c for _, cs in chunker.chunk_many(open_source(source)) for c in cs]
    fps = [chunk_fingerprint(c, "bench") for c in chunks]
    scan_s = (time.perf_counter() - started) / len(chunks)

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        encode_chunks(chunks[:64], dense, None)  # warm-up
        started = time.perf_counter()
        records = encode_chunks(chunks, dense, None)
        encode_s = (time.perf_counter() - started) / len(chunks)
    finally:
        torch.set_num_threads(previous)

    url = fresh_store(store_url, "ingest", work)
    with connect(url) as store:
        name = f"ingest_{os.getpid()}"
        spec = RetrievalPipeline(dense, None, store=store, collection=name, check_collection=False).collection_spec()
        store.drop(name)
        store.ensure_collection(spec)
        started = time.perf_counter()
        for at in range(0, len(records), 64):
            store.upsert(name, records[at:at + 64], expect=spec)
        store_s = (time.perf_counter() - started) / len(records)
        store.drop(name)

    with Ledger.open(str(work / "ledger-bench.sqlite"), key="bench") as book:
        rows = [(c.id, c.document_id, "src", "") for c in chunks]
        started = time.perf_counter()
        for at in range(0, len(rows), 64):
            book.put_chunks("v1", rows[at:at + 64])
            book.put_chunks("v1", [(r[0], r[1], r[2], fp) for r, fp in zip(rows[at:at + 64], fps[at:at + 64],
                                                                              strict=True)])
        ledger_s = (time.perf_counter() - started) / len(rows)
    return {"chunks": len(chunks), "scan_s": scan_s, "encode_s": encode_s, "store_s": store_s, "ledger_s": ledger_s}


def effective_actors(actors: int, cores: float, threads_per_actor: float) -> float:
    """Actors that encode at once: no more than the cores run (0 threads: GPU actors, never capped here)."""
    return min(actors, cores / threads_per_actor) if threads_per_actor else float(actors)


def fit(runs: list[dict[str, Any]], parts: dict[str, float], cores: int) -> dict[str, float]:
    """Rates from the per-chunk costs measured alone, then ``T0`` and the Ray path's per-chunk driver cost
    ``o`` by least squares over the runs (what the encoders' rate leaves: ``T0 + o * chunks``). Runs of two
    corpus sizes are needed to tell them apart; with one size, ``o`` is 0 and ``T0`` takes it all."""
    model = {"r_actor": 1 / parts["encode_s"], "r_store": 1 / parts["store_s"], "r_ledger": 1 / parts["ledger_s"],
             "scan_s": parts["scan_s"], "t0_s": 0.0, "o_s": 0.0}
    points = [(r["chunks"], r["seconds"] - r["chunks"] / (effective_actors(r["actors"], cores, 1) * model["r_actor"]))
              for r in runs]
    xs = [c for c, _ in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread > 0:
        model["o_s"] = max(0.0, sum((x - mean_x) * (y - mean_y) for x, y in points) / spread)
    model["t0_s"] = mean_y - model["o_s"] * mean_x
    return model


def here(model: dict[str, float], chunks: float, actors: int, cores: float) -> float:
    """Wall seconds on this machine, where the driver shares the actors' cores: its per-chunk work adds up."""
    return model["t0_s"] + chunks * model["o_s"] + chunks / (effective_actors(actors, cores, 1) * model["r_actor"])


def predict(model: dict[str, float], chunks: float, actors: int, actor_s: float, *, server: bool,
            store_capacity: float | None) -> dict[str, Any]:
    """Wall seconds on a cluster, where the driver has a machine of its own, and the bottleneck: the pipeline
    runs at its slowest stage.

    - encoder: each actor pays its encode time plus the Ray path's per-chunk cost ``o`` (measured here as
      what the two-core runs lost per chunk beyond encoding: serialization, object transfers, the
      driver's work competing for the same cores; on a cluster it is spread over the workers);
    - database ingest: a server takes every actor's upserts, up to ``store_capacity`` chunks/s; an
      embedded store lives in the driver, so its upserts are serial there;
    - ledger: the driver writes two rows per chunk (pending, then the fingerprint), serially.
    """
    store_s, ledger_s = 1 / model["r_store"], 1 / model["r_ledger"]
    rates = {"encoder": actors / (actor_s + model["o_s"]), "ledger (driver)": 1 / ledger_s}
    if server:
        rates["database ingest"] = min(actors * model["r_store"], store_capacity or float("inf"))
    else:
        rates["database ingest (embedded store, in the driver)"] = 1 / (store_s + ledger_s)
    bottleneck = min(rates, key=rates.get)  # type: ignore[arg-type]
    seconds = model["t0_s"] + chunks * model["scan_s"] / actors + chunks / rates[bottleneck]
    return {"seconds": seconds, "bottleneck": bottleneck, "rates": {k: round(v, 1) for k, v in rates.items()}}


def model_rows(rows: list[dict[str, Any]], args: argparse.Namespace, server: bool) -> list[dict[str, Any]]:
    """Fit on the ``--fit-actors`` runs (all corpus sizes recorded for this machine, model and store),
    validate on the other runs, predict the cluster sizes."""
    runs = [r for r in rows if r.get("run") == "ray"]
    parts = next((r for r in reversed(rows) if r.get("run") == "components"), None)
    if parts is None or not runs:
        raise SystemExit("no components or ray rows to fit: run the measurements first")
    cores = runs[-1]["machine"]["cores"]
    fitted_on = [r for r in runs if r["actors"] == args.fit_actors]
    model = fit(fitted_on, parts, cores)
    out: list[dict[str, Any]] = [{"run": "fit", **{k: round(v, 6) for k, v in model.items()},
                                  "fitted_on": [(r["actors"], r["docs"]) for r in fitted_on]}]
    for run in runs:
        if run in fitted_on:
            continue
        guess = here(model, run["chunks"], run["actors"], cores)
        out.append({"run": "validate", "actors": run["actors"], "docs": run["docs"], "predicted_s": round(guess, 1),
                    "measured_s": run["seconds"], "error": round(guess / run["seconds"] - 1, 3)})
    per_doc = runs[-1]["chunks"] / runs[-1]["docs"]
    cluster_cores = args.cluster_cores_per_actor or args.cpus_per_actor
    kinds = [("cpu", 1 / (model["r_actor"] * cluster_cores), args.cpu_hour_usd * cluster_cores)]
    if args.gpu_chunks_per_s:
        kinds.append(("gpu", 1 / args.gpu_chunks_per_s, args.gpu_hour_usd))
    for kind, actor_s, hourly in kinds:  # a cluster actor encodes like one measured here, per core it is given
        for store_is_server in sorted({server, True}):
            for total in (10**6, 10**7, 10**8):
                for actors in [int(a) for a in args.cluster_actors.split(",")]:
                    guess = predict(model, total * per_doc, actors, actor_s, server=store_is_server,
                                    store_capacity=args.store_capacity)
                    hours = guess["seconds"] / 3600
                    out.append({"run": "predict", "kind": kind, "store_kind": "server" if store_is_server else "embedded",
                                "documents": total, "actors": actors, "hours": round(hours, 2),
                                "actor_hours": round(hours * actors, 1), "usd": round(hours * actors * hourly, 2),
                                "bottleneck": guess["bottleneck"], "rates_chunks_per_s": guess["rates"],
                                "price_per_actor_hour": hourly,
                                "store_capacity": args.store_capacity if store_is_server else None})
    return out


def recorded_rows(path: str, model: str, store_url: str, cores: int) -> list[dict[str, Any]]:
    """The measurement rows in ``path`` from this machine's core count, model and store kind."""
    if not Path(path).is_file():
        return []
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf8").splitlines() if line.strip()]
    return [r for r in rows if r.get("model") == model and r.get("store") == store_url.split(":")[0]
            and r.get("machine", {}).get("cores") == cores and r.get("run") in ("local", "ray", "components")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=3000, help="debpkg documents to sync")
    p.add_argument("--model", default=None, help="dense model (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--store-url", default="qdrant+local:", help="store URL (qdrant+local: gets a folder per run)")
    p.add_argument("--actors", default="1,2,4", help="encoder actor counts to time")
    p.add_argument("--fit-actors", type=int, default=2,
                   help="the model is fitted on the runs with this many actors (every recorded corpus size)")
    p.add_argument("--refit", action="store_true", help="measure nothing: fit and predict from the rows in --out")
    p.add_argument("--cpus-per-actor", type=float, default=1.0)
    p.add_argument("--components-docs", type=int, default=2000, help="documents the per-chunk costs are measured on")
    p.add_argument("--cluster-actors", default="8,64,512", help="actor counts of the predictions")
    p.add_argument("--cluster-cores-per-actor", type=float, default=None,
                   help="cores behind each predicted actor (default: --cpus-per-actor)")
    p.add_argument("--gpu-chunks-per-s", type=float, default=None, help="one GPU actor's measured rate, if any")
    p.add_argument("--store-capacity", type=float, default=20000.0,
                   help="chunks/s a database server cluster ingests at most (an assumption for the predictions; "
                        "printed with them)")
    p.add_argument("--cpu-hour-usd", type=float, default=0.04, help="price of one vCPU-hour (assumption, printed)")
    p.add_argument("--gpu-hour-usd", type=float, default=2.50, help="price of one GPU-hour (assumption, printed)")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / f"scale_{time.strftime('%Y-%m-%d')}.jsonl"))
    args = p.parse_args()

    import ray
    import torch

    from sdk.encoders.loading import default_dense_model
    from sdk.sync.ray_engine import ensure_ray, server_store

    model = args.model or str(default_dense_model())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if args.refit:
        with open(args.out, "a", encoding="utf8") as out:
            for row in model_rows(recorded_rows(args.out, Path(model).name, args.store_url, cores), args,
                                  server_store(args.store_url)):
                row = {**row, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
                print(json.dumps(row), flush=True)
                out.write(json.dumps(row) + "\n")
        return
    work = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    source = work / "corpus.jsonl"
    docs = write_corpus(source, args.docs)
    machine = {"cpu": platform.processor() or platform.machine(), "cores": cores, "torch": torch.__version__,
               "ray": ray.__version__, "load": os.getloadavg()[0]}
    rows: list[dict[str, Any]] = []

    def emit(row: dict[str, Any]) -> None:
        row = {**row, "docs": docs, "model": Path(model).name, "store": args.store_url.split(":")[0],
               "machine": machine, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
        rows.append(row)
        print(json.dumps(row), flush=True)

    log(f"{docs} debpkg documents, {cores} cores, store {args.store_url}")
    seconds, report = timed_sync(source, fresh_store(args.store_url, "local", work), "local_kb", model,
                                 work / "local.sqlite")
    chunks = report.chunks_total
    emit({"run": "local", "actors": 0, "seconds": round(seconds, 2), "chunks": chunks,
          "chunks_per_s": round(chunks / seconds, 1)})
    local_rate = chunks / seconds

    started = time.perf_counter()
    if not ray.is_initialized():
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ensure_ray(None)
    emit({"run": "ray_init", "seconds": round(time.perf_counter() - started, 2)})
    ray_runs = []
    for actors in [int(a) for a in args.actors.split(",")]:
        # More actors than cores: each asks for a share of a CPU so Ray can place them all (they still run
        # one torch thread each, so the cores are oversubscribed: what the model's cap predicts).
        cpus = min(args.cpus_per_actor, cores / actors)
        url = fresh_store(args.store_url, f"ray{actors}", work)
        seconds, report = timed_sync(source, url, f"ray_kb_{actors}", model, work / f"ray{actors}.sqlite",
                                     engine="ray", ray={"encoder_actors": actors, "cpus_per_actor": cpus})
        if report.chunks_total != chunks:
            raise SystemExit(f"ray run with {actors} actors holds {report.chunks_total} chunks, local {chunks}")
        run = {"run": "ray", "actors": actors, "cpus_per_actor": cpus, "seconds": round(seconds, 2),
               "chunks": chunks, "chunks_per_s": round(chunks / seconds, 1),
               "overhead_vs_local": round(seconds / (chunks / local_rate) - 1, 3)}
        ray_runs.append(run)
        emit(run)

    subset = work / "components.jsonl"  # per-chunk costs do not depend on the corpus size: a slice is enough
    write_corpus(subset, min(docs, args.components_docs))
    parts = components(subset, model, args.store_url, work, max(1, int(args.cpus_per_actor)))
    emit({"run": "components", **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in parts.items()}})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a", encoding="utf8") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    measured, rows = rows, []
    for row in model_rows(recorded_rows(args.out, Path(model).name, args.store_url, cores), args,
                          server_store(args.store_url)):
        emit(row)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a", encoding="utf8") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    print("\nrun        actors  seconds  chunks/s  overhead", file=sys.stderr)
    for row in measured:
        if row["run"] in ("local", "ray"):
            print(f"{row['run']:<10} {row.get('actors', 0):>6}  {row['seconds']:>7}  {row['chunks_per_s']:>8}  "
                  f"{row.get('overhead_vs_local', '')}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
