"""Staged builds (``sync(..., stage=True)``): a candidate version next to the live one, promoted or discarded later.

The memory store with two tiny random encoders that differ (BERT, 32-d; MPNet with a projection,
24-d): the live version is built with BERT, the candidate with MPNet (or with BERT and another
chunking).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adapters.memory import MemoryAdapter
from sdk.core.errors import CapabilityError, ConfigError, DimensionMismatchError, SyncError
from sdk.retrieval import RetrievalPipeline
from sdk.sync import Ledger, discard_staged, plan, rollback, status, sync, verify
from tests.unit.test_sync import NoAliases, text, write_folder
from tests.unit.test_sync_crash_points import AFTER, BEFORE, Cached, Crash, crash_after, disarm, problems, put


class Killed(BaseException):
    """The process dies in the middle of a write (BaseException: no handler catches it)."""


@pytest.fixture(scope="module")
def mpnet(tiny_mpnet_dir: Path) -> Any:
    from sdk.encoders.dense import DenseEncoder

    return DenseEncoder(tiny_mpnet_dir, device="cpu")


@pytest.fixture
def env(tmp_path: Path, tiny_bert: Any, mpnet: Any) -> Iterator[dict[str, Any]]:
    store = MemoryAdapter()
    docs = {f"doc{i}.txt": text(i, 20 + 10 * (i % 3)) for i in range(8)}
    docs["long.md"] = " ".join(text(100 + k, 25) for k in range(4))  # several chunks
    book = Ledger.open(":memory:", key="kb")
    yield {"store": store, "ledger": book, "old": tiny_bert, "new": mpnet,
           "src": write_folder(tmp_path / "src", docs)}
    book.close()
    store.close()


def run(env: dict[str, Any], encoder: str = "old", **kw: Any) -> Any:
    return sync(env["src"], env["store"], "kb", dense=env[encoder], sparse=False, ledger=env["ledger"], **kw)


def info(env: dict[str, Any]) -> dict[str, Any]:
    return status(env["store"], "kb", ledger=env["ledger"])


def vectors(store: MemoryAdapter, name: str) -> dict[str, tuple[str, np.ndarray]]:
    """chunk id -> (text, dense vector) of every point in ``name``."""
    return {r.id: (r.text, np.asarray(next(iter(r.vectors.values())))) for r in store.get(name, list(store.ids(name)))}


def built_by(encoder: Any, stored: dict[str, tuple[str, np.ndarray]]) -> bool:
    """Every stored vector is ``encoder``'s encoding of the stored text."""
    ids = sorted(stored)
    want = np.asarray(encoder.encode_document([stored[i][0] for i in ids]))
    got = np.stack([stored[i][1] for i in ids])
    return got.shape == want.shape and bool(np.allclose(got, want, atol=1e-4))


def same(a: dict[str, tuple[str, np.ndarray]], b: dict[str, tuple[str, np.ndarray]]) -> bool:
    return a.keys() == b.keys() and all(a[i][0] == b[i][0] and np.array_equal(a[i][1], b[i][1]) for i in a)


def hits(encoder: Any, store: MemoryAdapter, collection: str, query: str) -> list[tuple[str, float]]:
    found = RetrievalPipeline(encoder, store=store, collection=collection, limit=5).search(query)
    return [(h.id, round(float(h.score), 5)) for h in found]


def test_a_staged_build_leaves_the_alias_and_searches_alone(env: dict[str, Any]) -> None:
    store = env["store"]
    run(env)
    query = text(3, 20)
    before = hits(env["old"], store, "kb", query)
    live = vectors(store, "kb")
    planned = plan(env["src"], store, "kb", dense=env["new"], sparse=False, ledger=env["ledger"], stage=True)
    assert planned.staged == "kb_v2" and not store.exists("kb_v2") and "staged" in planned.summary()

    report = run(env, "new", stage=True)
    assert report.staged == report.collection == "kb_v2" and report.alias == "kb" and report.dropped == []
    assert report.added == 9 and report.to_dict()["staged"] == "kb_v2" and "staged kb_v2" in report.summary()
    assert store.describe("kb").name == "kb_v1"  # the alias did not move
    staged = vectors(store, "kb_v2")
    assert set(staged) == set(live) and built_by(env["new"], staged)  # all chunks, the candidate's vectors
    assert same(vectors(store, "kb"), live)  # the live version is untouched
    assert hits(env["old"], store, "kb", query) == before
    with pytest.raises(DimensionMismatchError):  # 24-d candidate, 32-d live version
        RetrievalPipeline(env["new"], store=store, collection="kb")
    assert hits(env["new"], store, "kb_v2", query)  # the candidate is searchable by its physical name

    state = info(env)
    assert (state["collection"], state["staged"], state["staged_complete"]) == ("kb_v1", "kb_v2", True)
    assert state["versions"] == ["kb_v1"] and env["ledger"].get("building") is None
    again = run(env, "new", stage=True)  # nothing changed: nothing encoded, still staged
    assert again.staged == "kb_v2" and again.chunks_encoded == 0 and store.describe("kb").name == "kb_v1"
    assert not verify(store, "kb", ledger=env["ledger"]).drift


