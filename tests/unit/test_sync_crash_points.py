"""sdk sync crashes after every single write, on the memory store: the re-run must repair everything.

Deterministic companion of ``tests/integration/test_sync_crash.py`` (which SIGKILLs real runs at
random instants). Here a run is stopped right after its k-th write to the store or the ledger, for
every k: the write took effect, nothing after it ran, which is what a kill at that instant leaves.
Then the re-run goes on with the same source, or with a source changed meanwhile (an edit undone,
a deleted document back, the old chunking again), and the collection must hold exactly the
source's chunks (no orphan, no stale text, no hole), the alias must point at the ledger's live
version and verify must find no drift.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adapters.memory import MemoryAdapter
from sdk.sync import Ledger, open_source, sync
from sdk.sync.chunking import TokenChunker
from sdk.sync.engine import Syncer, rollback
from tests.unit.test_sync import text

STORE_WRITES = ("ensure_collection", "upsert", "delete", "switch_alias", "drop")
LEDGER_WRITES = ("set", "put_chunks", "put_documents", "mark_pending", "remove_chunks", "remove_documents",
                 "forget_collection")
REINDEX = 16  # chunk_tokens of the re-index; the default is the tiny model's budget


class Crash(BaseException):
    """The process "dies" here: nothing after this write runs (BaseException: no handler catches it)."""


class Cached:
    """The tiny encoder with a cache by text: the enumeration encodes the same chunks many times."""

    def __init__(self, encoder: Any) -> None:
        self.encoder, self.cache = encoder, {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.encoder, name)

    def encode_document(self, texts: list[str], **kwargs: Any) -> Any:
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if todo:
            self.cache.update(zip(todo, np.asarray(self.encoder.encode_document(todo, **kwargs)), strict=True))
        return np.stack([self.cache[t] for t in texts])


def crash_after(at: int, *targets: Any) -> list[str]:
    """Make the ``at``-th write (1-based) on any of ``targets`` raise ``Crash`` once it is done; returns
    the log of writes so far."""
    log: list[str] = []

    def wrap(obj: Any, name: str) -> None:
        real = getattr(obj, name)

        def write(*args: Any, **kwargs: Any) -> Any:
            out = real(*args, **kwargs)
            log.append(f"{name}({_brief(args)})")
            if len(log) == at:
                raise Crash(log[-1])
            return out

        setattr(obj, name, write)

    for obj in targets:
        for name in (STORE_WRITES if isinstance(obj, MemoryAdapter) else LEDGER_WRITES):
            wrap(obj, name)
    return log


def _brief(args: tuple[Any, ...]) -> str:
    return ", ".join(a if isinstance(a, str) else f"<{len(a)}>" if isinstance(a, list) else type(a).__name__
                     for a in args)


def disarm(*targets: Any) -> None:
    for obj in targets:
        for name in STORE_WRITES + LEDGER_WRITES:
            obj.__dict__.pop(name, None)


def put(folder: Path, docs: dict[str, str]) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, body in docs.items():
        (folder / name).write_text(body, encoding="utf8")
    return folder


BEFORE = {f"d{i}.txt": text(i, 90 if i % 3 == 0 else 20) for i in range(8)}  # d0, d3, d6: several chunks
AFTER = dict(BEFORE, **{"d1.txt": text(101, 25),   # edited, one chunk
                        "d3.txt": text(3, 30),     # shrunk: its tail chunks go
                        "d0.txt": text(0, 130),    # grown: a new tail chunk
                        "n1.txt": text(201, 60)})  # added
del AFTER["d2.txt"], AFTER["d4.txt"]  # deleted


def expected(encoder: Any, folder: Path, chunk_tokens: int | None) -> dict[str, str]:
    chunker = TokenChunker.from_encoder(encoder, chunk_tokens)
    return {c.id: c.text for _, chunks in chunker.chunk_many(open_source(folder)) for c in chunks}


def problems(store: MemoryAdapter, book: Ledger, encoder: Any, folder: Path, chunk_tokens: int | None) -> list[str]:
    """What differs from "exactly the source's chunks, alias on the live version, no drift"."""
    want = expected(encoder, folder, chunk_tokens)
    ids = list(store.ids("kb"))
    got = {r.id: r.text for r in store.get("kb", ids)}
    found = []
    if len(ids) != len(set(ids)):
        found.append(f"duplicates: {sorted(i for i in set(ids) if ids.count(i) > 1)}")
    if set(got) != set(want):
        found.append(f"missing {sorted(set(want) - set(got))}, extra {sorted(set(got) - set(want))}")
    stale = sorted(i for i in want if i in got and got[i] != want[i])
    if stale:
        found.append(f"stale text: {stale}")
    live = book.get("live")["collection"]
    if store.describe("kb").name != live:
        found.append(f"alias kb -> {store.describe('kb').name}, ledger live {live}")
    report = Syncer(store, "kb", dense=encoder, ledger=book).verify()
    if report.drift:
        found.append(f"verify: missing {report.missing}, orphans {report.orphans}")
    pending = sorted(c for c, (_, _, fp) in book.chunks(live).items() if not fp)
    if pending:
        found.append(f"pending ledger rows left: {pending}")
    return found


# (docs synced first or None, (docs, chunk_tokens) of the crashed run, (docs, chunk_tokens) of the re-run)
SCENARIOS: dict[str, tuple[dict[str, str] | None, tuple[dict[str, str], int | None], tuple[dict[str, str], int | None]]] = {
    "first sync, re-run on a changed source": (None, (BEFORE, None), (AFTER, None)),
    "update, re-run the same": (BEFORE, (AFTER, None), (AFTER, None)),
    "update, re-run with the changes undone": (BEFORE, (AFTER, None), (BEFORE, None)),
    "re-index, re-run the same": (BEFORE, (AFTER, REINDEX), (AFTER, REINDEX)),
    "re-index, re-run with the old chunking": (BEFORE, (AFTER, REINDEX), (BEFORE, None)),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_crash_after_any_write_is_repaired_by_the_next_run(scenario: str, tmp_path: Path, tiny_bert: Any) -> None:
    first, (docs, tokens), (again, again_tokens) = SCENARIOS[scenario]
    encoder = Cached(tiny_bert)
    folder = tmp_path / "src"

    def run(book: Ledger, store: MemoryAdapter, chunk_tokens: int | None) -> Any:
        return sync(folder, store, "kb", dense=encoder, sparse=False, ledger=book, batch_size=2,
                    chunk_tokens=chunk_tokens)

    failures: list[str] = []
    at = 0
    while True:
        at += 1
        store, book = MemoryAdapter(), Ledger.open(":memory:", key="kb")
        if first is not None:
            put(folder, first)
            run(book, store, None)
        put(folder, docs)
        log = crash_after(at, store, book)
        try:
            run(book, store, tokens)
        except Crash:
            pass
        else:
            assert at > 3, f"the run made only {len(log)} writes"
            break  # the run finished: every write has had its crash
        finally:
            disarm(store, book)
        put(folder, again)
        run(book, store, again_tokens)
        found = problems(store, book, encoder, folder, again_tokens)
        if found:
            failures.append(f"crash after write {at} ({log[-1]}): " + "; ".join(found))
    assert not failures, "\n".join(failures)


def test_a_crash_inside_rollback_is_repaired_by_the_next_sync(tmp_path: Path, tiny_bert: Any) -> None:
    """rollback switches the alias, then records it: a sync between the two follows the ledger."""
    encoder = Cached(tiny_bert)
    folder = put(tmp_path / "src", BEFORE)
    for at in (1, 2):
        store, book = MemoryAdapter(), Ledger.open(":memory:", key="kb")
        sync(folder, store, "kb", dense=encoder, sparse=False, ledger=book)
        sync(folder, store, "kb", dense=encoder, sparse=False, ledger=book, chunk_tokens=REINDEX)
        crash_after(at, store, book)
        with pytest.raises(Crash):
            rollback(book, store, "kb")
        disarm(store, book)
        sync(folder, store, "kb", dense=encoder, sparse=False, ledger=book, chunk_tokens=REINDEX)
        assert problems(store, book, encoder, folder, REINDEX) == [], f"crash after write {at}"
