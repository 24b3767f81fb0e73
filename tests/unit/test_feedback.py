"""Feedback capture (issue 15, item 1): search ids, impressions, signals, privacy, retention, and
the promise that a slow or failing feedback store never slows or breaks a search.

Memory adapter, the tiny random BERT as the dense encoder, fake sparse encoder and reranker (so
every hit has several stage scores), real SQLite files."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from adapters.memory import MemoryAdapter
from sdk.core.errors import ConfigError, InputError
from sdk.feedback import (
    FeedbackEvent,
    FeedbackStore,
    Impression,
    ShownHit,
    SqliteFeedbackStore,
    check_signal,
    open_feedback_store,
)
from sdk.retrieval import RetrievalPipeline, Retriever, SearchResult
from tests.unit.retrieval_fakes import FakeReranker, FakeSparse, fake_documents

QUERY = "how do I install a debian package"


@pytest.fixture
def store() -> MemoryAdapter:
    return MemoryAdapter()


def _pipeline(tiny_bert: Any, store: MemoryAdapter, feedback: Any = None, *, collection: str = "docs",
              fill: bool = True, **kwargs: Any) -> RetrievalPipeline:
    pipe = RetrievalPipeline(tiny_bert, FakeSparse(), store=store, collection=collection, reranker=FakeReranker(),
                             rerank_top=20, limit=5, feedback=feedback, **kwargs)
    if fill:
        pipe.add_documents(fake_documents(30))
    return pipe


@pytest.fixture
def pipe(tiny_bert: Any, store: MemoryAdapter, tmp_path: Path) -> Any:
    p = _pipeline(tiny_bert, store, f"sqlite:///{tmp_path}/feedback.db")  # four slashes: an absolute path
    yield p
    p.close()


# ---- search ids -----------------------------------------------------------------------------
def test_every_result_has_a_unique_search_id_without_feedback(tiny_bert: Any, store: MemoryAdapter) -> None:
    """Feedback off: results still carry a search id (uuid4 hex), nothing else changes."""
    p = _pipeline(tiny_bert, store)
    assert p.feedback_store is None
    ids = [p.search(QUERY).search_id for _ in range(5)]
    batch = p.search_batch([QUERY, "python tuple", QUERY])
    ids += [r.search_id for r in batch] + [asyncio.run(p.asearch(QUERY)).search_id]
    assert len(set(ids)) == len(ids) == 9
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert [h.id for h in batch[0]] == [h.id for h in batch[2]]
    assert SearchResult().search_id != SearchResult().search_id
    with pytest.raises(ConfigError, match="records no feedback"):
        p.feedback(ids[0], "d001", "click")


# ---- impressions and signals ----------------------------------------------------------------
def test_impression_keeps_query_positions_stage_scores_models_and_physical_collection(
        tiny_bert: Any, store: MemoryAdapter, tmp_path: Path) -> None:
    _pipeline(tiny_bert, store, collection="kb_v1")
    store.create_alias("kb", "kb_v1")
    fb = SqliteFeedbackStore(tmp_path / "fb.sqlite")
    with _pipeline(tiny_bert, store, fb, collection="kb", fill=False) as p:
        result = p.search(QUERY, limit=4)
        assert fb.flush(timeout=30)
        imp = fb.impression(result.search_id)
    assert imp is not None and imp.query == QUERY
    assert imp.query_hash == hashlib.sha256(QUERY.encode()).hexdigest()
    assert imp.collection == "kb" and imp.physical_collection == "kb_v1" and imp.store == "memory"
    assert [h.position for h in imp.hits] == [1, 2, 3, 4]
    assert [h.doc_id for h in imp.hits] == [h.id for h in result]
    for shown, hit in zip(imp.hits, result, strict=True):
        assert shown.scores == pytest.approx(dict(hit.scores_by_stage)) and set(shown.scores) == {"fused", "rerank"}
        assert shown.score == pytest.approx(hit.score)
    assert imp.models == {"dense": tiny_bert.fingerprint(), "sparse": "FakeSparse", "reranker": "FakeReranker"}
    assert imp.config["legs"] == ["dense", "sparse"] and imp.config["limit"] == 4 and imp.config["fetched"] == 20
    assert {"encode_dense", "query", "rerank", "total"} <= set(imp.timings)
    assert time.time() - 60 < imp.created_at <= time.time()
    fb.close()  # the pipeline was given the store: it flushed it but left it open


def test_physical_collection_follows_an_alias_switch(tiny_bert: Any, store: MemoryAdapter) -> None:
    """Blue/green: after ``switch_alias`` the impressions name the new physical collection."""
    _pipeline(tiny_bert, store, collection="kb_v1")
    _pipeline(tiny_bert, store, collection="kb_v2")
    store.create_alias("kb", "kb_v1")
    with _pipeline(tiny_bert, store, ":memory:", collection="kb", fill=False) as p:
        p._capture._ttl = 0.0  # re-read the alias for every impression (default: at most once a second)
        first = p.search(QUERY).search_id
        p.feedback_store.flush(timeout=30)
        store.switch_alias("kb", "kb_v2")
        second = p.search(QUERY).search_id
        p.feedback_store.flush(timeout=30)
        assert p.feedback_store.impression(first).physical_collection == "kb_v1"
        assert p.feedback_store.impression(second).physical_collection == "kb_v2"


def test_concurrent_searches_are_all_recorded(pipe: RetrievalPipeline) -> None:
    ids: list[str] = []

    def worker(n: int) -> None:
        for i in range(5):
            ids.append(pipe.search(f"{QUERY} {n} {i}").search_id)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pipe.feedback_store.flush(timeout=30)
    assert len(set(ids)) == 20 and {i.search_id for i in pipe.feedback_store.impressions()} == set(ids)


def test_an_unusable_sqlite_path_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "a_folder.db").mkdir()
    with pytest.raises(ConfigError, match="feedback store"):
        SqliteFeedbackStore(tmp_path / "a_folder.db")


def test_search_batch_and_asearch_record_one_impression_each(pipe: RetrievalPipeline) -> None:
    results = pipe.search_batch([QUERY, "python tuple"]) + [asyncio.run(pipe.asearch("vector search"))]
    pipe.feedback_store.flush(timeout=30)
    stored = {i.search_id: i for i in pipe.feedback_store.impressions()}
    assert set(stored) == {r.search_id for r in results}
    assert [stored[r.search_id].query for r in results] == [QUERY, "python tuple", "vector search"]


def test_feedback_signals_are_recorded_with_position_and_flag(pipe: RetrievalPipeline) -> None:
    """Every signal kind is stored; the position comes from the impression; an unknown search id
    or a document that was not shown is kept but flagged (the chosen, documented policy)."""
    r = pipe.search(QUERY)
    sid, second, fourth = r.search_id, r[1].id, r[3].id
    pipe.feedback(sid, second, "click")
    pipe.feedback(sid, second, "used")
    pipe.feedback(sid, fourth, "thumbs_down")
    pipe.feedback(sid, second, "thumbs_up")
    assert pipe.feedback(sid, fourth, "rating", 1.5).value == 1.5
    assert pipe.feedback(sid, second, 4).signal == "rating"
    pipe.feedback(sid, "never-shown", "click")
    pipe.feedback("f" * 32, second, "click")
    store = pipe.feedback_store
    store.flush(timeout=30)
    events = store.events(sid)
    assert [(e.signal, e.doc_id, e.value, e.position, e.known_search) for e in events] == [
        ("click", second, None, 2, True), ("used", second, None, 2, True), ("thumbs_down", fourth, None, 4, True),
        ("thumbs_up", second, None, 2, True), ("rating", fourth, 1.5, 4, True), ("rating", second, 4.0, 2, True),
        ("click", "never-shown", None, None, True)]
    (stray,) = store.events("f" * 32)
    assert stray.known_search is False and stray.position is None
    assert store.counts() == {"impressions": 1, "shown": 5, "events": 8}


@pytest.mark.parametrize(("signal", "value", "match"), [
    ("like", None, "unknown feedback signal"), ("CLICK", None, "unknown feedback signal"),
    ("rating", None, "numeric value"), ("rating", 7, "between 0 and 5"), ("rating", -0.5, "between 0 and 5"),
    ("rating", float("nan"), "between 0 and 5"), (5.5, None, "between 0 and 5"), ("rating", True, "numeric"),
    ("click", 1.0, "takes no value"), (3, 2, "itself the rating"), (True, None, "unknown feedback signal"),
])
def test_bad_signals_are_refused(pipe: RetrievalPipeline, signal: Any, value: Any, match: str) -> None:
    sid = pipe.search(QUERY).search_id
    with pytest.raises(InputError, match=match):
        pipe.feedback(sid, "d001", signal, value)


def test_bad_ids_are_refused() -> None:
    for sid, doc in (("", "d1"), (None, "d1"), ("s", ""), ("s", 3), ("s" * 600, "d1")):
        with pytest.raises(InputError):
            check_signal(sid, doc, "click")
    assert check_signal("s", "d", 0).value == 0.0 and check_signal("s", "d", "rating", 5).value == 5.0


# ---- privacy and retention --------------------------------------------------------------------
def test_hashed_queries_store_no_plain_text(tiny_bert: Any, store: MemoryAdapter, tmp_path: Path) -> None:
    secret = "zebra quokka marmalade python tuple"
    path = tmp_path / "private.db"
    with _pipeline(tiny_bert, store, open_feedback_store(path, hash_queries=True)) as p2:
        sid = p2.search(secret).search_id
        p2.feedback_store.flush(timeout=30)
        imp = p2.feedback_store.impression(sid)
        assert imp is not None and imp.query is None
        assert imp.query_hash == hashlib.sha256(secret.encode()).hexdigest()
        p2.feedback_store.close()
    raw = b"".join(f.read_bytes() for f in tmp_path.iterdir() if f.name.startswith("private.db"))
    assert b"quokka" not in raw and hashlib.sha256(secret.encode()).hexdigest().encode() in raw
    url_store = open_feedback_store(f"sqlite:///{tmp_path}/u.db?hash_queries=true&retention_days=30")
    assert url_store.hash_queries and url_store.retention_days == 30
    url_store.close()


def _impression(sid: str, created_at: float) -> Impression:
    return Impression(sid, created_at, "q", "", "docs", "docs", "memory", (ShownHit(1, "d1", 0.5, {"dense": 0.5}),))


def test_retention_prunes_old_rows_on_prune_and_on_open(tmp_path: Path) -> None:
    path = tmp_path / "fb.db"
    now = time.time()
    with SqliteFeedbackStore(path) as fb:
        fb.write([_impression("old", now - 10 * 86400), _impression("new", now - 3600)],
                 [FeedbackEvent("old", "d1", "click", created_at=now - 10 * 86400),
                  FeedbackEvent("new", "d1", "click", created_at=now - 60)])
        assert fb.counts() == {"impressions": 2, "shown": 2, "events": 2}
        assert fb.prune() == 0  # no retention set: keeps everything
        assert fb.prune(30) == 0
        assert fb.prune(7) == 2  # one impression (with its hit) and one event
        assert fb.counts() == {"impressions": 1, "shown": 1, "events": 1}
        fb.write([_impression("older", now - 3 * 86400)], [FeedbackEvent("older", "d1", "used", created_at=now - 3 * 86400)])
    with SqliteFeedbackStore(path, retention_days=2) as fb:  # pruned on open
        assert [i.search_id for i in fb.impressions()] == ["new"] and [e.search_id for e in fb.events()] == ["new"]
    with pytest.raises(ConfigError, match="retention_days"):
        SqliteFeedbackStore(path, retention_days=0)


# ---- never slows, never breaks a search ---------------------------------------------------------
class _SlowStore(SqliteFeedbackStore):
    """A real SQLite store whose database takes ``delay`` seconds per batch; records the writing thread."""

    def __init__(self, *args: Any, delay: float = 0.0, gate: threading.Event | None = None, **kw: Any) -> None:
        self.delay, self.gate, self.threads = delay, gate, set()
        super().__init__(*args, **kw)

    def write(self, impressions: Any = (), events: Any = ()) -> None:
        self.threads.add(threading.get_ident())
        if self.gate is not None:
            self.gate.wait(30)
        time.sleep(self.delay)
        super().write(impressions, events)


class _BrokenStore(SqliteFeedbackStore):
    def write(self, impressions: Any = (), events: Any = ()) -> None:
        raise OSError("disk on fire")


def test_a_slow_store_does_not_slow_searches(tiny_bert: Any, store: MemoryAdapter, tmp_path: Path) -> None:
    with _pipeline(tiny_bert, store) as plain:
        plain.search(QUERY)
        t0 = time.perf_counter()
        for _ in range(3):
            plain.search(QUERY)
        baseline = (time.perf_counter() - t0) / 3
    slow = _SlowStore(tmp_path / "slow.db", delay=1.0)
    with _pipeline(tiny_bert, store, slow, fill=False) as p:
        t0 = time.perf_counter()
        results = [p.search(QUERY) for _ in range(3)]
        p.feedback(results[0].search_id, results[0][0].id, "click")
        elapsed = (time.perf_counter() - t0) / 3
        assert elapsed < baseline + 0.5, (elapsed, baseline)  # a write takes 1 s; the search never waits for it
        assert slow.flush(timeout=60)
    assert threading.get_ident() not in slow.threads and len(slow.threads) == 1
    assert slow.counts()["impressions"] == 3 and slow.counts()["events"] == 1
    slow.close()


def test_a_failing_store_logs_once_and_never_breaks_search(tiny_bert: Any, store: MemoryAdapter,
                                                           tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = _BrokenStore(tmp_path / "broken.db", batch_size=1)
    caplog.set_level(logging.WARNING, logger="sdk.feedback")
    with _pipeline(tiny_bert, store, broken) as p:
        results = [p.search(QUERY) for _ in range(4)]
        p.feedback(results[0].search_id, results[0][0].id, "click")
        assert all(len(r) == 5 for r in results)
        assert broken.flush(timeout=30)
    assert broken.stats["dropped"] == 5 and broken.stats["failures"] == 5 and broken.stats["impressions"] == 0
    warnings = [r for r in caplog.records if r.name == "sdk.feedback" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "disk on fire" in warnings[0].getMessage()
    broken.close()


def test_a_real_sqlite_failure_is_dropped_and_recovery_is_logged(tiny_bert: Any, store: MemoryAdapter,
                                                                 tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """No mock: the tables vanish under the store (another connection drops them), writes fail in
    SQLite itself; searches go on; once the tables are back, writes resume and say so."""
    path = tmp_path / "real.db"
    fb = SqliteFeedbackStore(path)
    caplog.set_level(logging.WARNING, logger="sdk.feedback")
    with _pipeline(tiny_bert, store, fb) as p:
        other = sqlite3.connect(path)
        other.executescript("DROP TABLE feedback_shown; DROP TABLE feedback_impressions; DROP TABLE feedback_events;")
        other.close()
        assert [len(p.search(QUERY)) for _ in range(3)] == [5, 5, 5]
        assert fb.flush(timeout=30) and fb.stats["dropped"] == 3 and fb.stats["impressions"] == 0
        fb._initialise()  # the tables come back
        sid = p.search(QUERY).search_id
        assert fb.flush(timeout=30) and fb.impression(sid) is not None
    messages = [r.getMessage() for r in caplog.records if r.name == "sdk.feedback"]
    assert len(messages) == 2 and "no such table" in messages[0] and "works again" in messages[1]
    fb.close()


def test_a_full_queue_drops_instead_of_waiting(tiny_bert: Any, store: MemoryAdapter, tmp_path: Path) -> None:
    gate = threading.Event()
    fb = _SlowStore(tmp_path / "full.db", gate=gate, max_pending=2, batch_size=1)
    with _pipeline(tiny_bert, store, fb) as p:
        t0 = time.perf_counter()
        assert all(len(p.search(QUERY)) == 5 for _ in range(8))
        assert time.perf_counter() - t0 < 20  # nobody waited for the gate
        assert fb.stats["dropped"] >= 5
        gate.set()
    assert fb.stats["pending"] == 0 and 1 <= fb.counts()["impressions"] <= 3
    fb.close()


# ---- lifecycle, URLs, LangChain ----------------------------------------------------------------
def test_close_flushes_and_closes_an_owned_store(tiny_bert: Any, store: MemoryAdapter, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/owned.db"
    p = _pipeline(tiny_bert, store, url)
    assert isinstance(p.feedback_store, SqliteFeedbackStore) and p.feedback_store.where == str(tmp_path / "owned.db")
    sid = p.search(QUERY).search_id
    p.feedback(sid, "d001", "used")
    owned = p.feedback_store
    p.close()
    assert owned.submit(FeedbackEvent(sid, "d1", "click")) is False  # closed: dropped, not raised
    with SqliteFeedbackStore(tmp_path / "owned.db") as again:
        assert again.impression(sid) is not None and len(again.events(sid)) == 1


def test_open_feedback_store_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for target, where in (("sqlite:///rel.db", "rel.db"), (f"sqlite:///{tmp_path}/abs.db", str(tmp_path / "abs.db")),
                          (tmp_path / "p.db", str(tmp_path / "p.db")), ("sqlite://", ":memory:"),
                          (":memory:", ":memory:")):
        fb = open_feedback_store(target)
        assert isinstance(fb, SqliteFeedbackStore) and Path(fb.where) == Path(where)
        assert open_feedback_store(fb) is fb
        fb.close()
    assert (tmp_path / "rel.db").is_file()
    with pytest.raises(ConfigError, match="unknown feedback store scheme"):
        open_feedback_store("redis://localhost")
    with pytest.raises(ConfigError, match="unknown option"):
        open_feedback_store("sqlite:///x.db?colour=blue")
    with pytest.raises(ConfigError, match="table_prefix"):
        open_feedback_store(":memory:", table_prefix="x; DROP TABLE y")
    with pytest.raises(ConfigError, match="FeedbackStore"):
        open_feedback_store(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="open one"):
        open_feedback_store(SqliteFeedbackStore(), hash_queries=True)
    assert issubclass(SqliteFeedbackStore, FeedbackStore)


def test_retriever_documents_carry_the_search_id(pipe: RetrievalPipeline) -> None:
    docs = Retriever(pipe, k=3).invoke(QUERY)
    (sid,) = {d.metadata["search_id"] for d in docs}
    Retriever(pipe).feedback(sid, docs[0].id, "thumbs_up")
    pipe.feedback_store.flush(timeout=30)
    assert [h.doc_id for h in pipe.feedback_store.impression(sid).hits] == [d.id for d in docs]
    assert [(e.signal, e.position) for e in pipe.feedback_store.events(sid)] == [("thumbs_up", 1)]


def test_langchain_documents_carry_the_search_id(pipe: RetrievalPipeline) -> None:
    pytest.importorskip("langchain_core", reason="the langchain extra is not installed")
    lc = Retriever(pipe, k=3).as_langchain()
    docs = lc.invoke(QUERY)
    (sid,) = {d.metadata["search_id"] for d in docs}
    adocs = asyncio.run(lc.ainvoke(QUERY))
    asid = adocs[0].metadata["search_id"]
    assert asid != sid and {d.metadata["search_id"] for d in adocs} == {asid}
    lc.feedback(sid, docs[2].id, "used")
    pipe.feedback_store.flush(timeout=30)
    assert pipe.feedback_store.impression(asid) is not None
    assert [(e.signal, e.doc_id, e.position) for e in pipe.feedback_store.events(sid)] == [("used", docs[2].id, 3)]


def test_closed_is_public_and_follows_close(tmp_path) -> None:
    from sdk.feedback import SqliteFeedbackStore

    store = SqliteFeedbackStore(tmp_path / "fb.db")
    assert not store.closed
    store.close()
    store.close()  # idempotent
    assert store.closed
