"""The feedback loop on the memory adapter (issue 15, items 3-4): the gate, the registry, pipelines
following promotions and rollbacks, fusion fitting and the learner's decisions.

Encoders are deterministic fakes: a bag-of-words dense leg that finds the right document and a
"noise" sparse leg that ranks at random, so equal-weight fusion is measurably worse than the dense
leg alone, as SPLADE-tiny drags MiniLM down on pyfaq. Simulated users click the right document
when it is shown."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adapters.memory import MemoryAdapter
from sdk.core.errors import ConfigError, InputError, SchemaMismatchError
from sdk.core.types import Document, FusionMethod, SparseVector
from sdk.feedback import SqliteFeedbackStore
from sdk.feedback.registry import Registry, ServingState
from sdk.learning import Gate, GateDecision, Learner, combine, paired_bootstrap
from sdk.learning.fusion import fit_fusion, fusion_choices
from sdk.retrieval import RetrievalPipeline
from tests.unit.retrieval_fakes import FakeDense

WORDS = ["apt", "dpkg", "kernel", "python", "nginx", "docker", "ssh", "grub", "cron", "bash", "vim", "git",
         "curl", "rsync", "tar", "gzip", "systemd", "udev", "mount", "lvm", "raid", "zfs", "btrfs", "ext4",
         "tmux", "screen", "perl", "ruby", "java", "gcc", "make", "cmake", "latex", "pandoc", "ffmpeg",
         "sox", "gimp", "inkscape", "firefox", "chromium"]


class NoiseSparse:
    """A lexical leg that knows nothing: random sparse vectors seeded by the text."""

    model_path = None

    def _one(self, text: str) -> SparseVector:
        rng = np.random.default_rng(int.from_bytes(hashlib.sha1(text.encode()).digest()[:4], "big"))
        idx = sorted(rng.choice(50, size=6, replace=False).tolist())
        return SparseVector(tuple(idx), tuple(float(v) for v in rng.random(6) + 0.1))

    def encode_document(self, texts: Any, **_: Any) -> Any:
        return self.encode_query(texts)

    def encode_query(self, texts: Any, **_: Any) -> Any:
        return self._one(texts) if isinstance(texts, str) else [self._one(t) for t in texts]


def corpus() -> list[Document]:
    return [Document(f"d{i:02d}", f"notes about {w} and {WORDS[(i + 7) % len(WORDS)]} tools") for i, w in
            enumerate(WORDS)]


def queries() -> dict[str, str]:
    return {f"d{i:02d}": f"{w} {WORDS[(i + 7) % len(WORDS)]} help" for i, w in enumerate(WORDS)}


@pytest.fixture
def store() -> MemoryAdapter:
    return MemoryAdapter()


@pytest.fixture
def feedback(tmp_path: Path) -> Any:
    fb = SqliteFeedbackStore(tmp_path / "feedback.db")
    yield fb
    fb.close()


def _pipeline(store: MemoryAdapter, feedback: Any = None, **kw: Any) -> RetrievalPipeline:
    return RetrievalPipeline(FakeDense(), NoiseSparse(), store=store, collection="kb", limit=10, feedback=feedback,
                             **kw)


def simulate(pipe: RetrievalPipeline, rounds: int = 2) -> None:
    """Users search every query (several times) and click the right document when it is shown."""
    for _ in range(rounds):
        for target, q in queries().items():
            result = pipe.search(q)
            if any(h.id == target for h in result):
                pipe.feedback(result.search_id, target, "click")
    pipe.feedback_store.flush()


@pytest.fixture
def filled(store: MemoryAdapter, feedback: Any) -> RetrievalPipeline:
    pipe = _pipeline(store, feedback, refresh_seconds=0)
    pipe.add_documents(corpus())
    simulate(pipe)
    yield pipe
    pipe.close()


# ---- the gate -------------------------------------------------------------------------------
def test_paired_bootstrap_interval_brackets_the_mean_gain() -> None:
    cur = {str(i): 0.5 for i in range(50)}
    cand = {str(i): 0.5 + (0.1 if i % 2 else 0.0) for i in range(50)}
    mean, low, high = paired_bootstrap(cur, cand)
    assert mean == pytest.approx(0.05)
    assert 0 < low < mean < high


def test_gate_promotes_a_clear_gain_and_explains_refusals() -> None:
    gate = Gate(margin=0.01, min_queries=10)
    cur = {str(i): 0.4 for i in range(40)}
    assert gate.decide(cur, {q: 0.6 for q in cur}).promote
    small = gate.decide(cur, {q: 0.405 for q in cur})
    assert not small.promote and "below the margin" in small.reason
    noisy = gate.decide(cur, {q: (1.0 if int(q) % 2 else 0.0) for q in cur})  # mean +0.1, huge spread
    few = gate.decide({"a": 0.1}, {"a": 0.9})
    assert not few.promote and "needs 10" in few.reason
    worse = gate.decide(cur, {q: 0.2 for q in cur})
    assert not worse.promote and worse.delta < 0
    assert noisy.low < noisy.delta


def _verdict(promote: bool, delta: float, low: float, high: float) -> GateDecision:
    return GateDecision(promote, "why", 0.5, 0.5 + delta, delta, low, high, 100)


def test_combine_lets_a_dev_split_promote_what_feedback_cannot_see() -> None:
    blind = _verdict(False, 0.002, -0.01, 0.02)  # feedback: no clear gain, no clear loss
    dev_better, dev_worse = _verdict(True, 0.03, 0.02, 0.04), _verdict(False, -0.02, -0.03, -0.01)
    up = combine(blind, dev_better, 0.005)
    assert up.promote and "dev split" in up.reason and "no loss" in up.reason and up.delta == 0.03
    hurt = combine(_verdict(False, -0.02, -0.03, -0.01), dev_better, 0.005)
    assert not hurt.promote and "worse on held-out feedback" in hurt.reason
    vetoed = combine(_verdict(True, 0.02, 0.01, 0.03), dev_worse, 0.005)
    assert not vetoed.promote and "worse on the labelled dev split" in vetoed.reason
    assert combine(_verdict(True, 0.02, 0.01, 0.03), _verdict(False, 0.0, -0.01, 0.01), 0.005).promote
    neither = combine(blind, _verdict(False, 0.001, -0.01, 0.01), 0.005)
    assert not neither.promote and "held-out feedback" in neither.reason and "dev split" in neither.reason


def test_gate_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="margin"):
        Gate(margin=-1)
    with pytest.raises(ConfigError, match="confidence"):
        Gate(confidence=1.5)


# ---- the registry ---------------------------------------------------------------------------
def test_registry_records_candidates_and_walks_back_promotions(feedback: Any) -> None:
    reg = Registry(feedback)
    assert reg.serving("kb") == ServingState() and reg.version("kb") == 0
    a = reg.add("kb", "fusion", change={"legs": ["dense"]}, data_hash="h1", metrics={"x": 1})
    b = reg.add("kb", "reranker", change={"reranker": "/models/r1"}, base="/models/r0")
    assert [c.candidate_id for c in reg.candidates("kb")] == [a.candidate_id, b.candidate_id]
    s1 = reg.promote(a.candidate_id)
    s2 = reg.promote(b.candidate_id)
    assert (s1.version, s2.version) == (1, 2)
    assert reg.serving("kb").legs == ("dense",) and reg.serving("kb").reranker == "/models/r1"
    now, undone = reg.rollback("kb")
    assert undone.reranker == "/models/r1" and now.reranker is None and now.legs == ("dense",)
    assert reg.candidate(b.candidate_id).decision == "rolled_back"
    now, _ = reg.rollback("kb")
    assert now.legs is None and reg.serving("kb").version == 4
    with pytest.raises(InputError, match="nothing to roll back"):
        reg.rollback("kb")
    assert [h["action"] for h in reg.history("kb")] == ["promote", "promote", "rollback", "rollback"]


def test_registry_refuses_bad_input(feedback: Any) -> None:
    reg = Registry(feedback)
    with pytest.raises(InputError, match="kind"):
        reg.add("kb", "magic", change={})
    with pytest.raises(InputError, match="unknown serving setting"):
        reg.add("kb", "fusion", change={"colour": "red"})
    with pytest.raises(InputError, match="sdk learn --list"):
        reg.candidate("nope")
    assert reg.candidates() == []  # nothing half-written


# ---- pipelines follow promotions ------------------------------------------------------------
def test_pipeline_applies_and_follows_the_serving_state(store: MemoryAdapter, feedback: Any) -> None:
    pipe = _pipeline(store, feedback, refresh_seconds=0)
    pipe.add_documents(corpus())
    assert pipe.legs == ("dense", "sparse") and pipe.serving_version == 0
    reg = Registry(feedback)
    cand = reg.add("kb", "fusion", change={"legs": ["dense"]})
    reg.promote(cand.candidate_id)
    assert pipe.legs == ("dense", "sparse")  # not before its next refresh
    assert pipe.refresh_learned() and pipe.legs == ("dense",) and pipe.sparse_encoder is None
    assert pipe.search("apt help").fusion == "none"
    fitted = reg.add("kb", "fusion", change={"legs": ["dense", "sparse"],
                                               "fusion": {"method": "weighted", "k": 60, "weights": {"dense": 0.8,
                                                                                                     "sparse": 0.2}}})
    reg.promote(fitted.candidate_id)
    pipe.refresh_learned()
    assert pipe.fusion.method is FusionMethod.WEIGHTED and pipe.fusion.weights["dense"] == 0.8
    reg.rollback("kb")
    pipe.refresh_learned()
    assert pipe.legs == ("dense",)
    late = _pipeline(store, feedback, refresh_seconds=0)  # a new pipeline starts with what is served
    assert late.legs == ("dense",) and late.serving_version == pipe.serving_version
    unlearned = _pipeline(store, feedback, learned=False)
    assert unlearned.legs == ("dense", "sparse")
    for p in (pipe, late, unlearned):
        p.close()


def test_background_refresh_swaps_without_errors(store: MemoryAdapter, feedback: Any) -> None:
    pipe = _pipeline(store, feedback, refresh_seconds=0.05)
    pipe.add_documents(corpus())
    errors: list[BaseException] = []
    empty = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                if not pipe.search("python ssh help"):
                    empty.append(1)
            except BaseException as exc:  # noqa: BLE001 - the test collects every failure
                errors.append(exc)

    worker = threading.Thread(target=loop)
    worker.start()
    reg = Registry(feedback)
    for change in ({"legs": ["dense"]}, {"legs": ["sparse"]}, {"legs": ["dense", "sparse"]}):
        reg.promote(reg.add("kb", "fusion", change=change).candidate_id)
        time.sleep(0.3)
    reg.rollback("kb")
    deadline = time.monotonic() + 60  # the poller runs every 0.05 s; a loaded CI machine may delay it
    while pipe.serving_version != 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # the query loop keeps running on the final state
    stop.set()
    worker.join()
    assert pipe.legs == ("sparse",) and pipe.serving_version == 4
    assert not errors and not empty
    pipe.close()


def test_a_broken_promotion_keeps_serving_and_is_logged(store: MemoryAdapter, feedback: Any,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    pipe = _pipeline(store, feedback, refresh_seconds=0)
    pipe.add_documents(corpus())
    reg = Registry(feedback)
    reg.promote(reg.add("kb", "reranker", change={"reranker": "/no/such/model"}).candidate_id)
    assert not pipe.refresh_learned()
    assert pipe.reranker is None and pipe.search("apt help")
    assert "could not apply the serving state" in caplog.text
    pipe.close()


def test_learned_needs_a_feedback_store(store: MemoryAdapter) -> None:
    with pytest.raises(ConfigError, match="feedback="):
        _pipeline(store, learned=True)


# ---- fitting the fusion ---------------------------------------------------------------------
def test_fusion_choices_follow_the_store_capabilities(store: MemoryAdapter) -> None:
    from dataclasses import replace

    from sdk.core.types import Fusion

    caps = store.capabilities
    all_choices = fusion_choices(caps, ("dense", "sparse"), Fusion())
    assert {"legs": ["dense"], "fusion": None} in all_choices
    assert any(c["fusion"] and c["fusion"]["weights"] for c in all_choices)
    qdrant_like = replace(caps, fusions=frozenset({FusionMethod.RRF, FusionMethod.DBSF}), rrf_weights=False,
                          dbsf_weights=False)
    limited = fusion_choices(qdrant_like, ("dense", "sparse"), Fusion())
    assert all(not c["fusion"]["weights"] for c in limited if c["fusion"])  # no weights the engine would ignore
    assert len(limited) == 4


def test_fitted_fusion_beats_equal_rrf_and_is_never_below_the_best_leg(filled: RetrievalPipeline) -> None:
    qs = queries()
    qrels = {q: {q: 1} for q in qs}
    runs_fit = fit_fusion(filled, qs, qrels)
    assert runs_fit is not None
    table = dict(runs_fit.table)
    best_leg = max(table["dense only"], table["sparse only"])
    assert runs_fit.train_ndcg >= best_leg
    assert runs_fit.train_ndcg > runs_fit.current_ndcg  # equal-weight RRF with the noise leg is worse
    assert runs_fit.change["legs"] == ["dense"] or runs_fit.change["fusion"]["weights"].get("dense", 0) > 0.5


# ---- the learner ----------------------------------------------------------------------------
def test_learner_promotes_the_better_fusion_and_pipelines_follow(filled: RetrievalPipeline, store: MemoryAdapter,
                                                                 feedback: Any) -> None:
    with Learner(store, "kb", feedback, dense=FakeDense(), sparse=NoiseSparse(),
                 gate=Gate(margin=0.01, min_queries=5)) as learner:
        report = learner.learn(["fusion", "reranker"])
        fusion, reranker = report.steps
        assert fusion.decision == "promoted", fusion.reason
        assert fusion.gate["delta"] > 0.01 and fusion.gate["low"] > 0
        assert reranker.decision == "skipped" and "no reranker" in reranker.reason
        assert filled.refresh_learned() and filled.serving_version == report.serving_version
        cand = learner.registry.candidate(fusion.candidate_id)
        assert cand.data_hash == report.data_hash and cand.metrics["labels"]["train_queries"] > 0
        again = learner.learn(["fusion"])
        assert again.steps[0].decision == "skipped" and "already the best" in again.steps[0].reason
        now, undone = learner.rollback()
        assert undone.candidate_id == fusion.candidate_id and now.legs is None
    filled.refresh_learned()
    assert filled.legs == ("dense", "sparse")


def test_dry_run_promotes_nothing_and_promote_applies_it_later(filled: RetrievalPipeline, store: MemoryAdapter,
                                                               feedback: Any) -> None:
    with Learner(store, "kb", feedback, dense=FakeDense(), sparse=NoiseSparse(),
                 gate=Gate(margin=0.01, min_queries=5)) as learner:
        report = learner.learn(["fusion"], dry_run=True)
        step = report.steps[0]
        assert step.decision == "pending" and learner.registry.version("kb") == 0
        state = learner.promote(step.candidate_id)
        assert state.version == 1
        with pytest.raises(InputError, match="already promoted"):
            learner.promote(step.candidate_id)


def test_a_worse_reranker_is_refused(filled: RetrievalPipeline, store: MemoryAdapter, feedback: Any,
                                     tmp_path: Path) -> None:
    from tests.encoder_fixtures import build_tiny_cross_encoder

    base = build_tiny_cross_encoder(tmp_path / "tiny-ce", 1)
    with Learner(store, "kb", feedback, dense=FakeDense(), sparse=NoiseSparse(), reranker_base=str(base),
                 artifacts=tmp_path / "cands", gate=Gate(margin=0.01, min_queries=5),
                 train_options={"epochs": 1.0, "batch_size": 8}) as learner:
        report = learner.learn(["reranker"])
        step = report.steps[0]
        assert step.decision == "refused", step.reason  # a random tiny reranker shuffles the good dense order
        assert step.gate["delta"] < 0
        assert learner.registry.version("kb") == 0
        assert Path(learner.registry.candidate(step.candidate_id).artifact).is_dir()
        with pytest.raises(InputError, match="refused"):
            learner.promote(step.candidate_id)


def test_learning_without_held_out_feedback_says_so(store: MemoryAdapter, feedback: Any) -> None:
    pipe = _pipeline(store, feedback)
    pipe.add_documents(corpus())
    with Learner(store, "kb", feedback, dense=FakeDense(), sparse=NoiseSparse()) as learner, \
            pytest.raises(InputError, match="collect more feedback"):
        learner.learn(["fusion"])
    with Learner(store, "kb", feedback, dense=FakeDense(), sparse=NoiseSparse()) as learner, \
            pytest.raises(ConfigError, match="unknown learning step"):
        learner.learn(["magic"])
    pipe.close()


def test_a_dev_split_grades_the_documents_behind_chunk_hits(store: MemoryAdapter, feedback: Any,
                                                            tmp_path: Path) -> None:
    """Sync stores chunks ("<doc>#0") that name their document in metadata; BEIR qrels name documents."""
    import json

    pipe = _pipeline(store, feedback, refresh_seconds=0)
    pipe.add_documents([Document(f"{d.id}#0", d.text, {"document_id": d.id}) for d in corpus()])
    for _ in range(2):
        for target, q in queries().items():
            result = pipe.search(q)
            hit = next((h for h in result if h.metadata.get("document_id") == target), None)
            if hit is not None:
                pipe.feedback(result.search_id, hit.id, "click")
    pipe.feedback_store.flush()
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": d.id, "text": d.text}) + "\n" for d in corpus()))
    (beir / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries().items()))
    (beir / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                            + "".join(f"{q}\t{q}\t1\n" for q in queries()))
    with Learner(store, "kb", feedback, dense=FakeDense(), sparse=NoiseSparse(), dev=(beir, "dev"),
                 gate=Gate(margin=0.01, min_queries=5)) as learner:
        step = learner.learn(["fusion"]).steps[0]
    dev = step.detail["dev"]
    assert dev["queries"] == len(queries())
    assert dev["current"] > 0.2 and dev["candidate"] > dev["current"]  # documents matched (0 before), the fit helps
    assert step.decision == "promoted", step.reason
    pipe.close()


class PermutedDense(FakeDense):
    """Another model of the same width: FakeDense's dimensions in reverse order."""

    def _one(self, text: str) -> np.ndarray:
        return super()._one(text)[::-1].copy()


