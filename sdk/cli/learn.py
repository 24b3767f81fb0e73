"""``sdk learn``, ``sdk promote``, ``sdk rollback``: the feedback loop from the command line.

    sdk learn --store qdrant+local:./sdk_data --collection docs --feedback feedback.db [--dry-run]
    sdk learn --store ... --collection docs --feedback feedback.db --list
    sdk promote CANDIDATE --store ... --collection docs --feedback feedback.db
    sdk rollback --store ... --collection docs --feedback feedback.db

``learn`` turns the feedback into labels, builds candidates cheapest first (fitted fusion, then a
fine-tuned reranker, then a fine-tuned dense encoder staged through sdk sync), gates each against
what is served on held-out queries and promotes the ones that are better by the margin. Pipelines
built with the same feedback store follow promotions and rollbacks without a restart.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from sdk.cli.eval import positive_int

__all__ = ["register"]

_RAW = argparse.RawDescriptionHelpFormatter


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, help="database URL, e.g. qdrant+local:./sdk_data")
    p.add_argument("--collection", required=True, help="the collection (or sync alias) the pipeline serves")
    p.add_argument("--feedback", required=True, help="feedback store: SQLite path, sqlite:///... or postgresql://...")
    p.add_argument("--ledger", default=None, help="the sync ledger, when not in the default place")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def register(sub: Any) -> None:
    p = sub.add_parser("learn", help="learn from feedback: fit fusion, fine-tune reranker and encoder, gate, promote",
                       formatter_class=_RAW, description=__doc__.split("\n\n")[2],
                       epilog="examples:\n  sdk learn --store qdrant+local:./sdk_data --collection docs --feedback "
                              "feedback.db --dry-run\n  sdk learn ... --steps fusion,reranker --margin 0.01")
    _common(p)
    p.add_argument("--steps", default="fusion,reranker,dense",
                   help="comma-separated, run cheapest first: fusion, reranker, dense, sparse (default: the first three)")
    p.add_argument("--dry-run", action="store_true", help="build and gate candidates, promote nothing")
    p.add_argument("--list", action="store_true", help="list the registry's candidates and the serving history")
    p.add_argument("--margin", type=float, default=0.005, help="least nDCG@10 gain to promote (default: 0.005)")
    p.add_argument("--min-queries", type=int, default=10, help="held-out queries the gate needs (default: 10)")
    p.add_argument("--eval-fraction", type=float, default=0.2, help="newest queries held out (default: 0.2)")
    p.add_argument("--dense-model", default=None, help="the served dense model (default: the one sync recorded)")
    p.add_argument("--reranker", default=None, help="the served reranker (default: the promoted one, if any)")
    p.add_argument("--reranker-base", default=None, help="model to start a reranker from when none is served")
    p.add_argument("--artifacts", default=None, help="folder for candidate models (default: $SDK_LEARN_DIR or "
                   "~/.local/share/retrieval-forge/candidates)")
    p.add_argument("--dev", default=None, help="labelled BEIR folder:split the gate also checks, e.g. data/kb:dev")
    p.add_argument("--epochs", type=float, default=1.0, help="fine-tuning epochs (default: 1)")
    p.add_argument("--batch-size", type=positive_int, default=16,
                   help="fine-tuning batch (default: 16); in-batch negatives make larger batches teach encoders more")
    p.add_argument("--eval-depth", type=positive_int, default=100,
                   help="hits each setup ranks for the gate before unjudged ones are dropped (default: 100)")
    p.add_argument("--labels", default=None, help="learn from this labels file (sdk feedback export) instead of "
                   "exporting the store's feedback now")
    p.set_defaults(handler=run_learn)

    pr = sub.add_parser("promote", help="serve a candidate from the registry", formatter_class=_RAW,
                        description="Promote a candidate recorded by sdk learn (e.g. after --dry-run).",
                        epilog="example:\n  sdk promote reranker-20261201-101500-ab12cd --store qdrant+local:./sdk_data "
                               "--collection docs --feedback feedback.db")
    pr.add_argument("candidate", help="candidate id (sdk learn --list)")
    _common(pr)
    pr.add_argument("--force", action="store_true", help="promote even a candidate the gate refused")
    pr.set_defaults(handler=run_promote)

    rb = sub.add_parser("rollback", help="serve what was served before the last promotion", formatter_class=_RAW,
                        description="Undo the last promotion (an encoder's alias switch included).",
                        epilog="example:\n  sdk rollback --store qdrant+local:./sdk_data --collection docs "
                               "--feedback feedback.db")
    _common(rb)
    rb.set_defaults(handler=run_rollback)


def _learner(args: argparse.Namespace, **extra: Any) -> Any:
    from sdk.learning import Learner

    return Learner(args.store, args.collection, args.feedback, ledger=args.ledger, device=args.device, **extra)


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, default=str) if args.json else text)


def run_learn(args: argparse.Namespace) -> int:
    from sdk.core.errors import InputError
    from sdk.learning import Gate, candidates

    if args.list:
        from sdk.feedback import open_feedback_store
        from sdk.feedback.registry import Registry

        store = open_feedback_store(args.feedback)
        try:
            rows = [c.to_dict() for c in candidates(store, args.collection)]
            history = Registry(store).history(args.collection)
        finally:
            store.close()
        lines = [f"{c['candidate_id']:<40} {c['kind']:<8} {c['decision']:<11} {c['reason']}" for c in rows]
        lines += [f"serving v{h['version']} {h['action']} {h['candidate_id'] or '-'}" for h in history]
        _print(args, {"candidates": rows, "serving": history}, "\n".join(lines) or "no candidates yet")
        return 0
    dev = None
    if args.dev:
        folder, sep, split = args.dev.rpartition(":")
        if not sep or not folder:
            raise InputError(f"--dev takes FOLDER:SPLIT (a BEIR folder and a qrels split), got {args.dev!r}")
        dev = (folder, split)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    with _learner(args, dense=args.dense_model, reranker=args.reranker, reranker_base=args.reranker_base,
                  artifacts=args.artifacts, dev=dev, gate=Gate(margin=args.margin, min_queries=args.min_queries),
                  label_options={"eval_fraction": args.eval_fraction},
                  train_options={"epochs": args.epochs, "batch_size": args.batch_size},
                  eval_depth=args.eval_depth) as learner:
        labels = None
        if args.labels:
            from sdk.feedback import LabelSet

            labels = LabelSet.from_jsonl(args.labels)
        report = learner.learn(steps, dry_run=args.dry_run, labels=labels)
    _print(args, report.to_dict(), report.summary())
    return 0


def run_promote(args: argparse.Namespace) -> int:
    with _learner(args) as learner:
        state = learner.promote(args.candidate, force=args.force)
    _print(args, {"promoted": args.candidate, "serving_version": state.version, "state": state.to_dict()},
           f"promoted {args.candidate}: {args.collection} now serves version {state.version}")
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    with _learner(args) as learner:
        now, undone = learner.rollback()
    _print(args, {"serving_version": now.version, "undone": undone.candidate_id, "state": now.to_dict()},
           f"rolled back {undone.candidate_id or 'the last promotion'}: {args.collection} serves version "
           f"{now.version}")
    return 0