def test_regular_runs_leave_the_candidate_and_promotion_catches_up(env: dict[str, Any]) -> None:
    store, src = env["store"], env["src"]
    run(env)
    run(env, "new", stage=True)
    staged_before = vectors(store, "kb_v2")
    (src / "doc1.txt").write_text(text(501, 25), encoding="utf8")  # edited
    (src / "doc2.txt").unlink()  # deleted
    (src / "added.txt").write_text(text(502, 30), encoding="utf8")

    cron = run(env)  # the live encoder: updates kb_v1 in place, the candidate stays as it was
    assert cron.collection == "kb_v1" and cron.staged is None and (cron.added, cron.updated, cron.deleted) == (1, 1, 1)
    assert store.describe("kb").name == "kb_v1" and same(vectors(store, "kb_v2"), staged_before)
    assert info(env)["staged"] == "kb_v2"
    live_ids = set(store.ids("kb"))
    assert "added.txt#0" in live_ids and not any(i.startswith("doc2.txt#") for i in live_ids)

    promoted = run(env, "new")  # no stage, the candidate's settings: catch up with the source, then switch
    assert promoted.collection == "kb_v2" and promoted.staged is None and promoted.reindex
    assert (promoted.added, promoted.updated, promoted.deleted) == (1, 1, 1)
    assert promoted.chunks_encoded == 2  # only the edited and the added document
    assert store.describe("kb").name == "kb_v2"
    now_live = vectors(store, "kb")
    assert set(now_live) == live_ids and built_by(env["new"], now_live)
    assert now_live["doc1.txt#0"][0] == text(501, 25)
    state = info(env)
    assert (state["collection"], state["staged"], state["versions"]) == ("kb_v2", None, ["kb_v1", "kb_v2"])
    assert not verify(store, "kb", ledger=env["ledger"]).drift

    back = rollback(store, "kb", ledger=env["ledger"])
    assert back == {"alias": "kb", "collection": "kb_v1", "from": "kb_v2"}
    assert built_by(env["old"], vectors(store, "kb")) and set(store.ids("kb")) == live_ids


def test_discard_and_a_second_candidate_drop_the_staged_version(env: dict[str, Any]) -> None:
    store, book = env["store"], env["ledger"]
    run(env)
    assert discard_staged(store, "kb", ledger=book) is None  # nothing staged
    run(env, "new", stage=True)
    assert discard_staged(store, "kb", ledger=book) == "kb_v2"
    assert not store.exists("kb_v2") and book.counts("kb_v2") == (0, 0) and info(env)["staged"] is None
    assert store.describe("kb").name == "kb_v1"

    first = run(env, "new", stage=True)
    second = run(env, stage=True, chunk_tokens=16)  # another candidate (other chunking) replaces it
    assert (first.staged, second.staged) == ("kb_v3", "kb_v4")
    assert not store.exists("kb_v3") and book.counts("kb_v3") == (0, 0) and store.exists("kb_v4")
    assert info(env)["staged"] == "kb_v4" and store.describe("kb").name == "kb_v1"
    with pytest.raises(SyncError, match="nothing to stage"):
        run(env, stage=True)  # the live settings
    assert info(env)["staged"] == "kb_v4"  # a refused run drops nothing
    promoted = run(env, chunk_tokens=16)
    assert promoted.collection == "kb_v4" and promoted.chunks_encoded == 0 and store.describe("kb").name == "kb_v4"
    assert info(env)["versions"] == ["kb_v1", "kb_v4"] and info(env)["staged"] is None


