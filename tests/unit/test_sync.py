"""sdk sync on the exact memory store: counts, chunk-level re-encoding, guards, blue/green, verify, CLI."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adapters.memory import MemoryAdapter
from sdk.core.errors import CapabilityError, SourceError, SyncError
from sdk.core.types import HybridQuery
from sdk.sync import Ledger, plan, rollback, status, sync, verify

WORDS = ("the a of to and in is for on with how do i what python package install use list tuple debian "
         "database vector search query document sentence text model encode file data system user error set "
         "can be it this that from by as are not or at you which new make run type value table key").split()


def text(seed: int, words: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words)) + "."


def write_folder(folder: Path, docs: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in docs.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf8")
    return folder


class Counting:
    """Wraps an encoder and counts the texts it embeds (the measure of re-encoding)."""

    def __init__(self, encoder: Any) -> None:
        self.encoder, self.texts = encoder, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.encoder, name)

    def encode_document(self, texts: list[str], **kwargs: Any) -> Any:
        self.texts += len(texts)
        return self.encoder.encode_document(texts, **kwargs)


@pytest.fixture
def env(tmp_path: Path, tiny_bert: Any) -> Iterator[dict[str, Any]]:
    store = MemoryAdapter()
    counting = Counting(tiny_bert)
    docs = {f"doc{i}.txt": text(i, 20 + 15 * (i % 4)) for i in range(12)}
    docs["long/guide.md"] = " ".join(text(100 + k, 25) for k in range(8))  # several chunks
    yield {"store": store, "dense": counting, "ledger": tmp_path / "ledger.sqlite",
           "src": write_folder(tmp_path / "src", docs), "docs": docs}
    store.close()


def run(env: dict[str, Any], **kw: Any) -> Any:
    kw.setdefault("sparse", False)
    return sync(kw.pop("src", env["src"]), env["store"], "kb", dense=env["dense"], ledger=env["ledger"], **kw)


def contents(store: MemoryAdapter, name: str = "kb") -> dict[str, str]:
    ids = sorted(store.ids(name))
    return {r.id: r.text for r in store.get(name, ids)}


def test_first_sync_then_unchanged_rerun_encodes_nothing(env: dict[str, Any]) -> None:
    first = run(env)
    assert (first.added, first.updated, first.deleted, first.unchanged) == (13, 0, 0, 0)
    assert first.alias == "kb" and first.collection == "kb_v1" and first.chunks_written == first.chunks_encoded
    assert first.chunks_written > 13  # the long guide is several chunks
    stored = contents(env["store"])
    assert len(stored) == first.chunks_written == first.chunks_total
    assert env["store"].describe("kb").name == "kb_v1"
    encoded = env["dense"].texts
    again = run(env)
    assert (again.added, again.updated, again.deleted, again.unchanged) == (0, 0, 0, 13)
    assert again.chunks_encoded == again.chunks_written == again.chunks_deleted == 0
    assert env["dense"].texts == encoded  # nothing embedded
    assert contents(env["store"]) == stored
    info = status(env["store"], "kb", ledger=env["ledger"])
    assert (info["documents"], info["chunks"], info["collection"], info["alias"]) == (13, len(stored), "kb_v1", "kb")
    assert info["encoder"].startswith("dense=") and info["last_run"]["unchanged"] == 13


def test_editing_a_document_re_encodes_only_its_changed_chunks(env: dict[str, Any]) -> None:
    run(env)
    guide = env["src"] / "long" / "guide.md"
    guide.write_text(guide.read_text(encoding="utf8") + " debian package install vector search.", encoding="utf8")
    before = env["dense"].texts
    report = run(env)
    assert (report.added, report.updated, report.deleted, report.unchanged) == (0, 1, 0, 12)
    assert report.chunks_encoded == 1 and env["dense"].texts - before == 1  # the last chunk only
    stored = contents(env["store"])
    assert any(t.endswith("vector search.") for t in stored.values())


def test_deleting_and_shrinking_documents(env: dict[str, Any]) -> None:
    first = run(env)
    (env["src"] / "doc3.txt").unlink()
    (env["src"] / "long" / "guide.md").write_text("the python package.", encoding="utf8")
    report = run(env)
    assert (report.added, report.updated, report.deleted, report.unchanged) == (0, 1, 1, 11)
    stored = contents(env["store"])
    assert not any(i.startswith("doc3.txt#") for i in stored)
    assert sorted(i for i in stored if i.startswith("long/guide.md#")) == ["long/guide.md#0"]
    assert report.chunks_total == len(stored) < first.chunks_total


def test_plan_writes_nothing(env: dict[str, Any]) -> None:
    report = plan(env["src"], env["store"], "kb", dense=env["dense"], sparse=False, ledger=env["ledger"])
    assert report.planned and report.added == 13 and report.chunks_encoded > 13
    assert not env["store"].exists("kb") and env["dense"].texts == 0
    assert "would" in report.summary()


def test_mass_delete_guard_and_empty_source(env: dict[str, Any], tmp_path: Path) -> None:
    run(env)
    moved = tmp_path / "moved"
    env["src"].rename(moved)
    env["src"].mkdir()  # the same source, now empty (a failed export, an unmounted share)
    with pytest.raises(SyncError, match="allow-mass-delete"):
        run(env)
    assert len(contents(env["store"])) > 13  # nothing deleted
    env["src"].rmdir()
    moved.rename(env["src"])
    for name in list(env["docs"])[:8]:
        (env["src"] / name).unlink()
    with pytest.raises(SyncError, match="would delete 8 of the 13"):
        run(env)
    report = run(env, allow_mass_delete=True)
    assert report.deleted == 8 and status(env["store"], "kb", ledger=env["ledger"])["documents"] == 5


def test_a_broken_source_deletes_and_writes_nothing(env: dict[str, Any], tmp_path: Path) -> None:
    good = tmp_path / "docs.jsonl"
    rows = [{"id": f"d{i}", "text": text(i, 30)} for i in range(6)]
    good.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf8")
    run(env, src=good)
    stored = contents(env["store"])
    good.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n{not json\n", encoding="utf8")
    with pytest.raises(SourceError, match=r"docs.jsonl:3"):
        run(env, src=good)
    assert contents(env["store"]) == stored


def test_blue_green_reindex_rollback_and_keep(env: dict[str, Any]) -> None:
    run(env)
    live = contents(env["store"])
    report = run(env, chunk_tokens=16)  # new chunking: a new physical collection, filled, then switched
    assert report.reindex and report.collection == "kb_v2" and report.added == 13
    assert env["store"].describe("kb").name == "kb_v2" and env["store"].exists("kb_v1")
    assert len(contents(env["store"])) > len(live)
    back = rollback(env["store"], "kb", ledger=env["ledger"])
    assert back == {"alias": "kb", "collection": "kb_v1", "from": "kb_v2"}
    assert contents(env["store"]) == live
    with pytest.raises(SyncError, match="no previous version"):
        rollback(env["store"], "kb", ledger=env["ledger"])
    again = run(env, chunk_tokens=16)  # back to the kept v2: nothing to encode, just the switch
    assert again.collection == "kb_v2" and again.chunks_encoded == 0
    third = run(env, chunk_tokens=24, keep=2)
    assert third.collection == "kb_v3" and third.dropped == ["kb_v1"] and not env["store"].exists("kb_v1")
    assert status(env["store"], "kb", ledger=env["ledger"])["versions"] == ["kb_v2", "kb_v3"]


def test_a_new_encoder_builds_a_new_version_and_old_pipelines_are_refused(env: dict[str, Any],
                                                                        tiny_mpnet_dir: Path) -> None:
    from sdk.core.errors import DimensionMismatchError, SchemaMismatchError
    from sdk.encoders.dense import DenseEncoder
    from sdk.retrieval import RetrievalPipeline

    run(env)
    mpnet = DenseEncoder(tiny_mpnet_dir, device="cpu")
    report = sync(env["src"], env["store"], "kb", dense=mpnet, sparse=False, ledger=env["ledger"])
    assert report.reindex and report.collection == "kb_v2" and report.added == 13
    assert env["store"].describe("kb").encoder == f"dense={mpnet.fingerprint()}"
    with pytest.raises(DimensionMismatchError):
        RetrievalPipeline(env["dense"].encoder, store=env["store"], collection="kb")
    assert RetrievalPipeline(mpnet, store=env["store"], collection="kb").search("python package")
    # same width, other vectors (a changed document prompt): still a new version, still refused
    prompted = DenseEncoder(tiny_mpnet_dir, device="cpu", prompts={"document": "passage: "})
    third = sync(env["src"], env["store"], "kb", dense=prompted, sparse=False, ledger=env["ledger"])
    assert third.reindex and third.collection == "kb_v3"
    with pytest.raises(SchemaMismatchError, match="another dense encoder"):
        RetrievalPipeline(mpnet, store=env["store"], collection="kb")


def test_an_existing_foreign_collection_is_not_taken_over(env: dict[str, Any]) -> None:
    from sdk.core.spec import CollectionSpec, DenseField

    env["store"].ensure_collection(CollectionSpec("kb", dense=(DenseField("dense", 32),)))
    with pytest.raises(SyncError, match="not created by sync"):
        run(env)


def test_verify_finds_and_repairs_drift(env: dict[str, Any], tiny_bert_dir: Path) -> None:
    sync(env["src"], env["store"], "kb", dense=str(tiny_bert_dir), sparse=False, ledger=env["ledger"])
    assert not verify(env["store"], "kb", ledger=env["ledger"]).drift
    ids = sorted(env["store"].ids("kb"))
    env["store"].delete("kb_v1", ids[:3])  # lost behind the ledger's back
    orphan = env["store"].get("kb_v1", ids[3:4])[0]
    env["store"].upsert("kb_v1", [type(orphan)("stray", orphan.vectors, orphan.sparse, "x", {})])
    report = verify(env["store"], "kb", ledger=env["ledger"])
    assert report.drift and report.missing == ids[:3] and report.orphans == ["stray"]
    fixed = verify(env["store"], "kb", ledger=env["ledger"], repair=True)
    assert fixed.repaired and not fixed.drift
    assert sorted(env["store"].ids("kb")) == ids


def test_store_objects_need_an_explicit_ledger(env: dict[str, Any]) -> None:
    from sdk.core.errors import ConfigError

    with pytest.raises(ConfigError, match="ledger"):
        sync(env["src"], env["store"], "kb", dense=env["dense"], sparse=False)


def test_sparse_leg_and_search_through_the_alias(env: dict[str, Any], tmp_path: Path) -> None:
    from sdk.encoders.sparse import SparseEncoder
    from sdk.retrieval import RetrievalPipeline
    from tests.encoder_fixtures import build_tiny_mlm

    sparse = SparseEncoder(build_tiny_mlm(tmp_path / "mlm"), device="cpu")
    report = sync(env["src"], env["store"], "kb", dense=env["dense"], sparse=sparse, ledger=env["ledger"])
    assert report.added == 13
    spec = env["store"].describe("kb")
    assert spec.sparse and spec.encoder.startswith("dense=sha256:") and ";sparse=sha256:" in spec.encoder
    pipe = RetrievalPipeline(env["dense"].encoder, sparse, store=env["store"], collection="kb", limit=3)
    hits = pipe.search(env["docs"]["doc5.txt"])  # random tiny models: check the plumbing, not the ranking
    assert len(hits) == 3 and all(h.metadata["document_id"] == h.id.split("#")[0] for h in hits)
    assert set(hits[0].scores_by_stage) == {"fused"} and pipe.fusion_mode == "native"
    q = HybridQuery(dense=np.asarray(env["dense"].encode_query("python")), limit=2)
    assert len(env["store"].query("kb", q)) == 2


class NoAliases(MemoryAdapter):
    """The memory store as Milvus Lite sees the world: no aliases."""

    @property
    def capabilities(self) -> Any:
        from dataclasses import replace

        from adapters.memory import MEMORY_CAPABILITIES

        return replace(MEMORY_CAPABILITIES, aliases=False)


def test_stores_without_aliases_sync_in_place(env: dict[str, Any]) -> None:
    env["store"] = store = NoAliases()
    report = run(env)
    assert report.collection == "kb" and report.alias is None and store.describe("kb").name == "kb"
    assert run(env).unchanged == 13
    with pytest.raises(CapabilityError, match="no aliases"):
        run(env, chunk_tokens=16)


def test_cli_sync_status_search_verify_rollback(tmp_path: Path, tiny_bert_dir: Path, capsys: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from sdk.cli.main import main

    monkeypatch.setenv("SDK_LEDGER_DIR", str(tmp_path / "ledgers"))
    src = write_folder(tmp_path / "src", {f"n{i}.txt": text(i, 30) for i in range(5)})
    store = f"qdrant+local:{tmp_path / 'q'}"
    common = ["--store", store, "--collection", "notes"]
    assert main(["sync", str(src), *common, "--dense-model", str(tiny_bert_dir), "--no-sparse", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {k: out[k] for k in ("added", "updated", "deleted", "unchanged")} == {
        "added": 5, "updated": 0, "deleted": 0, "unchanged": 0}
    assert {"chunks_encoded", "chunks_written", "chunks_deleted", "collection", "alias", "seconds"} <= set(out)
    assert main(["sync", "status", *common, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {k: info[k] for k in ("documents", "collection", "alias")} == {
        "documents": 5, "collection": "notes_v1", "alias": "notes"}
    assert {"chunks", "encoder", "last_run"} <= set(info)
    assert main(["search", text(2, 30), *common, "--json", "--limit", "2"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["hits"][0]["id"] == "n2.txt#0" and len(found["hits"]) == 2
    assert main(["sync", "verify", *common]) == 0
    assert "no drift" in capsys.readouterr().out
    assert main(["sync", "rollback", *common]) == 1  # only one version
    assert "no previous version" in capsys.readouterr().err
    assert main(["sync", str(tmp_path / "missing"), *common, "--dense-model", str(tiny_bert_dir)]) == 1
    assert "error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["sync", "--store", store])
    assert usage.value.code == 2


def test_ledger_in_memory_round_trip() -> None:
    with Ledger.open(":memory:", key="k") as book:
        book.set(live={"collection": "c_v1"}, next_version=2)
        book.put_chunks("c_v1", [("a#0", "a", "src", "fp1"), ("a#1", "a", "src", "fp2")])
        book.put_documents("c_v1", [("a", "src", "dfp", 2)])
        assert book.get("live") == {"collection": "c_v1"} and book.counts("c_v1") == (1, 2)
        book.put_chunks("c_v1", [("a#0", "a", "src", "fp9")])
        assert book.chunks("c_v1")["a#0"] == ("a", "src", "fp9")
        book.remove_chunks("c_v1", ["a#1"])
        book.set(live=None)
        assert book.get("live") is None and book.counts("c_v1") == (1, 1)
        book.forget_collection("c_v1")
        assert book.counts("c_v1") == (0, 0)


def test_a_killed_build_with_other_settings_is_dropped_not_left_behind(env: dict[str, Any],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from sdk.sync.engine import Syncer

    run(env)

    def killed(self: Any, *args: Any) -> None:
        raise KeyboardInterrupt  # the process dies in the middle of filling kb_v2

    with monkeypatch.context() as patch:
        patch.setattr(Syncer, "_delete", killed)
        with pytest.raises(KeyboardInterrupt):
            run(env, chunk_tokens=16)
    assert env["store"].exists("kb_v2") and env["store"].describe("kb").name == "kb_v1"
    report = run(env, chunk_tokens=24)  # other settings: kb_v2 will never be finished
    assert report.collection == "kb_v3" and not env["store"].exists("kb_v2")
    assert status(env["store"], "kb", ledger=env["ledger"])["versions"] == ["kb_v1", "kb_v3"]
