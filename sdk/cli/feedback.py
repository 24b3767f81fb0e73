"""``sdk feedback export|stats|prune``: the feedback store from the command line.

    sdk feedback export --feedback feedback.db --collection kb --output labels.jsonl
    sdk feedback stats --feedback postgresql://postgres@127.0.0.1:5432/sdk --json
    sdk feedback prune --feedback sqlite:///feedback.db --days 90

``export`` writes the labels of ``sdk.feedback.export_labels`` (the rules are in
``sdk/feedback/labels.py``) as JSONL; ``stats`` prints the rows stored; ``prune`` deletes rows
older than N days. A SQLite store must exist already: a mistyped path is an error, not a new
empty database.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sdk.core.errors import InputError

__all__ = ["parse_time", "register", "run_export", "run_prune", "run_stats"]

_TARGET_HELP = "feedback store: a SQLite path, sqlite:///path.db or postgresql://... (what the pipeline records into)"


def register(sub: Any) -> None:
    p = sub.add_parser("feedback", help="export training labels from the feedback store, show or prune it",
                       description="Work with the store a pipeline records feedback into (feedback=...).",
                       epilog="examples:\n  sdk feedback stats --feedback feedback.db\n"
                              "  sdk feedback export --feedback feedback.db --collection kb --output labels.jsonl",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    export = actions.add_parser(
        "export", help="write per-query labels (train/eval split by time) as JSONL", formatter_class=raw,
        description="Turn impressions and signals into graded positives and negatives per query, split by time "
                    "into train and eval (rules: sdk/feedback/labels.py), and write them as JSONL.",
        epilog="example:\n  sdk feedback export --feedback feedback.db --collection kb --output data/labels.jsonl"
               " --split-time 2024-06-01")
    export.add_argument("--feedback", required=True, help=_TARGET_HELP)
    export.add_argument("--collection", default=None, help="only impressions of this (logical) collection")
    export.add_argument("--output", type=Path, default=Path("labels.jsonl"),
                        help="JSONL file to write (default: labels.jsonl); its folder must exist")
    export.add_argument("--eval-fraction", type=float, default=0.2,
                        help="share of the newest queries held out for evaluation (default: 0.2)")
    export.add_argument("--split-time", default=None,
                        help="queries first seen at or after this time go to eval (Unix seconds or ISO 8601; "
                             "overrides --eval-fraction)")
    export.add_argument("--since", default=None, help="only impressions at or after this time (Unix or ISO 8601)")
    export.add_argument("--until", default=None, help="only impressions before this time (Unix or ISO 8601)")
    export.add_argument("--eta", type=float, default=1.0,
                        help="position-bias exponent: a click at position p weighs p**eta (default: 1)")
    export.add_argument("--max-weight", type=float, default=10.0, help="cap of one click's weight (default: 10)")
    export.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    export.set_defaults(handler=run_export)

    stats = actions.add_parser(
        "stats", help="rows stored: impressions, shown hits, events", formatter_class=raw,
        description="Count the impressions, shown hits and feedback events in the store.",
        epilog="example:\n  sdk feedback stats --feedback sqlite:///feedback.db --json")
    stats.add_argument("--feedback", required=True, help=_TARGET_HELP)
    stats.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    stats.set_defaults(handler=run_stats)

    prune = actions.add_parser(
        "prune", help="delete impressions and events older than N days", formatter_class=raw,
        description="Delete impressions (with their shown hits) and feedback events older than --days days.",
        epilog="example:\n  sdk feedback prune --feedback feedback.db --days 90")
    prune.add_argument("--feedback", required=True, help=_TARGET_HELP)
    prune.add_argument("--days", type=float, required=True, help="keep the last N days (N >= 0)")
    prune.set_defaults(handler=run_prune)


def parse_time(text: str | None, option: str) -> float | None:
    """Unix seconds from ``text``: a number, or ISO 8601 (a time without a zone is UTC)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InputError(f"{option} {text!r} is neither Unix seconds nor an ISO 8601 time; "
                         "write e.g. 1717200000 or 2024-06-01T00:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _open(target: str) -> Any:
    from sdk.feedback import open_feedback_store

    path = _sqlite_file(target)
    if path is not None and not path.is_file():
        raise InputError(f"no feedback store at {path}; pass the path or URL the pipeline records into "
                         "(RetrievalPipeline(..., feedback=...))")
    return open_feedback_store(target)


def _sqlite_file(target: str) -> Path | None:
    """The file a SQLite target names (``None`` for PostgreSQL and in-memory stores)."""
    if target.startswith(("postgresql://", "postgres://")) or target in (":memory:", "", "sqlite://"):
        return None
    if target.startswith("sqlite://"):
        path = target.partition("?")[0].removeprefix("sqlite://").removeprefix("/")
        return Path(path).expanduser() if path and path != ":memory:" else None
    return None if "://" in target else Path(target).expanduser()


def run_export(args: argparse.Namespace) -> int:
    from sdk.feedback import export_labels

    output = Path(args.output)
    if not output.parent.is_dir():
        raise InputError(f"the folder {output.parent} does not exist; create it or pass another --output")
    split_time = parse_time(args.split_time, "--split-time")
    since, until = parse_time(args.since, "--since"), parse_time(args.until, "--until")
    store = _open(args.feedback)
    try:
        labels = export_labels(store, collection=args.collection, since=since, until=until,
                               eval_fraction=args.eval_fraction, split_time=split_time, eta=args.eta,
                               max_weight=args.max_weight)
    finally:
        store.close()
    labels.to_jsonl(output)
    digest, st = labels.data_hash(), labels.stats
    if args.json:
        print(json.dumps({"path": str(output), "data_hash": digest, "stats": st, "settings": labels.settings}))
        return 0
    print(f"wrote {len(labels)} queries to {output}: {st['train_queries']} train, {st['eval_queries']} eval")
    print(f"positives {st['positives']}, negatives {st['negatives']}; "
          f"dropped {st['queries_without_positive']} queries without a positive")
    print(f"read {st['impressions']} impressions and {st['events']} events (ignored: "
          f"{st['events_unknown_search']} of unknown searches, {st['events_not_shown']} clicks on unshown documents)")
    print(f"data hash {digest}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    store = _open(args.feedback)
    try:
        counts = store.counts()
    finally:
        store.close()
    if args.json:
        print(json.dumps(counts))
    else:
        print(f"{counts['impressions']} impressions ({counts['shown']} shown hits), {counts['events']} events "
              f"in {store.where}")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    if not args.days >= 0:
        raise InputError(f"--days must be a non-negative number of days, got {args.days}")
    store = _open(args.feedback)
    try:
        removed = store.prune(args.days)
    finally:
        store.close()
    print(f"pruned {removed} rows (impressions and events) older than {args.days:g} days from {store.where}")
    return 0
