"""sdk sync on the four real engines: counts, chunk-level re-encoding, guards, blue/green under load,
rollback, verify/repair. The tiny random BERT keeps encoding cheap: what is tested is the bookkeeping."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sdk.core.errors import CapabilityError, SourceError, SyncError
from sdk.core.registry import connect
from sdk.core.types import HybridQuery
from sdk.sync import Ledger, open_source, rollback, status, sync, verify
from sdk.sync.chunking import TokenChunker
from tests.unit.test_sync import Counting, text, write_folder

ENGINES = ["qdrant_url", "milvus_url", "weaviate_url", "postgres_url"]


@pytest.fixture(params=ENGINES, ids=lambda f: f.removesuffix("_url"))
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    adapter = connect(request.getfixturevalue(request.param))
    yield adapter
    adapter.close()


@pytest.fixture
def case(store: Any, tmp_path: Path, tiny_bert: Any) -> Iterator[dict[str, Any]]:
    name = f"sync_{uuid.uuid4().hex[:10]}"
    docs = {f"doc{i:02d}.txt": text(i, 20 + 15 * (i % 4)) for i in range(16)}
    docs["long/guide.md"] = " ".join(text(100 + k, 25) for k in range(8))
    book = Ledger.open(tmp_path / "ledger.sqlite", key=name)
    env = {"store": store, "name": name, "dense": Counting(tiny_bert), "ledger": book,
           "src": write_folder(tmp_path / "src", docs), "docs": docs}
    yield env
    versions = [v["collection"] for v in book.get("versions", [])] + [(book.get("building") or {}).get("collection")]
    if store.capabilities.aliases:
        try:
            store.delete_alias(name)
        except Exception:  # noqa: BLE001 - cleanup must not hide the test's own failure
            pass
    for physical in {v for v in versions if v} | {name}:
        try:
            store.drop(physical)
        except Exception:  # noqa: BLE001
            pass
    book.close()


def run(env: dict[str, Any], **kw: Any) -> Any:
    return sync(kw.pop("src", env["src"]), env["store"], env["name"], dense=env["dense"], sparse=False,
                ledger=env["ledger"], **kw)


def expected(env: dict[str, Any], chunk_tokens: int | None = None) -> dict[str, str]:
    chunker = TokenChunker.from_encoder(env["dense"].encoder, chunk_tokens)
    return {c.id: c.text for doc in open_source(env["src"]) for c in chunker.chunk(doc)}


def stored(env: dict[str, Any]) -> dict[str, str]:
    ids = list(env["store"].ids(env["name"]))
    assert len(ids) == len(set(ids)), "duplicate ids in the store"
    return {r.id: r.text for r in env["store"].get(env["name"], ids)}


def test_counts_and_chunk_level_reencoding(case: dict[str, Any]) -> None:
    first = run(case)
    assert (first.added, first.updated, first.deleted, first.unchanged) == (17, 0, 0, 0)
    assert stored(case) == expected(case)
    again = run(case)
    assert (again.unchanged, again.chunks_encoded, again.chunks_written) == (17, 0, 0)
    guide = case["src"] / "long" / "guide.md"
    guide.write_text(guide.read_text(encoding="utf8") + " debian package install.", encoding="utf8")
    (case["src"] / "doc03.txt").unlink()
    (case["src"] / "new.txt").write_text(text(999, 40), encoding="utf8")
    before = case["dense"].texts
    report = run(case)
    assert (report.added, report.updated, report.deleted, report.unchanged) == (1, 1, 1, 15)
    assert case["dense"].texts - before == report.chunks_encoded == 2  # the guide's last chunk + the new doc
    assert stored(case) == expected(case)
    info = status(case["store"], case["name"], ledger=case["ledger"])
    assert info["documents"] == 17 and info["chunks"] == len(expected(case))
    assert not verify(case["store"], case["name"], ledger=case["ledger"]).drift


def test_mass_delete_guard_and_broken_source(case: dict[str, Any], tmp_path: Path) -> None:
    run(case)
    want = expected(case)
    for name in sorted(case["docs"])[:10]:
        (case["src"] / name).unlink()
    with pytest.raises(SyncError, match="allow-mass-delete"):
        run(case)
    assert stored(case) == want  # nothing deleted
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "the python package."}\n{"id": 5\n', encoding="utf8")
    with pytest.raises(SourceError, match="bad.jsonl:2"):
        run(case, src=bad)
    assert stored(case) == want
    assert run(case, allow_mass_delete=True).deleted == 10
    assert stored(case) == expected(case)


def test_blue_green_switch_under_queries_then_rollback(case: dict[str, Any]) -> None:
    store = case["store"]
    first = run(case)
    if not store.capabilities.aliases:  # (every bundled engine has aliases; Milvus Lite's are emulated)
        assert first.collection == case["name"] and first.alias is None
        with pytest.raises(CapabilityError, match="no aliases"):
            run(case, chunk_tokens=16)
        return
    assert store.describe(case["name"]).name == f"{case['name']}_v1"
    query = HybridQuery(dense=np.asarray(case["dense"].encode_query("python package install")), limit=5)
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def search() -> None:
        while not stop.is_set():
            try:
                seen.append(len(store.query(case["name"], query)))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return
            time.sleep(0.005)

    worker = threading.Thread(target=search)
    worker.start()
    try:
        report = run(case, chunk_tokens=16)
    finally:
        time.sleep(0.05)
        stop.set()
        worker.join(timeout=30)
    assert not errors, errors[:1]
    assert seen and min(seen) == 5  # never an empty or half-filled collection behind the alias
    assert report.reindex and report.collection == f"{case['name']}_v2"
    assert store.describe(case["name"]).name == report.collection
    assert stored(case) == expected(case, 16)
    back = rollback(store, case["name"], ledger=case["ledger"])
    assert back["collection"] == f"{case['name']}_v1" and stored(case) == expected(case)
    assert status(store, case["name"], ledger=case["ledger"])["collection"] == f"{case['name']}_v1"


def test_verify_and_repair_after_points_vanish(case: dict[str, Any], tiny_bert_dir: Path) -> None:
    store = case["store"]
    sync(case["src"], store, case["name"], dense=str(tiny_bert_dir), sparse=False, ledger=case["ledger"])
    physical = store.describe(case["name"]).name
    ids = sorted(store.ids(case["name"]))
    store.delete(physical, ids[:4])  # lost behind the ledger's back
    report = verify(store, case["name"], ledger=case["ledger"])
    assert report.drift and report.missing == ids[:4] and not report.orphans
    fixed = verify(store, case["name"], ledger=case["ledger"], repair=True)
    assert fixed.repaired and not fixed.drift
    assert stored(case) == expected(case)


def test_ledger_in_postgresql(postgres_url: str, tmp_path: Path, tiny_bert: Any) -> None:
    """--ledger postgresql://...: the same bookkeeping in a shared database, keyed per store and collection."""
    from adapters.memory import MemoryAdapter

    name = f"sync_{uuid.uuid4().hex[:10]}"
    src = write_folder(tmp_path / "src", {f"d{i}.txt": text(i, 40) for i in range(6)})
    dense = Counting(tiny_bert)
    with MemoryAdapter() as store:
        first = sync(src, store, name, dense=dense, sparse=False, ledger=postgres_url)
        assert first.added == 6
        encoded = dense.texts
        again = sync(src, store, name, dense=dense, sparse=False, ledger=postgres_url)
        assert again.unchanged == 6 and dense.texts == encoded
        info = status(store, name, ledger=postgres_url)
        assert info["documents"] == 6 and info["ledger"] == postgres_url
        other = status(store, f"{name}_other", ledger=postgres_url)
        assert other["documents"] == 0 and other["collection"] is None
    with Ledger.open(postgres_url, key=f"{name}-memory") as book:
        book.forget_collection(f"{name}_v1")
        book.set(live=None, versions=None, last_run=None, next_version=None, building=None, sources=None)
