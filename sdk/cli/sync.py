"""``sdk sync``: keep a collection in step with a folder, JSONL or CSV file (and status, verify, rollback).

    sdk sync SOURCE --store URL --collection NAME [--plan] [--json] [--allow-mass-delete] ...
    sdk sync SOURCE --store URL --collection NAME --engine ray [--address ADDR] [--encoder-actors N] [--gpus-per-actor G]
    sdk sync status   --store URL --collection NAME [--json]
    sdk sync verify   --store URL --collection NAME [--repair] [--json]
    sdk sync rollback --store URL --collection NAME

argparse cannot mix a positional SOURCE with sub-commands under one verb, so ``sdk.cli.main``
rewrites ``sync status`` (verify, rollback) to the parser names ``sync-status`` (...) first.
Exit codes: 0 done (for verify: no drift left), 1 a handled error or drift, 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from sdk.cli.eval import positive_int

__all__ = ["ACTIONS", "register"]

ACTIONS = ("status", "verify", "rollback")


def _target(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, help="database URL, e.g. qdrant+local:./sdk_data or postgresql://...")
    p.add_argument("--collection", required=True, help="the collection (an alias over versioned copies)")
    p.add_argument("--ledger", default=None,
                   help="ledger: a .sqlite path or postgresql:// URL (default: a file per store and collection "
                        "under $SDK_LEDGER_DIR or ~/.local/share/retrieval-forge/ledgers)")


def register(sub: Any) -> None:
    p = sub.add_parser("sync", help="keep a collection equal to a folder, JSONL or CSV file",
                       description="Make a collection equal to SOURCE: only changed chunks are re-encoded, deleted "
                                   "documents removed; new encoders or chunking build a new version behind the alias. "
                                   "Also: sdk sync status|verify|rollback.",
                       epilog="examples:\n"
                              "  sdk sync ./notes --store qdrant+local:./kb --collection notes\n"
                              "  sdk sync corpus.jsonl --store postgresql://app@db/sdk --collection docs --plan\n"
                              "  sdk sync --sample --store milvus+lite:./kb.db --collection faq --no-sparse\n"
                              "  sdk sync corpus.jsonl --store postgresql://app@db/sdk --collection docs --engine ray "
                              "--address auto --encoder-actors 8 --gpus-per-actor 1\n"
                              "  sdk sync status --store qdrant+local:./kb --collection notes",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", nargs="?",
                   help="a folder (.txt .md .rst .html), a .jsonl file (id/_id, text) or a .csv (id, text)")
    p.add_argument("--sample", action="store_true",
                   help="sync the bundled sample instead (70 Python FAQ answers), e.g. for a first run")
    _target(p)
    p.add_argument("--dense-model", default=None, help="dense model folder or hub id (default: all-MiniLM-L6-v2)")
    lexical = p.add_mutually_exclusive_group()
    lexical.add_argument("--sparse-model", default=None,
                         help="SPLADE folder or hub id (default: packaged SPLADE-tiny where the store holds sparse)")
    lexical.add_argument("--no-sparse", action="store_true", help="dense vectors only")
    p.add_argument("--chunk-tokens", type=int, default=None,
                   help="chunk size in the dense model's tokens (default: its max_seq_length)")
    p.add_argument("--chunk-overlap", type=int, default=0, help="tokens shared by consecutive chunks (default: 0)")
    p.add_argument("--keep", type=int, default=2, help="versions kept for rollback (default: 2)")
    p.add_argument("--batch-size", type=int, default=64, help="chunks encoded and written per batch")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    p.add_argument("--backend", default="torch", choices=["torch", "onnx", "openvino", "auto"],
                   help="what runs the encoders: auto times each backend on this CPU once and keeps the fastest "
                        "within the quality bar (default: torch; the choice is part of the collection's encoder "
                        "fingerprint, and sdk search reuses it)")
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: this process; ray: read, chunk and encode on a Ray cluster (the ray extra), same "
                        "ledger and result")
    p.add_argument("--address", default=None, help="with --engine ray: the cluster (auto, ray://head:10001; "
                                                   "default: a local Ray)")
    p.add_argument("--encoder-actors", type=positive_int, default=None,
                   help="with --engine ray: encoder actors, each loading the models once (default: 1)")
    p.add_argument("--gpus-per-actor", type=float, default=None,
                   help="with --engine ray: GPUs per encoder actor, e.g. 1 or 0.5 (default: 0, CPU)")
    p.add_argument("--plan", action="store_true", help="only show what would change (writes nothing)")
    p.add_argument("--allow-mass-delete", action="store_true",
                   help="allow a run that deletes more than half of the collection's documents")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run_sync, parser=p)

    s = sub.add_parser("sync-status", help="(sdk sync status) what the ledger says about a synced collection",
                       description="Documents, chunks, the physical version behind the alias, the encoder and the last run.",
                       epilog="example:\n  sdk sync status --store qdrant+local:./kb --collection notes --json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _target(s)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(handler=run_status)

    v = sub.add_parser("sync-verify", help="(sdk sync verify) compare the ledger with what the store holds",
                       description="Find chunks the ledger records but the store lacks, and orphans the store holds.",
                       epilog="example:\n  sdk sync verify --store qdrant+local:./kb --collection notes --repair",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _target(v)
    v.add_argument("--repair", action="store_true", help="delete orphans and re-write missing chunks")
    v.add_argument("--device", default=None, help="cpu, cuda, mps (for re-writing missing chunks)")
    v.add_argument("--json", action="store_true", help="print one JSON object")
    v.set_defaults(handler=run_verify)

    r = sub.add_parser("sync-rollback", help="(sdk sync rollback) point the alias back at the previous version",
                       description="Switch the alias back to the version kept from before the last re-index.",
                       epilog="example:\n  sdk sync rollback --store qdrant+local:./kb --collection notes",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _target(r)
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.set_defaults(handler=run_rollback)


def rewrite_argv(argv: list[str]) -> list[str]:
    """``sync status ...`` -> ``sync-status ...`` (see the module docstring)."""
    for i, arg in enumerate(argv):
        if arg == "sync":
            if i + 1 < len(argv) and argv[i + 1] in ACTIONS:
                return [*argv[:i], f"sync-{argv[i + 1]}", *argv[i + 2:]]
            return argv
        if not arg.startswith("-"):
            return argv
    return argv


def _print(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, sort_keys=True, default=str) if args.json else text)


def run_sync(args: argparse.Namespace) -> int:
    from sdk.sync import plan, sync
    from sdk.sync.sources import sample_corpus

    if (args.source is None) == (not args.sample):
        args.parser.error("give a SOURCE (a folder, .jsonl or .csv file) or --sample")  # exits 2
    source = str(sample_corpus()) if args.sample else args.source

    options = {"dense": args.dense_model, "sparse": False if args.no_sparse else args.sparse_model,
               "ledger": args.ledger, "device": args.device, "backend": args.backend,
               "chunk_tokens": args.chunk_tokens,
               "chunk_overlap": args.chunk_overlap, "keep": args.keep, "batch_size": args.batch_size,
               "allow_mass_delete": args.allow_mass_delete, "progress": None if not args.json else False}
    ray = {k: v for k, v in (("address", args.address), ("encoder_actors", args.encoder_actors),
                             ("gpus_per_actor", args.gpus_per_actor)) if v is not None}
    if ray and args.engine != "ray":
        args.parser.error("--address, --encoder-actors and --gpus-per-actor need --engine ray")  # exits 2
    if args.plan:
        report = plan(source, args.store, args.collection, **options)
    elif args.engine == "ray":
        report = sync(source, args.store, args.collection, engine="ray", ray=ray, **options)
    else:
        report = sync(source, args.store, args.collection, **options)
    _print(args, report.to_dict(), report.summary())
    return 0


def run_status(args: argparse.Namespace) -> int:
    from sdk.sync import status

    info = status(args.store, args.collection, ledger=args.ledger)
    if info["collection"] is None:
        text = f"{args.collection}: nothing synced yet (ledger has no state)"
    else:
        last = info.get("last_run") or {}
        where = f"{info['alias']} -> {info['collection']}" if info["alias"] else info["collection"]
        text = (f"{where}: {info['documents']} documents, {info['chunks']} chunks\n"
                f"encoder: {info['encoder']}\nversions kept: {', '.join(info['versions'])}\n"
                f"last run: {last.get('finished', 'never')} ({last.get('added', 0)} added, "
                f"{last.get('updated', 0)} updated, {last.get('deleted', 0)} deleted)")
        if info.get("staged"):
            done = "complete" if info.get("staged_complete") else "incomplete"
            text += f"\nstaged candidate: {info['staged']} ({done}; sdk learn promotes or drops it)"
    _print(args, info, text)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from sdk.sync import verify

    report = verify(args.store, args.collection, repair=args.repair, ledger=args.ledger, device=args.device)
    if not report.drift:
        text = (f"{report.collection}: no drift ({report.ledger_chunks} chunks in the ledger and the store)"
                + (" after repair" if report.repaired else ""))
    else:
        text = (f"{report.collection}: drift: {len(report.missing)} chunks missing from the store, "
                f"{len(report.orphans)} in the store but not in the ledger; run sdk sync verify --repair")
    _print(args, report.to_dict(), text)
    return 1 if report.drift else 0


def run_rollback(args: argparse.Namespace) -> int:
    from sdk.sync import rollback

    info = rollback(args.store, args.collection, ledger=args.ledger)
    _print(args, info, f"{info['alias']} -> {info['collection']} (was {info['from']})")
    return 0
