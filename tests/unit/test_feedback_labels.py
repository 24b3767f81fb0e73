"""Labels from feedback (issue 15, item 2): every rule of ``sdk.feedback.labels`` on a real SQLite
store written with explicit times, and ``sdk feedback export|stats|prune``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import sdk.cli.feedback
from sdk.core.errors import ConfigError, InputError
from sdk.feedback import (
    FeedbackEvent,
    Impression,
    LabelSet,
    ShownHit,
    SqliteFeedbackStore,
    export_labels,
    hash_query,
    propensity,
)

T0 = 1_700_000_000.0
DAY = 86400.0


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "feedback.db"


@pytest.fixture
def fb(db: Path) -> Iterator[SqliteFeedbackStore]:
    store = SqliteFeedbackStore(db)
    yield store
    store.close()


def imp(sid: str, query: str, docs: Sequence[str], at: float, collection: str = "kb") -> Impression:
    hits = tuple(ShownHit(i, d, 1.0 / i) for i, d in enumerate(docs, start=1))
    return Impression(sid, at, query, hash_query(query), collection, collection + "_v1", "memory", hits)


def ev(sid: str, doc: str, signal: str, at: float, value: float | None = None) -> FeedbackEvent:
    return FeedbackEvent(sid, doc, signal, value, created_at=at)


def one(labels: LabelSet, query: str) -> Any:
    (found,) = [q for q in labels.train + labels.eval if q.query_id == hash_query(query)]
    return found


def judged(q: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    return {j.doc_id: j for j in q.positives}, {j.doc_id: j for j in q.negatives}


# ---- weights and verdicts ------------------------------------------------------------------
def test_propensity_is_the_position_based_model() -> None:
    assert propensity(1) == 1.0 and propensity(4) == 0.25 and propensity(4, eta=0.5) == 0.5
    assert propensity(7, eta=0.0) == 1.0
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="1-based"):
            propensity(bad)


def test_click_weight_is_inverse_propensity_capped_and_summed(fb: SqliteFeedbackStore) -> None:
    docs = [f"d{i}" for i in range(1, 21)]
    fb.write([imp("s1", "q", docs, T0), imp("s2", "q", docs, T0 + 10)],
             [ev("s1", "d4", "click", T0 + 1), ev("s1", "d4", "click", T0 + 2),  # a double click counts once
              ev("s1", "d20", "click", T0 + 3), ev("s2", "d4", "click", T0 + 11)])
    q = one(export_labels(fb, eval_fraction=0.0, min_eval_queries=0), "q")
    pos, _ = judged(q)
    assert pos["d4"].weight == pytest.approx(8.0) and pos["d4"].gain == 1.0 and pos["d4"].signals == ("click",)
    assert pos["d20"].weight == pytest.approx(10.0)  # 1/propensity = 20, capped at max_weight
    assert [j.doc_id for j in q.positives] == ["d20", "d4"]  # weight descending
    pos, _ = judged(one(export_labels(fb, eta=0.5, max_weight=3.0, eval_fraction=0.0, min_eval_queries=0), "q"))
    assert pos["d4"].weight == pytest.approx(4.0) and pos["d20"].weight == pytest.approx(3.0)


def test_explicit_beats_click_and_latest_explicit_wins(fb: SqliteFeedbackStore) -> None:
    fb.write([imp("s1", "q", ["a", "b", "c", "d", "e"], T0)],
             [ev("s1", "a", "click", T0 + 1), ev("s1", "a", "thumbs_down", T0 + 2),  # click, then "bad"
              ev("s1", "b", "thumbs_down", T0 + 1), ev("s1", "b", "click", T0 + 2), ev("s1", "b", "used", T0 + 3),
              ev("s1", "c", "thumbs_up", T0 + 5), ev("s1", "c", "rating", T0 + 6, 1.0),  # latest: a low rating
              ev("s1", "d", "rating", T0 + 1, 4.0),
              ev("s1", "e", "click", T0 + 1), ev("s1", "e", "rating", T0 + 2, 2.0)])  # neutral: neither
    labels = export_labels(fb, eval_fraction=0.0, min_eval_queries=0)
    pos, neg = judged(one(labels, "q"))
    assert set(pos) == {"b", "d"} and set(neg) == {"a", "c"}
    assert (pos["b"].gain, pos["b"].signals, pos["b"].weight) == (2.0, ("click", "used"), 3.0)  # 1 + click at 2
    assert (pos["d"].gain, pos["d"].signals, pos["d"].weight) == (2.0, ("rating",), 1.0)
    assert neg["a"].signals == ("thumbs_down",) and neg["a"].gain == 0.0 and neg["a"].weight == 1.0
    assert neg["c"].signals == ("rating",)
    assert labels.stats["neutral"] == 1


def test_rating_thresholds_are_settings(fb: SqliteFeedbackStore) -> None:
    fb.write([imp("s1", "q", ["a", "b"], T0)], [ev("s1", "a", "rating", T0 + 1, 2.0), ev("s1", "b", "used", T0)])
    pos, neg = judged(one(export_labels(fb, rating_positive=2.0, rating_negative=0.5, eval_fraction=0.0,
                                        min_eval_queries=0), "q"))
    assert "a" in pos
    pos, neg = judged(one(export_labels(fb, rating_positive=4.0, rating_negative=2.0, eval_fraction=0.0,
                                        min_eval_queries=0), "q"))
    assert "a" in neg and neg["a"].signals == ("rating",)


def test_latest_explicit_wins_across_impressions_of_the_group(fb: SqliteFeedbackStore) -> None:
    fb.write([imp("s1", "q", ["a", "b"], T0), imp("s2", "q", ["a", "b"], T0 + DAY)],
             [ev("s1", "a", "thumbs_up", T0 + 1), ev("s2", "a", "thumbs_down", T0 + DAY + 1),
              ev("s2", "b", "used", T0 + DAY + 2)])
    pos, neg = judged(one(export_labels(fb, eval_fraction=0.0, min_eval_queries=0), "q"))
    assert set(pos) == {"b"} and neg["a"].signals == ("thumbs_down",)


def test_skip_negatives_and_a_positive_is_never_a_negative(fb: SqliteFeedbackStore) -> None:
    fb.write([imp("s1", "q", ["a", "b", "c", "d", "e"], T0), imp("s2", "q", ["b", "a", "c"], T0 + 60)],
             [ev("s1", "c", "click", T0 + 1),  # a and b were passed over; d and e maybe never seen
              ev("s2", "a", "used", T0 + 61)])  # a is positive in the group: never a negative
    q = one(export_labels(fb, eval_fraction=0.0, min_eval_queries=0), "q")
    pos, neg = judged(q)
    assert set(pos) == {"a", "c"} and set(neg) == {"b"}
    assert neg["b"].signals == ("skipped",) and neg["b"].weight == 2.0  # skipped in both impressions
    assert q.shown == ("a", "b", "c", "d", "e") and q.impressions == 2


def test_skip_counts_once_per_impression_beside_explicit_negatives(fb: SqliteFeedbackStore) -> None:
    """A hit judged in an impression is not also "skipped" there; skipped in another, it has both reasons."""
    fb.write([imp("s1", "q", ["a", "b", "c"], T0), imp("s2", "q", ["a", "b", "c"], T0 + 60)],
             [ev("s1", "a", "thumbs_down", T0 + 1), ev("s1", "b", "thumbs_up", T0 + 2),
              ev("s2", "c", "click", T0 + 61)])
    pos, neg = judged(one(export_labels(fb, eval_fraction=0.0, min_eval_queries=0), "q"))
    assert set(pos) == {"b", "c"} and set(neg) == {"a"}  # c: below the positive in s1, never a skip there
    assert neg["a"].signals == ("skipped", "thumbs_down") and neg["a"].weight == 2.0
    _, neg = judged(one(export_labels(fb, until=T0 + 30, eval_fraction=0.0, min_eval_queries=0), "q"))
    assert neg["a"].signals == ("thumbs_down",) and neg["a"].weight == 1.0


def test_unknown_searches_and_unshown_clicks_are_ignored_but_unshown_used_counts(fb: SqliteFeedbackStore) -> None:
    fb.write([imp("s1", "q", ["a", "b"], T0)],
             [ev("nope", "a", "used", T0 + 1), ev("s1", "zzz", "click", T0 + 2), ev("s1", "cited", "used", T0 + 3),
              ev("s1", "b", "click", T0 + 4)])
    labels = export_labels(fb, eval_fraction=0.0, min_eval_queries=0)
    q = one(labels, "q")
    pos, neg = judged(q)
    assert set(pos) == {"b", "cited"} and pos["cited"].gain == 2.0 and "zzz" not in pos
    assert set(neg) == {"a"}  # skipped above b; the "used" of an unknown search did not count
    assert "cited" not in q.shown
    st = labels.stats
    assert (st["events"], st["events_unknown_search"], st["events_not_shown"], st["events_unshown_explicit"]) == (
        2, 1, 1, 1)


def test_queries_without_a_positive_are_dropped(fb: SqliteFeedbackStore) -> None:
    fb.write([imp("s1", "q1", ["a"], T0), imp("s2", "q2", ["a"], T0 + 1), imp("s3", "q3", ["a"], T0 + 2)],
             [ev("s1", "a", "click", T0 + 1), ev("s2", "a", "thumbs_down", T0 + 3)])
    labels = export_labels(fb, eval_fraction=0.0, min_eval_queries=0)
    assert len(labels) == 1 and labels.stats["queries"] == 3 and labels.stats["queries_without_positive"] == 2
    assert labels.stats["positives"] == 1 and labels.stats["negatives"] == 0


# ---- split ---------------------------------------------------------------------------------
def _many(fb: SqliteFeedbackStore, n: int, *, again: str | None = None) -> None:
    """n queries, query i first asked on day i, each with a click; ``again`` is asked once more last."""
    imps = [imp(f"s{i}", f"q{i}", ["a", "b"], T0 + i * DAY) for i in range(n)]
    events = [ev(f"s{i}", "a", "click", T0 + i * DAY + 1) for i in range(n)]
    if again is not None:
        imps.append(imp("late", again, ["b", "a"], T0 + (n + 5) * DAY))
        events.append(ev("late", "b", "click", T0 + (n + 5) * DAY + 1))
    fb.write(imps, events)


def test_time_split_holds_out_the_newest_queries_and_never_leaks(fb: SqliteFeedbackStore) -> None:
    _many(fb, 10, again="q0")  # the oldest query comes back after all others
    labels = export_labels(fb, eval_fraction=0.2)
    assert [q.query for q in labels.eval] == ["q8", "q9"]
    assert [q.query for q in labels.train] == [f"q{i}" for i in range(8)]
    assert not {q.query_id for q in labels.train} & {q.query_id for q in labels.eval}
    q0 = one(labels, "q0")
    assert q0 in labels.train and q0.impressions == 2 and q0.last_seen == T0 + 15 * DAY
    assert {j.doc_id for j in q0.positives} == {"a", "b"} and labels.stats["train_queries"] == 8
    assert labels.qrels("eval") == {hash_query("q8"): {"a": 1}, hash_query("q9"): {"a": 1}}
    assert labels.queries("eval") == {hash_query("q8"): "q8", hash_query("q9"): "q9"}


def test_split_sizes(fb: SqliteFeedbackStore) -> None:
    _many(fb, 3)
    assert len(export_labels(fb, eval_fraction=0.0).eval) == 1  # min_eval_queries
    assert len(export_labels(fb, eval_fraction=0.0, min_eval_queries=0).eval) == 0
    assert len(export_labels(fb, eval_fraction=0.9).eval) == 2  # never all: one query trains
    assert len(export_labels(fb, eval_fraction=0.2, min_eval_queries=5).eval) == 2


def test_a_single_query_trains(fb: SqliteFeedbackStore) -> None:
    _many(fb, 1)
    labels = export_labels(fb, eval_fraction=0.5)
    assert len(labels.train) == 1 and labels.eval == []


def test_split_time(fb: SqliteFeedbackStore) -> None:
    _many(fb, 6, again="q1")
    labels = export_labels(fb, split_time=T0 + 4 * DAY)
    assert [q.query for q in labels.eval] == ["q4", "q5"]  # q1's late impression stays in its train group
    assert labels.settings["split_time"] == T0 + 4 * DAY


def test_same_query_in_two_collections_stays_in_one_split(fb: SqliteFeedbackStore) -> None:
    fb.write([imp("s1", "q", ["a"], T0, "kb"), imp("s2", "other", ["a"], T0 + DAY, "kb"),
              imp("s3", "q", ["a"], T0 + 2 * DAY, "docs")],
             [ev(s, "a", "click", T0 + 3 * DAY) for s in ("s1", "s2", "s3")])
    labels = export_labels(fb, eval_fraction=0.5)
    assert [(q.query, q.collection) for q in labels.train] == [("q", "kb"), ("q", "docs")]
    assert [q.query for q in labels.eval] == ["other"]
    with pytest.raises(InputError, match="collection="):
        labels.qrels("train")


def test_collection_and_time_filters(fb: SqliteFeedbackStore) -> None:
    fb.write([imp("s1", "q1", ["a"], T0, "kb"), imp("s2", "q2", ["a"], T0 + DAY, "docs"),
              imp("s3", "q3", ["a"], T0 + 2 * DAY, "kb")],
             [ev("s1", "a", "click", T0 + 5 * DAY),  # late feedback still counts
              ev("s2", "a", "click", T0 + DAY + 1), ev("s3", "a", "click", T0 + 2 * DAY + 1)])
    labels = export_labels(fb, collection="kb", eval_fraction=0.0, min_eval_queries=0)
    assert [q.query for q in labels.train] == ["q1", "q3"] and {q.collection for q in labels.train} == {"kb"}
    assert labels.stats["events_outside"] == 1 and labels.stats["impressions"] == 2
    window = export_labels(fb, since=T0, until=T0 + DAY + 10, eval_fraction=0.0, min_eval_queries=0)
    assert [q.query for q in window.train] == ["q1", "q2"]


def test_hashed_store_has_no_query_text(db: Path, tmp_path: Path) -> None:
    with SqliteFeedbackStore(tmp_path / "hashed.db", hash_queries=True) as store:
        store.write([imp("s1", "secret", ["a"], T0), imp("s2", "other", ["a"], T0 + 1)],
                    [ev("s1", "a", "click", T0 + 2), ev("s2", "a", "click", T0 + 2)])
        labels = export_labels(store)
    assert all(q.query is None for q in labels.train + labels.eval)
    assert labels.qrels() == {hash_query("other"): {"a": 1}}
    with pytest.raises(InputError, match="hash_queries"):
        labels.queries()


# ---- identity and files --------------------------------------------------------------------
def test_data_hash_is_stable_and_sensitive(fb: SqliteFeedbackStore) -> None:
    _many(fb, 4)
    first = export_labels(fb)
    assert first.data_hash() == export_labels(fb).data_hash() and len(first.data_hash()) == 64
    assert export_labels(fb, eta=0.5).data_hash() != first.data_hash()  # a setting
    fb.write([], [ev("s0", "b", "thumbs_down", T0 + 1)])
    assert export_labels(fb).data_hash() != first.data_hash()  # the data


def test_jsonl_round_trip_is_exact(fb: SqliteFeedbackStore, tmp_path: Path) -> None:
    _many(fb, 5, again="q2")
    fb.write([imp("u", "ünïcode", ["x", "y"], T0 + 0.123456789)],
             [ev("u", "y", "click", T0 + 1), ev("u", "x", "rating", T0 + 2, 0.5)])
    labels = export_labels(fb, eta=0.7)
    path = tmp_path / "labels.jsonl"
    assert labels.to_jsonl(path) == len(labels) == 6
    lines = path.read_text(encoding="utf8").splitlines()
    header = json.loads(lines[0])
    assert header["kind"] == "labels" and header["stats"] == labels.stats and len(lines) == 7
    assert {json.loads(line)["split"] for line in lines[1:]} == {"train", "eval"}
    back = LabelSet.from_jsonl(path)
    assert back == labels and back.data_hash() == labels.data_hash()


def test_from_jsonl_refuses_other_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no labels file"):
        LabelSet.from_jsonl(tmp_path / "missing.jsonl")
    other = tmp_path / "other.jsonl"
    other.write_text('{"_id": "q1", "text": "hello"}\n')
    with pytest.raises(InputError, match="not a labels file"):
        LabelSet.from_jsonl(other)
    with pytest.raises(InputError, match="does not exist"):
        LabelSet([], [], {}).to_jsonl(tmp_path / "nowhere" / "labels.jsonl")


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"eval_fraction": 1.0}, "eval_fraction"), ({"eval_fraction": -0.1}, "eval_fraction"),
    ({"eta": -1.0}, "eta"), ({"max_weight": 0.5}, "max_weight"),
    ({"rating_negative": 3.0, "rating_positive": 3.0}, "rating_negative"),
    ({"min_eval_queries": -1}, "min_eval_queries"), ({"eta": float("nan")}, "eta"),
])
def test_bad_settings_are_config_errors(fb: SqliteFeedbackStore, kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        export_labels(fb, **kwargs)


# ---- the command line ----------------------------------------------------------------------
def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    sdk.cli.feedback.register(sub)
    args = parser.parse_args(["feedback", *argv])
    return args.handler(args)


def test_cli_export_writes_labels_and_a_summary(fb: SqliteFeedbackStore, db: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    _many(fb, 5)
    out = tmp_path / "labels.jsonl"
    assert cli("export", "--feedback", str(db), "--output", str(out), "--split-time", "2023-11-17T22:13:20Z") == 0
    text = capsys.readouterr().out
    labels = LabelSet.from_jsonl(out)
    assert labels.settings["split_time"] == T0 + 3 * DAY  # the ISO time, in Unix seconds
    assert [q.query for q in labels.eval] == ["q3", "q4"] and len(labels.train) == 3
    assert f"wrote {len(labels)} queries to {out}" in text and labels.data_hash() in text
    assert "positives 5, negatives 0" in text


def test_cli_export_json_and_time_parsing(fb: SqliteFeedbackStore, db: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    _many(fb, 5)
    out = tmp_path / "l.jsonl"
    assert cli("export", "--feedback", f"sqlite:///{db}", "--output", str(out), "--json",
               "--split-time", str(T0 + 3 * DAY), "--eta", "0.5") == 0
    report = json.loads(capsys.readouterr().out)
    labels = LabelSet.from_jsonl(out)
    assert report["data_hash"] == labels.data_hash() and report["path"] == str(out)
    assert report["stats"]["eval_queries"] == 2 and report["stats"]["train_queries"] == 3
    assert report["settings"]["eta"] == 0.5
    assert sdk.cli.feedback.parse_time("2023-11-14T22:13:20Z", "--x") == T0
    assert sdk.cli.feedback.parse_time("2023-11-14T22:13:20", "--x") == T0  # no zone: UTC
    with pytest.raises(InputError, match="ISO 8601"):
        sdk.cli.feedback.parse_time("yesterday", "--since")


def test_cli_export_refuses_a_missing_folder_or_store(fb: SqliteFeedbackStore, db: Path, tmp_path: Path) -> None:
    _many(fb, 2)
    with pytest.raises(InputError, match="nowhere"):
        cli("export", "--feedback", str(db), "--output", str(tmp_path / "nowhere" / "labels.jsonl"))
    missing = tmp_path / "typo.db"
    with pytest.raises(InputError, match="no feedback store"):
        cli("stats", "--feedback", str(missing))
    assert not missing.exists()


def test_cli_stats_and_prune(fb: SqliteFeedbackStore, db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _many(fb, 3)  # written in 2023: older than any recent cutoff
    assert cli("stats", "--feedback", str(db), "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"impressions": 3, "shown": 6, "events": 3}
    assert cli("stats", "--feedback", str(db)) == 0
    assert "3 impressions (6 shown hits), 3 events" in capsys.readouterr().out
    assert cli("prune", "--feedback", str(db), "--days", "30") == 0
    assert "pruned 6 rows" in capsys.readouterr().out
    assert fb.counts() == {"impressions": 0, "shown": 0, "events": 0}
    with pytest.raises(InputError, match="--days"):
        cli("prune", "--feedback", str(db), "--days", "-1")
