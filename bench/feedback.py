"""The feedback loop against simulated users: does learning from clicks make the served pipeline better?

    python bench/feedback.py --dataset debpkg --store milvus+lite:/tmp/fb/milvus.db --rounds 3
    python bench/feedback.py --dataset pyfaq --rounds 3                  # queries split by time

World: the dataset's corpus is synced (MiniLM + SPLADE-tiny, sdk sync) into the store; the served
pipeline starts as the default hybrid (equal-weight RRF, no reranker). Each round, simulated users
ask ``--queries-per-round`` queries of the learning split and see the top 10; a relevant hit at
position p is clicked with probability ``0.9 / p ** 0.5`` and any other hit with probability
``--noise`` (0.01); a relevant hit that is clicked is also ``used`` with probability 0.3 (a RAG
answer cites it). Then ``Learner.learn`` runs the steps (each gated on held-out feedback) while a
background thread keeps querying the served pipeline. After each round: test nDCG@10 (qrels) of
what is served, of each single leg, what was promoted and refused, and the background loop's
failed and empty queries.

Splits: debpkg learns from ``train`` queries and is measured on ``test``; pyfaq (one split) is
split by time: the first ``--learn-fraction`` of its test queries (in a seeded random order) are
asked by users, the rest measure.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def doc_of(hit_id: str) -> str:
    return hit_id.split("#", 1)[0]


def served_ndcg(pipe: Any, queries: dict[str, str], qrels: dict[str, dict[str, int]], serving: Any = None) -> float:
    """nDCG@10 against the qrels (chunk hits mapped to their documents, first occurrence kept)."""
    from sdk.evaluation.metrics import ndcg_at_k

    run: dict[str, list[str]] = {}
    qids = list(queries)
    for start in range(0, len(qids), 64):
        chunk = qids[start:start + 64]
        for q, hits in zip(chunk, pipe.search_batch([queries[x] for x in chunk], limit=20, serving=serving),
                           strict=True):
            seen: list[str] = []
            for h in hits:
                d = doc_of(h.id)
                if d not in seen:
                    seen.append(d)
            run[q] = seen[:10]
    return round(ndcg_at_k(run, {q: qrels[q] for q in qids}, 10), 4)


def leg_ndcg(pipe: Any, queries: dict[str, str], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    from sdk.feedback.registry import ServingState

    return {leg: served_ndcg(pipe, queries, qrels, pipe.serving_for(ServingState(legs=(leg,))))
            for leg in pipe._base.legs}


def simulate(pipe: Any, queries: dict[str, str], qrels: dict[str, dict[str, int]], rng: random.Random,
             noise: float) -> dict[str, int]:
    clicks = used = 0
    for qid, text in queries.items():
        result = pipe.search(text)
        for position, hit in enumerate(result, start=1):
            relevant = qrels.get(qid, {}).get(doc_of(hit.id), 0) > 0
            if rng.random() < (0.9 / position ** 0.5 if relevant else noise):
                pipe.feedback(result.search_id, hit.id, "click")
                clicks += 1
                if relevant and rng.random() < 0.3:
                    pipe.feedback(result.search_id, hit.id, "used")
                    used += 1
    pipe.feedback_store.flush()
    return {"searches": len(queries), "clicks": clicks, "used": used}


class QueryLoad:
    """Queries the served pipeline in a loop on a thread while learning and promotion run."""

    def __init__(self, pipe: Any, queries: list[str], qps: float = 0.0) -> None:
        self.pipe, self.queries = pipe, queries
        self.interval = 1.0 / qps if qps > 0 else 0.0
        self.served = self.empty = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            began = time.perf_counter()
            try:
                if not self.pipe.search(self.queries[i % len(self.queries)]):
                    self.empty += 1
                self.served += 1
            except Exception as exc:  # noqa: BLE001 - counted: the goal is zero
                self.errors.append(repr(exc))
            i += 1
            if self.interval:
                self._stop.wait(max(0.0, self.interval - (time.perf_counter() - began)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="pyfaq", choices=("pyfaq", "debpkg"))
    p.add_argument("--store", default=None, help="store URL (default: Milvus Lite in a temporary folder)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--queries-per-round", type=int, default=None, help="default: all learning queries")
    p.add_argument("--test-queries", type=int, default=None, help="measure on at most this many test queries")
    p.add_argument("--learn-fraction", type=float, default=0.6, help="pyfaq: share of queries users ask")
    p.add_argument("--steps", default="fusion,reranker,dense",
                   help="learning steps; ';' separates rounds, the last list repeats (e.g. 'fusion,dense;fusion')")
    p.add_argument("--noise", type=float, default=0.01)
    p.add_argument("--margin", type=float, default=0.005)
    p.add_argument("--max-steps", type=int, default=-1, help="cap fine-tuning steps per candidate")
    p.add_argument("--batch-size", type=int, default=32, help="fine-tuning batch")
    p.add_argument("--dev", default="auto", help="labelled FOLDER:SPLIT the gate also checks (auto: debpkg's dev "
                   "split for debpkg, none for pyfaq; none: feedback alone)")
    p.add_argument("--eval-depth", type=int, default=100, help="hits each setup ranks for the gate")
    p.add_argument("--load-qps", type=float, default=5.0,
                   help="background queries per second while learning runs (0: as fast as they go)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default=str(REPO / "bench" / "results" / f"feedback_{time.strftime('%Y-%m-%d')}.jsonl"))
    args = p.parse_args()

    from sdk.core.registry import connect
    from sdk.encoders.dense import DenseEncoder
    from sdk.encoders.loading import default_dense_model
    from sdk.encoders.sparse import SparseEncoder, default_sparse_model
    from sdk.evaluation.beir import load_beir
    from sdk.feedback import SqliteFeedbackStore
    from sdk.learning import Gate, Learner
    from sdk.retrieval import RetrievalPipeline
    from sdk.sync import Ledger, sync

    work = Path(tempfile.mkdtemp(prefix="feedback-bench-"))
    rng = random.Random(args.seed)
    if args.dataset == "debpkg":
        learn_set, test_set = load_beir(DATA / "debpkg", "train"), load_beir(DATA / "debpkg", "test")
        learn_q = dict(learn_set.queries)
        learn_rels = {q: dict(r) for q, r in learn_set.qrels.items()}
        test_q, test_rels = dict(test_set.queries), {q: dict(r) for q, r in test_set.qrels.items()}
        corpus = test_set.corpus
    else:
        data = load_beir(DATA / "pyfaq", "test")
        order = sorted(data.qrels)
        rng.shuffle(order)
        cut = int(len(order) * args.learn_fraction)
        learn_q = {q: data.queries[q] for q in order[:cut]}
        test_q = {q: data.queries[q] for q in order[cut:]}
        learn_rels = test_rels = {q: dict(r) for q, r in data.qrels.items()}
        corpus = data.corpus
    if args.test_queries and len(test_q) > args.test_queries:
        keep = set(random.Random(1).sample(sorted(test_q), args.test_queries))
        test_q = {q: t for q, t in test_q.items() if q in keep}
    source = work / "corpus.jsonl"
    with source.open("w", encoding="utf8") as out:
        for d, text in corpus.items():
            out.write(json.dumps({"id": d, "text": text}) + "\n")
    store = connect(args.store or f"milvus+lite:{work / 'milvus.db'}")
    ledger = Ledger.open(work / "ledger.sqlite", key="bench")
    feedback = SqliteFeedbackStore(work / "feedback.db")
    name = "kb"
    log(f"{args.dataset}: syncing {len(corpus)} documents into {store.capabilities.name}")
    started = time.perf_counter()
    sync(source, store, name, dense=default_dense_model(), sparse=default_sparse_model(), ledger=ledger, progress=False)
    sync_minutes = (time.perf_counter() - started) / 60
    pipe = RetrievalPipeline(DenseEncoder(default_dense_model()), SparseEncoder(default_sparse_model()), store=store,
                             collection=name, feedback=feedback, refresh_seconds=1.0)
    start_ndcg = served_ndcg(pipe, test_q, test_rels)
    legs = leg_ndcg(pipe, test_q, test_rels)
    log(f"start: served {start_ndcg}, legs {legs}")
    dev = None
    if args.dev == "auto":
        dev = (DATA / "debpkg", "dev") if args.dataset == "debpkg" else None
    elif args.dev != "none":
        folder, _, split = args.dev.rpartition(":")
        dev = (folder, split)
    learner = Learner(store, name, feedback, dense=default_dense_model(), sparse=default_sparse_model(),
                      ledger=ledger, reranker_base=default_dense_model(), artifacts=work / "candidates",
                      gate=Gate(margin=args.margin), settle_seconds=2.0, dev=dev, eval_depth=args.eval_depth,
                      train_options={"max_steps": args.max_steps, "batch_size": args.batch_size})
    rows = []
    learn_ids = list(learn_q)
    per_round = args.queries_per_round or len(learn_ids)
    round_steps = args.steps.split(";")
    for round_no in range(1, args.rounds + 1):
        asked = rng.sample(learn_ids, min(per_round, len(learn_ids)))
        users = simulate(pipe, {q: learn_q[q] for q in asked}, learn_rels, rng, args.noise)
        load = QueryLoad(pipe, list(test_q.values()), args.load_qps)
        t0 = time.perf_counter()
        try:
            report = learner.learn([s for s in round_steps[min(round_no, len(round_steps)) - 1].split(",") if s])
        finally:
            load.stop()
        learn_minutes = (time.perf_counter() - t0) / 60
        pipe.refresh_learned()
        row = {"dataset": args.dataset, "round": round_no, "users": users, "labels": report.labels,
               "steps": [{"kind": s.kind, "decision": s.decision, "reason": s.reason,
                          "gate": s.gate, "dev": s.detail.get("dev")} for s in report.steps],
               "dev": f"{dev[0]}:{dev[1]}" if dev else None, "eval_depth": args.eval_depth,
               "batch_size": args.batch_size, "max_steps": args.max_steps,
               "test_ndcg@10": served_ndcg(pipe, test_q, test_rels), "start_ndcg@10": start_ndcg,
               "legs_ndcg@10": legs, "serving_version": pipe.serving_version,
               "background_queries": load.served, "failed_queries": len(load.errors), "empty_results": load.empty,
               "learn_minutes": round(learn_minutes, 2), "sync_minutes": round(sync_minutes, 2),
               "store": store.capabilities.name, "test_queries": len(test_q)}
        rows.append(row)
        log(f"round {round_no}: test nDCG@10 {row['test_ndcg@10']} (start {start_ndcg}); "
            + "; ".join(f"{s.kind} {s.decision}" for s in report.steps)
            + f"; background {load.served} queries, {len(load.errors)} failed, {load.empty} empty")
        print(json.dumps(row, default=str), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a", encoding="utf8") as out:
        for row in rows:
            out.write(json.dumps(row, default=str) + "\n")
    learner.close()
    pipe.close()
    feedback.close()
    store.close()


if __name__ == "__main__":
    main()
