"""Labels: the feedback store turned into per-query training and evaluation data (issue 15, item 2).

``export_labels(store)`` reads impressions and events and returns a ``LabelSet``: one
``QueryLabels`` per query with graded positives, negatives and the documents shown, split by time
into ``train`` and ``eval``. The rules are the contract:

1. Selection. Impressions with ``since <= created_at < until`` (``store.impressions``), only of the
   logical ``collection`` when given. Events come from ``store.events(since=since)``: every event of
   a selected impression counts, even one after ``until`` (feedback arrives late). Ignored and
   counted in ``stats``: events with ``known_search=False`` (``events_unknown_search``), clicks on a
   document the search did not show (``position is None``: ``events_not_shown``) and events of
   impressions outside the selection (``events_outside``). Explicit signals on an unshown document
   do count (a RAG answer may cite a document the search did not rank; ``events_unshown_explicit``).
2. Groups. One group per (collection, query_hash): a query asked again later joins its group.
3. Verdict per group and document. Explicit signals are ``used``, ``thumbs_up``, ``thumbs_down`` and
   ``rating``; the LATEST one (by time, then write order) decides: ``used`` / ``thumbs_up`` /
   ``rating >= rating_positive`` make a positive (gain 2), ``thumbs_down`` /
   ``rating <= rating_negative`` a negative, a rating in between makes the document neutral: left
   out of both lists (``stats["neutral"]``). Without explicit signals, any click makes a click-only
   positive (gain 1).
4. Weights (training). Each agreeing signal counts once per impression: an explicit one 1.0, a
   click ``min(1 / propensity(position, eta), max_weight)`` (clipped inverse propensity of the
   position-based click model); summed over the group's impressions. A positive sums its positive
   explicit signals and its clicks; a negative its negative explicit signals and the impressions in
   which it was skipped (1.0 each).
5. Skip negatives. Within one impression, a hit shown above (smaller position than) the lowest
   hit with a positive signal there (click, used, thumbs_up, rating >= rating_positive) that got no
   signal at all in that impression was seen and passed over: a negative with reason ``skipped``
   (a hit with an explicit negative or neutral signal there is judged by that signal, so one
   impression's evidence counts once). A document that ends up positive (or neutral) in its group
   is never a negative.
6. Groups without a positive are dropped (``queries_without_positive``).
7. Split by time, by query: groups sorted by ``first_seen`` (ties by ``query_id``). With
   ``split_time``, groups first seen at or after it are ``eval``; otherwise the newest
   ``ceil(eval_fraction * n)`` are, at least ``min_eval_queries`` when ``n >= 2`` and never all
   (one group at least trains). Without a ``collection`` filter the same query may form a group
   in several collections; those groups move together (the unit of the split is the query hash),
   so no query is ever in both splits.

``LabelSet.data_hash()`` fingerprints the settings and both splits (not the stats), stable across
runs; ``to_jsonl`` / ``from_jsonl`` round-trip a set exactly; ``qrels`` and ``queries`` give what
``sdk.evaluation.metrics`` expects.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdk.core.errors import ConfigError, InputError
from sdk.feedback.records import FeedbackEvent, Impression
from sdk.feedback.store import FeedbackStore

__all__ = ["Judgement", "LabelSet", "QueryLabels", "export_labels", "propensity"]

SPLITS = ("train", "eval")
_FORMAT = 1  # version of the JSONL layout
_EXPLICIT = ("used", "thumbs_up", "thumbs_down", "rating")
_STAT_KEYS = ("impressions", "events", "events_unknown_search", "events_not_shown", "events_outside",
              "events_unshown_explicit", "queries", "queries_without_positive", "train_queries", "eval_queries",
              "positives", "negatives", "neutral")


@dataclass(frozen=True)
class Judgement:
    """One document's label within one query group (see rules 3-5 of the module docstring).

    ``gain``: 2.0 explicit positive, 1.0 click-only positive, 0.0 negative. ``weight``: training
    weight. ``signals``: the signals behind the verdict, sorted (negatives: ``thumbs_down``,
    ``rating``, ``skipped``)."""

    doc_id: str
    gain: float
    weight: float
    signals: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"doc_id": self.doc_id, "gain": self.gain, "weight": self.weight, "signals": list(self.signals)}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Judgement:
        return cls(str(row["doc_id"]), float(row["gain"]), float(row["weight"]), tuple(row["signals"]))


@dataclass(frozen=True)
class QueryLabels:
    """One query: all impressions of one ``query_hash`` in one logical collection.

    ``query`` is ``None`` when the store hashed queries; ``positives`` are sorted by weight
    (descending) then id, ``negatives`` by id; ``shown`` lists every document shown for the
    query in first-shown order (an evaluation candidate set)."""

    query_id: str
    query: str | None
    collection: str
    first_seen: float
    last_seen: float
    impressions: int
    positives: tuple[Judgement, ...]
    negatives: tuple[Judgement, ...]
    shown: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"query_id": self.query_id, "query": self.query, "collection": self.collection,
                "first_seen": self.first_seen, "last_seen": self.last_seen, "impressions": self.impressions,
                "positives": [j.to_dict() for j in self.positives],
                "negatives": [j.to_dict() for j in self.negatives], "shown": list(self.shown)}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> QueryLabels:
        return cls(str(row["query_id"]), row["query"], str(row["collection"]), float(row["first_seen"]),
                   float(row["last_seen"]), int(row["impressions"]),
                   tuple(Judgement.from_dict(j) for j in row["positives"]),
                   tuple(Judgement.from_dict(j) for j in row["negatives"]), tuple(row["shown"]))


@dataclass
class LabelSet:
    """The exported labels: ``train`` and ``eval`` query groups, the export ``settings`` and ``stats``."""

    train: list[QueryLabels]
    eval: list[QueryLabels]
    settings: dict[str, Any]
    stats: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.train) + len(self.eval)

    def split(self, name: str) -> list[QueryLabels]:
        """The groups of ``name`` (``train`` or ``eval``)."""
        if name not in SPLITS:
            raise InputError(f"unknown split {name!r}; use 'train' or 'eval'")
        return self.train if name == "train" else self.eval

    def data_hash(self) -> str:
        """sha256 hex of a canonical JSON of the settings and both splits (the stats are left out)."""
        payload = {"settings": self.settings, "train": [q.to_dict() for q in self.train],
                   "eval": [q.to_dict() for q in self.eval]}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return hashlib.sha256(text.encode("utf8")).hexdigest()

    def qrels(self, split: str = "eval") -> dict[str, dict[str, int]]:
        """``{query_id: {doc_id: gain}}`` of the positives, the form ``sdk.evaluation.metrics`` takes."""
        out: dict[str, dict[str, int]] = {}
        for q in self._unique(split):
            out[q.query_id] = {j.doc_id: int(j.gain) for j in q.positives}
        return out

    def queries(self, split: str = "eval") -> dict[str, str]:
        """``{query_id: text}``; ``InputError`` when the store kept only hashes of the queries."""
        groups = self._unique(split)
        hashed = [q.query_id for q in groups if q.query is None]
        if hashed:
            raise InputError(f"{len(hashed)} {split} queries have no text: the feedback store hashed them "
                             "(hash_queries=True); record into a store without hash_queries to evaluate from "
                             "feedback, or map the texts you have to their ids with sdk.feedback.hash_query(text)")
        return {q.query_id: str(q.query) for q in groups}

    def _unique(self, split: str) -> list[QueryLabels]:
        groups = self.split(split)
        seen = Counter(q.query_id for q in groups)
        twice = sorted(qid for qid, n in seen.items() if n > 1)
        if twice:
            names = sorted({q.collection for q in groups if q.query_id in twice})
            raise InputError(f"query {twice[0][:16]}... appears in several collections ({', '.join(names)}); "
                             "export one collection at a time (export_labels(store, collection=...)) to evaluate")
        return groups

    # ---- files ----------------------------------------------------------------------------------
    def to_jsonl(self, path: str | os.PathLike[str]) -> int:
        """Write a header line then one line per query (with its ``split``); returns the queries written."""
        target = Path(path)
        if not target.parent.is_dir():
            raise InputError(f"the folder {target.parent} does not exist; create it or write the labels elsewhere")
        if target.is_dir():
            raise InputError(f"{target} is a folder; pass a file name such as {target / 'labels.jsonl'}")
        header = {"kind": "labels", "version": _FORMAT, "settings": self.settings, "stats": self.stats}
        lines = [json.dumps(header, sort_keys=True, allow_nan=False)]
        for name in SPLITS:
            lines += [json.dumps({"split": name, **q.to_dict()}, ensure_ascii=False, allow_nan=False)
                      for q in self.split(name)]
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf8")
        os.replace(tmp, target)
        return len(self)

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike[str]) -> LabelSet:
        """Read a file written by ``to_jsonl`` (or ``sdk feedback export``)."""
        source = Path(path)
        if not source.is_file():
            raise InputError(f"no labels file at {source}; write one with `sdk feedback export` or "
                             "LabelSet.to_jsonl")
        rows = source.read_text(encoding="utf8").splitlines()
        try:
            header = json.loads(rows[0]) if rows else None
        except json.JSONDecodeError:
            header = None
        if not isinstance(header, dict) or header.get("kind") != "labels":
            raise InputError(f"{source} is not a labels file (its first line must be the {{\"kind\": \"labels\"}} "
                             "header); write it with `sdk feedback export`")
        if header.get("version") != _FORMAT:
            raise InputError(f"{source} has labels format {header.get('version')!r}; this version reads {_FORMAT}, "
                             "export the labels again")
        out = cls([], [], dict(header.get("settings") or {}), dict(header.get("stats") or {}))
        for number, line in enumerate(rows[1:], start=2):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                out.split(row.pop("split")).append(QueryLabels.from_dict(row))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
                raise InputError(f"{source}, line {number}: not a query of a labels file ({exc!r}); "
                                 "export the labels again") from exc
        return out


def propensity(position: int, eta: float = 1.0) -> float:
    """``(1 / position) ** eta``: the chance a hit at 1-based ``position`` is looked at (position-based model)."""
    if isinstance(position, bool) or not isinstance(position, numbers.Integral) or position < 1:
        raise InputError(f"position is 1-based (1, 2, ...), got {position!r}")
    return (1.0 / int(position)) ** float(eta)


# ---- export ------------------------------------------------------------------------------------
@dataclass
class _Doc:
    """What one group knows about one document while its impressions are read."""

    explicit: list[tuple[float, int, str]] = field(default_factory=list)  # (time, order, verdict) per signal
    pos_explicit: set[tuple[str, str]] = field(default_factory=set)  # (search_id, signal)
    neg_explicit: set[tuple[str, str]] = field(default_factory=set)
    clicks: dict[str, int] = field(default_factory=dict)  # search_id -> position clicked at
    skipped: set[str] = field(default_factory=set)  # search ids where it was shown above a positive


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _settings(collection: str | None, since: float | None, until: float | None, eval_fraction: float,
              split_time: float | None, eta: float, max_weight: float, rating_positive: float,
              rating_negative: float, min_eval_queries: int) -> dict[str, Any]:
    if collection is not None and (not isinstance(collection, str) or not collection):
        raise ConfigError(f"collection must be a collection name or None, got {collection!r}")
    fraction = _number("eval_fraction", eval_fraction)
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"eval_fraction must lie in [0, 1) (one query group at least trains), got {eval_fraction!r}")
    if _number("eta", eta) < 0:
        raise ConfigError(f"eta (the position-bias exponent) must be >= 0 (0: no correction), got {eta!r}")
    if _number("max_weight", max_weight) < 1:
        raise ConfigError(f"max_weight must be >= 1 (it caps 1 / propensity, which is >= 1), got {max_weight!r}")
    if _number("rating_negative", rating_negative) >= _number("rating_positive", rating_positive):
        raise ConfigError(f"rating_negative ({rating_negative!r}) must be below rating_positive "
                          f"({rating_positive!r}); ratings between them are neutral")
    if isinstance(min_eval_queries, bool) or not isinstance(min_eval_queries, int) or min_eval_queries < 0:
        raise ConfigError(f"min_eval_queries must be a non-negative integer, got {min_eval_queries!r}")
    times = {k: None if v is None else _number(k, v) for k, v in
             (("since", since), ("until", until), ("split_time", split_time))}
    return {"collection": collection, **times, "eval_fraction": fraction, "eta": float(eta),
            "max_weight": float(max_weight), "rating_positive": float(rating_positive),
            "rating_negative": float(rating_negative), "min_eval_queries": min_eval_queries}


def export_labels(store: FeedbackStore, *, collection: str | None = None, since: float | None = None,
                  until: float | None = None, eval_fraction: float = 0.2, split_time: float | None = None,
                  eta: float = 1.0, max_weight: float = 10.0, rating_positive: float = 3.0,
                  rating_negative: float = 1.0, min_eval_queries: int = 1) -> LabelSet:
    """The labels of ``store`` under the rules of the module docstring; ``ConfigError`` on bad settings."""
    settings = _settings(collection, since, until, eval_fraction, split_time, eta, max_weight, rating_positive,
                         rating_negative, min_eval_queries)
    stats: Counter[str] = Counter({k: 0 for k in _STAT_KEYS})
    selected = {i.search_id: i for i in store.impressions(since=settings["since"], until=settings["until"])
                if collection is None or i.collection == collection}
    stats["impressions"] = len(selected)
    by_search: dict[str, list[FeedbackEvent]] = defaultdict(list)
    for e in store.events(since=settings["since"]):
        if not e.known_search:
            stats["events_unknown_search"] += 1
        elif e.search_id not in selected:
            stats["events_outside"] += 1
        elif e.position is None and e.signal not in _EXPLICIT:
            stats["events_not_shown"] += 1
        else:
            stats["events"] += 1
            stats["events_unshown_explicit"] += e.position is None
            by_search[e.search_id].append(e)
    groups: dict[tuple[str, str], list[Impression]] = defaultdict(list)
    for imp in selected.values():  # oldest first, as the store returns them
        groups[(imp.collection, imp.query_hash)].append(imp)
    stats["queries"] = len(groups)
    kept = []
    for (coll, qhash), imps in groups.items():
        labels = _group(coll, qhash, imps, by_search, settings, stats)
        if labels.positives:
            kept.append(labels)
        else:
            stats["queries_without_positive"] += 1
    train, evaluation = _split(kept, settings)
    stats.update(train_queries=len(train), eval_queries=len(evaluation),
                 positives=sum(len(q.positives) for q in kept), negatives=sum(len(q.negatives) for q in kept))
    return LabelSet(train, evaluation, settings, dict(stats))


def _verdict(e: FeedbackEvent, s: dict[str, Any]) -> str:
    if e.signal == "click":
        return "click"
    if e.signal in ("used", "thumbs_up"):
        return "positive"
    if e.signal == "thumbs_down":
        return "negative"
    value = float(e.value) if e.value is not None else math.nan
    if value >= s["rating_positive"]:
        return "positive"
    return "negative" if value <= s["rating_negative"] else "neutral"


def _group(collection: str, query_hash: str, imps: list[Impression], by_search: dict[str, list[FeedbackEvent]],
           s: dict[str, Any], stats: Counter[str]) -> QueryLabels:
    docs: dict[str, _Doc] = defaultdict(_Doc)
    shown: dict[str, None] = {}
    order = 0
    for imp in imps:
        for hit in sorted(imp.hits, key=lambda h: h.position):
            shown.setdefault(hit.doc_id, None)
        acted: set[str] = set()  # documents with any signal in this impression
        lowest = 0  # the lowest shown position with a positive signal in this impression
        for e in by_search.get(imp.search_id, ()):
            doc, verdict = docs[e.doc_id], _verdict(e, s)
            order += 1
            acted.add(e.doc_id)
            if verdict == "click":
                doc.clicks[imp.search_id] = min(e.position, doc.clicks.get(imp.search_id, e.position))
            else:
                doc.explicit.append((e.created_at, order, verdict))
                if verdict != "neutral":
                    (doc.pos_explicit if verdict == "positive" else doc.neg_explicit).add((imp.search_id, e.signal))
            if verdict in ("click", "positive"):
                lowest = max(lowest, e.position or 0)
        for hit in imp.hits:
            if hit.position < lowest and hit.doc_id not in acted:
                docs[hit.doc_id].skipped.add(imp.search_id)
    positives, negatives = [], []
    for doc_id, doc in docs.items():
        verdict = max(doc.explicit)[2] if doc.explicit else ("positive" if doc.clicks else "negative")
        if verdict == "neutral":
            stats["neutral"] += 1
        elif verdict == "positive":
            clicks = sum(min(1.0 / propensity(p, s["eta"]), s["max_weight"]) for p in doc.clicks.values())
            signals = {sig for _, sig in doc.pos_explicit} | ({"click"} if doc.clicks else set())
            gain = 2.0 if doc.pos_explicit else 1.0
            positives.append(Judgement(doc_id, gain, float(len(doc.pos_explicit) + clicks), tuple(sorted(signals))))
        elif doc.neg_explicit or doc.skipped:
            signals = {sig for _, sig in doc.neg_explicit} | ({"skipped"} if doc.skipped else set())
            weight = float(len(doc.neg_explicit) + len(doc.skipped))
            negatives.append(Judgement(doc_id, 0.0, weight, tuple(sorted(signals))))
    text = next((i.query for i in imps if i.query is not None), None)
    return QueryLabels(query_hash, text, collection, min(i.created_at for i in imps),
                       max(i.created_at for i in imps), len(imps),
                       tuple(sorted(positives, key=lambda j: (-j.weight, j.doc_id))),
                       tuple(sorted(negatives, key=lambda j: j.doc_id)), tuple(shown))


def _split(groups: Iterable[QueryLabels], s: dict[str, Any]) -> tuple[list[QueryLabels], list[QueryLabels]]:
    """(train, eval) by time; the unit is the query hash, so one query never lands in both."""
    ordered = sorted(groups, key=lambda q: (q.first_seen, q.query_id, q.collection))
    first: dict[str, float] = {}
    for q in ordered:
        first.setdefault(q.query_id, q.first_seen)
    units = sorted(first, key=lambda qid: (first[qid], qid))
    if s["split_time"] is not None:
        held = {qid for qid in units if first[qid] >= s["split_time"]}
    else:
        n = len(units)
        k = math.ceil(s["eval_fraction"] * n)
        if n >= 2:
            k = max(k, s["min_eval_queries"])
        k = max(min(k, n - 1), 0)
        held = set(units[n - k:]) if k else set()
    return [q for q in ordered if q.query_id not in held], [q for q in ordered if q.query_id in held]