def test_a_killed_staged_build_resumes_into_the_same_version(env: dict[str, Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    store = env["store"]
    run(env)
    real = store.upsert
    calls = {"n": 0}

    def dies_after_two_batches(*args: Any, **kwargs: Any) -> Any:
        if args[0] == "kb_v2":
            calls["n"] += 1
            if calls["n"] > 2:
                raise Killed
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(store, "upsert", dies_after_two_batches)
        with pytest.raises(Killed):
            run(env, "new", stage=True, batch_size=2)
    assert store.describe("kb").name == "kb_v1" and store.exists("kb_v2")
    state = info(env)
    assert (state["staged"], state["staged_complete"]) == ("kb_v2", False)
    written = len(list(store.ids("kb_v2")))
    assert written == 4

    cron = run(env)  # a regular run meanwhile leaves the half-built candidate alone
    assert cron.collection == "kb_v1" and store.exists("kb_v2") and info(env)["staged"] == "kb_v2"

    resumed = run(env, "new", stage=True, batch_size=2)
    assert resumed.staged == resumed.collection == "kb_v2" and store.describe("kb").name == "kb_v1"
    assert resumed.chunks_written == len(list(store.ids("kb_v2"))) - written  # only what the kill left out
    assert info(env)["staged_complete"] and built_by(env["new"], vectors(store, "kb_v2"))
    assert set(store.ids("kb_v2")) == set(store.ids("kb"))


def test_a_killed_promotion_is_finished_by_the_next_promotion(env: dict[str, Any],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store = env["store"]
    run(env)
    run(env, "new", stage=True)
    (env["src"] / "late.txt").write_text(text(600, 30), encoding="utf8")
    with monkeypatch.context() as patch:
        patch.setattr(store, "switch_alias", lambda *a, **k: (_ for _ in ()).throw(Killed()))
        with pytest.raises(Killed):
            run(env, "new")
    assert store.describe("kb").name == "kb_v1"
    run(env)  # cron: keeps the live version, does not drop the candidate it finds half-promoted
    assert store.exists("kb_v2") and info(env)["staged"] == "kb_v2" and env["ledger"].get("building") is None
    promoted = run(env, "new")
    assert promoted.collection == "kb_v2" and store.describe("kb").name == "kb_v2" and info(env)["staged"] is None
    assert "late.txt#0" in set(store.ids("kb"))


def test_staging_needs_a_live_version_and_aliases(env: dict[str, Any]) -> None:
    with pytest.raises(SyncError, match="nothing is live"):
        run(env, "new", stage=True)
    assert not env["store"].exists("kb_v1")
    env["store"] = NoAliases()
    with pytest.raises(CapabilityError, match="no aliases"):
        run(env, "new", stage=True)
    with pytest.raises(ConfigError, match="stage must be True or False"):
        run(env, stage="yes")


def test_staging_a_kept_version_reuses_it_and_discard_keeps_it(env: dict[str, Any]) -> None:
    store = env["store"]
    run(env)
    run(env, chunk_tokens=16)  # kb_v2, live
    rollback(store, "kb", ledger=env["ledger"])  # kb_v1 live again, kb_v2 kept
    staged = run(env, stage=True, chunk_tokens=16)
    assert staged.staged == "kb_v2" and staged.chunks_encoded == 0 and store.describe("kb").name == "kb_v1"
    assert discard_staged(store, "kb", ledger=env["ledger"]) is None  # kept for rollback: stays in the store
    assert store.exists("kb_v2") and info(env)["staged"] is None and info(env)["versions"] == ["kb_v1", "kb_v2"]
    run(env, stage=True, chunk_tokens=16)
    promoted = run(env, chunk_tokens=16)
    assert promoted.collection == "kb_v2" and store.describe("kb").name == "kb_v2" and info(env)["staged"] is None


def test_a_crash_after_any_write_of_a_staged_build_or_its_promotion_is_repaired(
        tmp_path: Path, tiny_bert: Any, mpnet: Any) -> None:
    """Like tests/unit/test_sync_crash_points.py: stop the staged run, then the promotion, after each write."""
    old, new = Cached(tiny_bert), Cached(mpnet)
    folder = tmp_path / "src"

    def go(book: Ledger, store: MemoryAdapter, encoder: Any, **kw: Any) -> Any:
        return sync(folder, store, "kb", dense=encoder, sparse=False, ledger=book, batch_size=3, **kw)

    failures: list[str] = []
    for phase in ("stage", "promote"):
        at = 0
        while True:
            at += 1
            store, book = MemoryAdapter(), Ledger.open(":memory:", key="kb")
            put(folder, BEFORE)
            go(book, store, old)
            if phase == "promote":
                go(book, store, new, stage=True)
                put(folder, AFTER)
            log = crash_after(at, store, book)
            try:
                go(book, store, new, stage=phase == "stage")
            except Crash:
                pass
            else:
                assert at > 10, f"the {phase} run made only {len(log)} writes"
                break
            finally:
                disarm(store, book)
            put(folder, AFTER if phase == "stage" else BEFORE)  # the source changes meanwhile
            if phase == "stage":
                go(book, store, old)  # a regular run in between: the candidate stays
                staged = go(book, store, new, stage=True)
                found = [] if staged.collection == "kb_v2" and store.describe("kb").name == "kb_v1" else [
                    f"staged into {staged.collection}, alias on {store.describe('kb').name}"]
            else:
                found = []
            go(book, store, new)  # promotion
            found += problems(store, book, new, folder, None)
            if found:
                failures.append(f"{phase}: crash after write {at} ({log[-1]}): " + "; ".join(found))
            book.close()
    assert not failures, "\n".join(failures)
