"""``sdk learn`` / ``sdk promote`` / ``sdk rollback`` and ``sdk feedback`` from the command line, on
Qdrant's embedded mode (a folder) with tiny random models: what is tested is the plumbing (models
from the sync ledger, the registry, JSON output, errors as one line), not the quality."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sdk.cli.main import main
from sdk.feedback.registry import Registry
from tests.encoder_fixtures import build_tiny_mlm
from tests.unit.test_learning import corpus, queries


@pytest.fixture
def world(tmp_path: Path, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from sdk.encoders.dense import DenseEncoder
    from sdk.encoders.sparse import SparseEncoder
    from sdk.retrieval import RetrievalPipeline

    monkeypatch.setenv("SDK_LEDGER_DIR", str(tmp_path / "ledgers"))
    monkeypatch.setenv("SDK_LEARN_DIR", str(tmp_path / "candidates"))
    source = tmp_path / "kb.jsonl"
    source.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in corpus()), encoding="utf8")
    mlm = build_tiny_mlm(tmp_path / "mlm")
    store = f"qdrant+local:{tmp_path / 'qdrant'}"
    assert main(["sync", str(source), "--store", store, "--collection", "kb", "--dense-model", str(tiny_bert_dir),
                 "--sparse-model", str(mlm)]) == 0
    feedback = tmp_path / "feedback.db"
    pipe = RetrievalPipeline(DenseEncoder(tiny_bert_dir, device="cpu"), SparseEncoder(mlm, device="cpu"), store=store,
                             collection="kb", feedback=f"sqlite:///{feedback}", refresh_seconds=0)
    try:
        for _ in range(2):
            for target, q in queries().items():
                result = pipe.search(q)
                pipe.feedback(result.search_id, f"{target}#0", "used")  # the answer cited it, shown or not
                pipe.feedback(result.search_id, result[0].id, "click")
    finally:
        pipe.close()
    return {"store": store, "feedback": str(feedback), "args": ["--store", store, "--collection", "kb",
                                                                "--feedback", str(feedback)]}


def test_learn_promote_list_and_rollback(world: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    args = world["args"]
    assert main(["feedback", "stats", "--feedback", world["feedback"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["impressions"] == 2 * len(queries())
    assert main(["learn", *args, "--steps", "fusion", "--min-queries", "1", "--margin", "0", "--dry-run",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    step = report["steps"][0]
    assert report["dry_run"] and step["kind"] == "fusion"
    assert report["labels"]["eval_queries"] >= 1 and report["serving_version"] == 0
    if step["candidate_id"] is None:  # the served fusion already fits best: record one to promote by hand
        reg_store = __import__("sdk.feedback", fromlist=["open_feedback_store"]).open_feedback_store(world["feedback"])
        step["candidate_id"] = Registry(reg_store).add("kb", "fusion", change={"legs": ["dense"]}).candidate_id
        reg_store.close()
    assert main(["promote", step["candidate_id"], *args, "--force"]) == 0
    assert "now serves version 1" in capsys.readouterr().out
    assert main(["search", "apt dpkg help", "--store", world["store"], "--collection", "kb", "--feedback",
                 world["feedback"], "--json"]) == 0  # serves the promotion and records the search
    found = json.loads(capsys.readouterr().out)
    assert len(found["search_id"]) == 32 and found["hits"]
    assert main(["feedback", "stats", "--feedback", world["feedback"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["impressions"] == 2 * len(queries()) + 1
    assert main(["learn", *args, "--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [c["decision"] for c in listed["candidates"]] == ["promoted"]
    assert [h["action"] for h in listed["serving"]] == ["promote"]
    assert main(["rollback", *args]) == 0
    assert "serves version 2" in capsys.readouterr().out
    assert main(["rollback", *args]) == 1
    assert "nothing to roll back" in capsys.readouterr().err


def test_learn_cli_errors_are_one_line(world: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    args = world["args"]
    assert main(["learn", *args, "--steps", "magic"]) == 1
    assert "unknown learning step" in capsys.readouterr().err
    assert main(["learn", *args, "--dev", "nocolon"]) == 1
    assert "FOLDER:SPLIT" in capsys.readouterr().err
    assert main(["promote", "no-such-candidate", *args]) == 1
    assert "sdk learn --list" in capsys.readouterr().err


def test_encoder_steps_stage_promote_and_roll_back(world: dict[str, Any], tmp_path: Path) -> None:
    """Dense and sparse candidates are trained, staged through sync (alias untouched), promoted (alias
    and serving state move, a following pipeline switches encoder and collection) and rolled back."""
    from sdk.core.registry import connect
    from sdk.learning import Gate, Learner
    from sdk.sync import status

    adapter = connect(world["store"])
    try:
        live = adapter.describe("kb").name
        book = _ledger(world)  # the ledger `sdk sync` used: a store given as an object needs it named
        with Learner(adapter, "kb", world["feedback"], ledger=book, gate=Gate(margin=0.0, min_queries=1),
                     settle_seconds=0.0, train_options={"max_steps": 2, "batch_size": 8}) as learner:
            report = learner.learn(["dense", "sparse"], dry_run=True)
            dense, sparse = report.steps
            assert (dense.kind, dense.decision, sparse.kind, sparse.decision) == ("dense", "pending", "sparse", "pending")
            staged = status(adapter, "kb", ledger=learner.book)["staged"]
            assert staged and staged != live and adapter.describe("kb").name == live
            learner.promote(sparse.candidate_id, force=True)
            assert adapter.describe("kb").name == staged
            serving = learner.registry.serving("kb")
            assert serving.physical == staged and serving.sparse.endswith(
                Path(learner.registry.candidate(sparse.candidate_id).artifact).name)
            learner.rollback()
            assert adapter.describe("kb").name == live and learner.registry.serving("kb").physical is None
        book.close()
    finally:
        adapter.close()


def _ledger(world: dict[str, Any]) -> Any:
    from sdk.sync.ledger import Ledger, ledger_key

    return Ledger.open(None, key=ledger_key(world["store"], "kb"))
