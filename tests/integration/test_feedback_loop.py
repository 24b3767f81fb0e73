"""The feedback loop end to end on real engines with real weights (issue 15, items 3-4).

A slice of pyfaq is synced (MiniLM + SPLADE-tiny) into Qdrant and Milvus. The team starts by serving
the lexical leg alone (SPLADE-tiny: far weaker than MiniLM on pyfaq); simulated users search and
click relevant hits with a position-dependent probability plus noise; then ``Learner``:

- fits the fusion over both legs: promoted, and the user-facing pipeline follows it;
- trains a reranker on SHUFFLED labels: refused by the gate, nothing changes;
- fine-tunes the dense encoder, stages a new version through sync and promotes it while a
  background loop keeps querying: no error, never an empty result; the alias moves;
- rolls back: alias and serving state return, the pipeline follows.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sdk.core.registry import connect
from sdk.evaluation.beir import load_beir
from sdk.feedback import SqliteFeedbackStore
from sdk.feedback.registry import Registry
from sdk.learning import Gate, Learner
from sdk.retrieval import RetrievalPipeline
from sdk.sync import Ledger, status, sync
from tests.encoder_fixtures import data_root

pytestmark = pytest.mark.slow
DATASET, N_QUERIES, N_DOCS = "pyfaq", 175, 400


@pytest.fixture(params=["qdrant_url", "milvus_url"], ids=lambda f: f.removesuffix("_url"))
def adapter(request: pytest.FixtureRequest) -> Iterator[Any]:
    store = connect(request.getfixturevalue(request.param))
    yield store
    store.close()


@pytest.fixture(scope="module")
def pyfaq_slice(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = data_root() / DATASET
    if not folder.is_dir():
        pytest.fail(f"the {DATASET} dataset is missing at {folder}; set SDK_DATA_DIR", pytrace=False)
    data = load_beir(folder, "test")
    rng = random.Random(5)
    qids = sorted(rng.sample(sorted(data.qrels), min(N_QUERIES, len(data.qrels))))
    relevant = {d for q in qids for d, g in data.qrels[q].items() if g > 0}
    others = sorted(set(data.corpus) - relevant)
    docs = sorted(relevant | set(rng.sample(others, N_DOCS - len(relevant))))
    source = tmp_path_factory.mktemp("pyfaq") / "corpus.jsonl"
    with source.open("w", encoding="utf8") as out:
        for d in docs:
            out.write(json.dumps({"id": d, "text": data.corpus[d]}) + "\n")
    return {"source": source, "queries": {q: data.queries[q] for q in qids},
            "qrels": {q: dict(data.qrels[q]) for q in qids}}


def chunk_doc(hit_id: str) -> str:
    return hit_id.split("#", 1)[0]


def simulate_users(pipe: RetrievalPipeline, data: dict[str, Any], rounds: int = 2, seed: int = 3) -> int:
    """Click model: a relevant hit at position p is clicked with probability 0.9 / p ** 0.5, any other
    hit with probability 0.01 (noise); each query is asked ``rounds`` times, in a fixed order."""
    rng = random.Random(seed)
    clicks = 0
    order = list(data["queries"].items())
    rng.shuffle(order)  # users ask in no particular order: the time split must not follow the FAQ's sections
    for _ in range(rounds):
        for qid, text in order:
            result = pipe.search(text)
            for position, hit in enumerate(result, start=1):
                relevant = chunk_doc(hit.id) in data["qrels"][qid]
                if rng.random() < (0.9 / position ** 0.5 if relevant else 0.01):
                    pipe.feedback(result.search_id, hit.id, "click")
                    clicks += 1
    pipe.feedback_store.flush()
    return clicks


def shuffled(labels: Any, seed: int = 0) -> Any:
    """The same label set with every train query's positives moved to another query."""
    rng = random.Random(seed)
    pos = [g.positives for g in labels.train]
    rng.shuffle(pos)
    train = [replace(g, positives=p, negatives=()) for g, p in zip(labels.train, pos, strict=True)]
    return replace(labels, train=train)