def test_fusion_is_fitted_with_the_served_encoder_and_its_collection(filled: RetrievalPipeline,
                                                                     store: MemoryAdapter) -> None:
    """After an encoder promotion the served snapshot pairs the new encoder with the version built by it;
    fitting must rank with that pair, not with the pipeline's configured encoder and collection."""
    from sdk.learning.fusion import leg_rankings

    v2 = RetrievalPipeline(PermutedDense(), NoiseSparse(), store=store, collection="kb_v2", limit=10)
    v2.add_documents(corpus())
    v2.close()
    snap = filled._snapshot(PermutedDense(), filled._base.sparse, None, filled._base.fusion, ("dense", "sparse"),
                            "kb_v2", learned=True)
    qs = queries()
    served = leg_rankings(filled, qs, serving=snap)["dense"]
    assert sum(served[q][0][0] == q for q in qs) >= 0.8 * len(qs)
    mismatched = filled._snapshot(FakeDense(), filled._base.sparse, None, filled._base.fusion, ("dense", "sparse"),
                                  "kb_v2", learned=True)  # what fitting with the configured encoder used to do
    with pytest.raises(SchemaMismatchError, match="another dense encoder"):  # refused, no longer silent garbage
        leg_rankings(filled, qs, serving=mismatched)
    fit = fit_fusion(filled, qs, {q: {q: 1} for q in qs}, serving=snap)
    assert fit is not None and fit.train_ndcg > 0.8
