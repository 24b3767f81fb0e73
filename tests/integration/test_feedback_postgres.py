"""The feedback store in PostgreSQL (issue 15, item 1): the same records as SQLite, identifiers
quoted by psycopg.sql, options in the URL, and a broken database that never breaks a search.

Needs ``SDK_TEST_POSTGRES_URL`` (any PostgreSQL; pgvector is not used): ``eval "$(scripts/engines.sh
start postgres)"``. Every test uses its own table prefix and drops its tables afterwards.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.memory import MemoryAdapter
from sdk.core.errors import ConfigError
from sdk.feedback import FeedbackEvent, Impression, PostgresFeedbackStore, ShownHit, open_feedback_store
from sdk.retrieval import RetrievalPipeline
from tests.unit.retrieval_fakes import FakeDense, FakeReranker, FakeSparse, fake_documents

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (the pgvector extra)")
URL = os.environ.get("SDK_TEST_POSTGRES_URL", "")
pytestmark = pytest.mark.skipif(not URL, reason="SDK_TEST_POSTGRES_URL is not set: start PostgreSQL with "
                                "eval \"$(scripts/engines.sh start postgres)\" to run the PostgreSQL feedback tests")


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"Fb_{uuid.uuid4().hex[:8]}"  # mixed case: only correct identifier quoting finds these tables again
    yield name
    with psycopg.connect(URL, autocommit=True) as conn:
        for suffix in ("shown", "impressions", "events", "candidates", "serving"):
            conn.execute(psycopg.sql.SQL("DROP TABLE IF EXISTS {}").format(psycopg.sql.Identifier(f"{name}_{suffix}")))


def _tables(prefix: str) -> set[str]:
    with psycopg.connect(URL) as conn:
        rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_name LIKE %s",
                            (prefix + "%",)).fetchall()
    return {r[0] for r in rows}


def _pipeline(feedback: Any) -> RetrievalPipeline:
    pipe = RetrievalPipeline(FakeDense(), FakeSparse(), store=MemoryAdapter(), collection="docs",
                             reranker=FakeReranker(), limit=5, feedback=feedback)
    pipe.add_documents(fake_documents(30))
    return pipe


def test_impressions_and_signals_round_trip(prefix: str) -> None:
    with _pipeline(f"{URL}{'&' if '?' in URL else '?'}table_prefix={prefix}") as pipe:
        store = pipe.feedback_store
        assert isinstance(store, PostgresFeedbackStore) and store.table_prefix == prefix
        result = pipe.search("install debian package")
        pipe.feedback(result.search_id, result[2].id, "click")
        pipe.feedback(result.search_id, result[0].id, "rating", 4.5)
        pipe.feedback("0" * 32, result[0].id, "thumbs_down")
        assert store.flush(timeout=30)
        imp = store.impression(result.search_id)
        events = store.events()
    assert _tables(prefix) == {f"{prefix}_{t}" for t in ("impressions", "shown", "events", "candidates", "serving")}
    assert imp is not None and imp.query == "install debian package" and imp.physical_collection == "docs"
    assert [h.doc_id for h in imp.hits] == [h.id for h in result] and [h.position for h in imp.hits] == [1, 2, 3, 4, 5]
    assert all(set(h.scores) == {"fused", "rerank"} for h in imp.hits)
    assert imp.models == {"dense": "FakeDense", "sparse": "FakeSparse", "reranker": "FakeReranker"}
    assert [(e.signal, e.value, e.position, e.known_search) for e in events] == [
        ("click", None, 3, True), ("rating", 4.5, 1, True), ("thumbs_down", None, None, False)]


def test_hashed_queries_and_retention(prefix: str) -> None:
    now = time.time()
    url = f"{URL}{'&' if '?' in URL else '?'}hash_queries=true&retention_days=7"
    with open_feedback_store(url, table_prefix=prefix) as store:
        assert store.hash_queries and store.retention_days == 7 and "hash_queries" not in store._url
        store.write([Impression("old", now - 30 * 86400, "secret words", "", "c", None, "memory",
                                (ShownHit(1, "d1", 0.1, {}),)),
                     Impression("new", now, "secret words", "", "c", None, "memory", (ShownHit(1, "d1", 0.1, {}),))],
                    [FeedbackEvent("old", "d1", "click", created_at=now - 30 * 86400)])
        assert store.impression("new").query is None and len(store.impression("new").query_hash) == 64
        with psycopg.connect(URL) as conn:
            hits = conn.execute(psycopg.sql.SQL("SELECT count(*) FROM {} WHERE query LIKE '%secret%'")
                                .format(psycopg.sql.Identifier(f"{prefix}_impressions"))).fetchone()[0]
        assert hits == 0
        assert store.prune() == 2
        assert [i.search_id for i in store.impressions()] == ["new"] and store.counts()["shown"] == 1


def test_a_broken_database_never_breaks_search(prefix: str) -> None:
    store = PostgresFeedbackStore(URL, table_prefix=prefix)
    with _pipeline(store) as pipe:
        with psycopg.connect(URL, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP TABLE {}").format(psycopg.sql.Identifier(f"{prefix}_shown")))
        assert [len(pipe.search("python tuple")) for _ in range(3)] == [5, 5, 5]
        assert store.flush(timeout=30)
    assert store.stats["dropped"] == 3 and store.stats["impressions"] == 0
    store.close()


def test_a_bad_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot use the feedback database"):
        PostgresFeedbackStore("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_registry_promotes_and_rolls_back_in_postgres(prefix: str) -> None:
    """The registry shares the feedback database: candidates, serving rows, and a pipeline that follows them."""
    from sdk.feedback.registry import Registry

    store = PostgresFeedbackStore(URL, table_prefix=prefix)
    adapter = MemoryAdapter()
    pipe = RetrievalPipeline(FakeDense(), FakeSparse(), store=adapter, collection="kb", feedback=store,
                             refresh_seconds=0)
    try:
        pipe.add_documents(fake_documents(20))
        reg = Registry(store)
        cand = reg.add("kb", "fusion", change={"legs": ["dense"]}, data_hash="abc", metrics={"ndcg": 0.5})
        assert reg.promote(cand.candidate_id).version == 1
        assert pipe.refresh_learned() and pipe.legs == ("dense",)
        assert reg.candidate(cand.candidate_id).decision == "promoted"
        now, undone = reg.rollback("kb")
        assert undone.candidate_id == cand.candidate_id and now.legs is None
        assert pipe.refresh_learned() and pipe.legs == ("dense", "sparse")
        assert [h["action"] for h in reg.history("kb")] == ["promote", "rollback"]
    finally:
        pipe.close()
        store.close()