def test_feedback_loop_end_to_end(adapter: Any, pyfaq_slice: dict[str, Any], tmp_path: Path) -> None:
    from sdk.encoders.loading import default_dense_model
    from sdk.encoders.sparse import default_sparse_model

    name = f"fb_{uuid.uuid4().hex[:8]}"
    ledger = Ledger.open(tmp_path / "ledger.sqlite", key=name)
    feedback = SqliteFeedbackStore(tmp_path / "feedback.db")
    dense_model, sparse_model = default_dense_model(), default_sparse_model()
    pipe = learner = None
    try:
        report = sync(pyfaq_slice["source"], adapter, name, dense=dense_model, sparse=sparse_model, ledger=ledger,
                      progress=False)
        assert report.added == N_DOCS
        start = Registry(feedback)  # what the team served first: the lexical leg alone
        start.promote(start.add(name, "fusion", change={"legs": ["sparse"]}, reason="initial setting").candidate_id)
        pipe = RetrievalPipeline(ledger_models(ledger)["dense"], ledger_models(ledger)["sparse"], store=adapter,
                                 collection=name, feedback=feedback, refresh_seconds=0.2, device="cpu")
        assert pipe.legs == ("sparse",)
        assert simulate_users(pipe, pyfaq_slice) > 50
        learner = Learner(adapter, name, feedback, dense=dense_model, sparse=sparse_model, ledger=ledger,
                          reranker_base=dense_model, artifacts=tmp_path / "candidates", device="cpu",
                          gate=Gate(margin=0.005, min_queries=10), settle_seconds=1.0, rerank_top=10,
                          train_options={"epochs": 1.0, "batch_size": 16, "max_steps": 6},
                          label_options={"eval_fraction": 0.5})
        labels = learner.labels()
        assert labels.train and len(labels.eval) >= 10
        assert not {g.query_id for g in labels.train} & {g.query_id for g in labels.eval}

        # 1. fusion: the better candidate is promoted and the serving pipeline follows it.
        fusion = learner.learn(["fusion"], labels=labels).steps[0]
        assert fusion.decision == "promoted", (fusion.reason, fusion.detail)
        assert fusion.gate["candidate"] >= fusion.gate["current"] + 0.005
        pipe.refresh_learned()
        assert pipe.serving_version == 2 and "dense" in pipe.legs
        before_reranker = pipe.serving_version

        # 2. a reranker trained on shuffled labels is refused; nothing changes.
        bad = learner.learn(["reranker"], labels=shuffled(labels)).steps[0]
        assert bad.decision == "refused", bad.reason
        assert learner.registry.version(name) == before_reranker

        # 3. dense encoder: staged through sync, promoted under query load.
        physical_before = adapter.describe(name).name
        dense = learner.learn(["dense"], labels=labels, dry_run=True).steps[0]
        assert dense.decision == "pending", dense.reason
        staged = status(adapter, name, ledger=ledger)["staged"]
        assert staged and staged != physical_before and adapter.describe(name).name == physical_before
        errors: list[BaseException] = []
        empty: list[str] = []
        stop = threading.Event()
        queries = list(pyfaq_slice["queries"].values())

        def load() -> None:
            i = 0
            while not stop.is_set():
                try:
                    if not pipe.search(queries[i % len(queries)]):
                        empty.append(queries[i % len(queries)])
                except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                    errors.append(exc)
                i += 1

        worker = threading.Thread(target=load)
        worker.start()
        try:
            learner.promote(dense.candidate_id, force=True)
            pipe.refresh_learned()
        finally:
            stop.set()
            worker.join()
        assert not errors and not empty
        assert adapter.describe(name).name == staged
        assert pipe.target == staged and str(pipe.dense_encoder.model_path).endswith(Path(
            learner.registry.candidate(dense.candidate_id).artifact).name)

        # 4. rollback: the alias and the serving state return; the pipeline follows.
        now, undone = learner.rollback()
        assert undone.candidate_id == dense.candidate_id
        assert adapter.describe(name).name == physical_before
        pipe.refresh_learned()
        assert pipe.target == name and pipe.search(queries[0])
        assert pipe.legs == tuple(now.legs or pipe.legs)
        decisions = [(c.kind, c.decision) for c in learner.registry.candidates(name)]
        assert decisions == [("fusion", "promoted"), ("fusion", "promoted"), ("reranker", "refused"),
                             ("dense", "rolled_back")]
    finally:
        for opened in (learner, pipe):
            if opened is not None:
                opened.close()
        cleanup(adapter, name, ledger)
        feedback.close()


def ledger_models(ledger: Ledger) -> dict[str, Any]:
    from sdk.encoders.dense import DenseEncoder
    from sdk.encoders.sparse import SparseEncoder

    models = ledger.get("live")["models"]
    return {"dense": DenseEncoder(models["dense"], device="cpu"), "sparse": SparseEncoder(models["sparse"], device="cpu")}


def cleanup(adapter: Any, name: str, ledger: Ledger) -> None:
    physical = {v["collection"] for v in ledger.get("versions", [])} | {(ledger.get("staged") or {}).get("collection")}
    try:
        adapter.delete_alias(name)
    except Exception:  # noqa: BLE001 - cleanup must not hide the test's own failure
        pass
    for p in {p for p in physical if p} | {name}:
        try:
            adapter.drop(p)
        except Exception:  # noqa: BLE001
            pass
    ledger.close()

