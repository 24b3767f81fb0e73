"""``sdk collections list|describe|drop``: what a store holds, from the command line.

    sdk collections list --store qdrant+local:./kb [--json]
    sdk collections describe notes --store qdrant+local:./kb [--json]
    sdk collections drop notes_v1 --store qdrant+local:./kb --yes

Only collections this SDK created (those holding a stored spec, ``VectorStore.list_collections``)
are listed; describing or dropping one made by other means is refused by the store's own guard.
``drop`` asks first (``--yes`` where stdin is not a terminal), refuses an alias unless
``--alias-only`` (then only the alias goes), and refuses a collection an alias still points at
unless ``--with-aliases`` (then those aliases go with it): a sync's live version is behind its alias.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sdk.core.errors import CollectionNotFoundError, InputError
from sdk.core.redaction import redact
from sdk.core.spec import CollectionSpec, DenseField
from sdk.core.store import CollectionInfo, VectorStore

__all__ = ["register", "run_describe", "run_drop", "run_list"]

_STORE_HELP = "database URL, e.g. qdrant+local:./kb, milvus+lite:./kb.db or postgresql://..."


def register(sub: Any) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("collections", help="list, describe or drop the collections this SDK created in a store",
                       description="The collections this SDK created in a store (those holding a stored spec): "
                                   "list them, show one in full, or drop one.",
                       epilog="examples:\n  sdk collections list --store qdrant+local:./kb\n"
                              "  sdk collections describe notes --store qdrant+local:./kb\n"
                              "  sdk collections drop notes_v1 --store qdrant+local:./kb --yes",
                       formatter_class=raw)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    ls = actions.add_parser(
        "list", help="each collection with its aliases, records, vector fields and encoder", formatter_class=raw,
        description="One line per collection this SDK created: name, aliases pointing at it, records, dense "
                    "fields (dimensions, similarity), sparse fields, and the encoder fingerprint (shortened).",
        epilog="examples:\n  sdk collections list --store qdrant+local:./kb\n"
               "  sdk collections list --store postgresql://postgres@127.0.0.1:5432/sdk --json")
    ls.add_argument("--store", required=True, help=_STORE_HELP)
    ls.add_argument("--json", action="store_true", help="print one JSON object")
    ls.set_defaults(handler=run_list)

    ds = actions.add_parser(
        "describe", help="one collection in full: spec, records, aliases, sync status", formatter_class=raw,
        description="The stored spec of a collection (or of the collection an alias points at) in full, its "
                    "record count, its aliases and, when sdk sync keeps a ledger for it, what the ledger says.",
        epilog="examples:\n  sdk collections describe notes --store qdrant+local:./kb\n"
               "  sdk collections describe notes_v1 --store milvus+lite:./kb.db --json")
    ds.add_argument("name", help="collection or alias")
    ds.add_argument("--store", required=True, help=_STORE_HELP)
    ds.add_argument("--ledger", default=None, help="the sync ledger, when not in the default place")
    ds.add_argument("--json", action="store_true", help="print one JSON object")
    ds.set_defaults(handler=run_describe)

    dr = actions.add_parser(
        "drop", help="drop a collection (or, with --alias-only, delete an alias)", formatter_class=raw,
        description="Drop a collection and every record in it. Asks first; where stdin is not a terminal, "
                    "--yes is required. An alias is refused unless --alias-only (the alias alone is deleted, "
                    "its collection stays); a collection an alias still points at is refused unless "
                    "--with-aliases (those aliases are deleted with it).",
        epilog="examples:\n  sdk collections drop notes_v1 --store qdrant+local:./kb\n"
               "  sdk collections drop notes_v1 --store qdrant+local:./kb --yes --with-aliases\n"
               "  sdk collections drop notes --store qdrant+local:./kb --alias-only --yes")
    dr.add_argument("name", help="the collection to drop (or the alias, with --alias-only)")
    dr.add_argument("--store", required=True, help=_STORE_HELP)
    dr.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    scope = dr.add_mutually_exclusive_group()
    scope.add_argument("--alias-only", action="store_true", help="NAME is an alias: delete it, keep its collection")
    scope.add_argument("--with-aliases", action="store_true",
                       help="also delete the aliases that point at the collection")
    dr.set_defaults(handler=run_drop)


@contextmanager
def _opened(url: str) -> Iterator[VectorStore]:
    from sdk.core.registry import connect

    store = connect(url)
    try:
        yield store
    finally:
        store.close()


def _dense(f: DenseField) -> str:
    extra = [f.storage] if f.storage != "float32" else []
    if f.matryoshka_dim:
        extra.append(f"matryoshka {f.matryoshka_dim}")
    if f.index.quantization:
        extra.append(f"quantized {f.index.quantization}")
    return f"{f.name} {f.dim}d {f.similarity.value}" + (f" ({', '.join(extra)})" if extra else "")


def _short_encoder(encoder: str | None) -> str:
    """``dense=sha256:<32 hex>;sparse=...`` -> ``dense=<12 hex>;sparse=...``: enough to tell encoders apart."""
    return re.sub(r"sha256:([0-9a-f]{12})[0-9a-f]*", r"\1", encoder) if encoder else "-"


def _summary(info: CollectionInfo, count: int) -> dict[str, Any]:
    spec = info.spec
    return {"name": info.name, "aliases": list(info.aliases), "count": count,
            "dense": [{"name": f.name, "dim": f.dim, "similarity": f.similarity.value, "storage": f.storage}
                      for f in spec.dense],
            "sparse": [s.name for s in spec.sparse], "encoder": spec.encoder}


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def run_list(args: argparse.Namespace) -> int:
    with _opened(args.store) as store:
        found = []
        for info in store.list_collections():
            try:
                found.append(_summary(info, store.count(info.name)))
            except CollectionNotFoundError:  # dropped since it was listed
                continue
    if args.json:
        print(json.dumps({"store": redact(args.store), "collections": found}, sort_keys=True))
        return 0
    if not found:
        print(f"no collections created by this SDK in {redact(args.store)}")
        return 0
    rows = [["NAME", "ALIASES", "RECORDS", "DENSE", "SPARSE", "ENCODER"]]
    for c in found:
        dense = ", ".join(f"{d['name']} {d['dim']}d {d['similarity']}" for d in c["dense"])
        rows.append([c["name"], ", ".join(c["aliases"]) or "-", str(c["count"]), dense or "-",
                     ", ".join(c["sparse"]) or "-", _short_encoder(c["encoder"])])
    print(_table(rows))
    return 0


def _aliases_of(store: VectorStore, physical: str) -> tuple[str, ...]:
    return next((info.aliases for info in store.list_collections() if info.name == physical), ())


def _sync_state(args: argparse.Namespace, names: list[str], physical: str) -> dict[str, Any] | None:
    """What a sync ledger says about ``physical``, looked up under each name a sync may have used
    (the alias, then the collection itself); ``None`` when no ledger records it. A default ledger
    is only read when its file exists: describing never creates one."""
    from sdk.sync.ledger import Ledger, ledger_dir, ledger_key

    for name in dict.fromkeys(names):
        key = ledger_key(args.store, name)
        if args.ledger is None and not (ledger_dir() / f"{key}.sqlite").is_file():
            continue
        from sdk.sync.engine import status

        with Ledger.open(args.ledger, key=key) as book:
            state = status(book, name)
        if physical in {state["collection"], state["staged"], *state["versions"]}:
            return {"name": name, **state}
    return None


def run_describe(args: argparse.Namespace) -> int:
    with _opened(args.store) as store:
        spec = store.describe(args.name)  # refuses what does not exist or was not made by this SDK
        count = store.count(spec.name)
        aliases = _aliases_of(store, spec.name)
    alias_of = spec.name if spec.name != args.name else None
    sync = _sync_state(args, [args.name, *aliases, spec.name], spec.name)
    data = {"name": spec.name, "alias_of": alias_of, "requested": args.name, "count": count,
            "aliases": list(aliases), "spec": spec.to_dict(), "sync": sync}
    print(json.dumps(data, sort_keys=True, default=str) if args.json else _describe_text(data, spec))
    return 0


def _describe_text(data: dict[str, Any], spec: CollectionSpec) -> str:
    head = data["name"] if not data["alias_of"] else f"{data['requested']} (alias) -> {data['name']}"
    lines = [head, f"records: {data['count']}", f"aliases: {', '.join(data['aliases']) or '-'}"]
    for f in spec.dense:
        index = f"index {f.index.kind}" + (f", quantization {f.index.quantization}" if f.index.quantization else "")
        lines.append(f"dense: {_dense(f)}; {index}")
    lines += [f"sparse: {s.name}" + (" (idf)" if s.idf else "") for s in spec.sparse]
    if spec.payload:
        lines.append("payload: " + ", ".join(f"{p.name} ({p.type})" for p in spec.payload))
    lines.append(f"encoder: {spec.encoder or '-'}")
    sync = data["sync"]
    if sync is not None:
        role = ("live" if sync["collection"] == data["name"] else
                "staged" if sync["staged"] == data["name"] else "kept for rollback")
        last = (sync.get("last_run") or {}).get("finished", "never")
        lines.append(f"sync: {sync['name']} ({role} version); live: {sync['documents']} documents, "
                     f"{sync['chunks']} chunks; last run {last}; ledger {sync.get('ledger') or '-'}")
    return "\n".join(lines)


def _confirm(args: argparse.Namespace, what: str) -> bool:
    """``True`` to go ahead: ``--yes``, or a "y" typed at the terminal."""
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise InputError(f"refusing to {what} without confirmation (stdin is not a terminal); pass --yes")
    try:
        answer = input(f"{what}? [y/N] ")
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def run_drop(args: argparse.Namespace) -> int:
    where = redact(args.store)
    with _opened(args.store) as store:
        spec = store.describe(args.name)  # refuses what does not exist or was not made by this SDK
        physical = spec.name
        if physical != args.name:
            if not args.alias_only:
                raise InputError(
                    f"{args.name!r} is an alias of collection {physical!r}: pass --alias-only to delete just the "
                    f"alias, or name the collection: sdk collections drop {physical} --store {where}")
            if not _confirm(args, f"delete alias {args.name!r} (collection {physical!r} stays)"):
                print("aborted: nothing deleted", file=sys.stderr)
                return 1
            store.delete_alias(args.name)
            print(f"deleted alias {args.name} (collection {physical} kept)")
            return 0
        if args.alias_only:
            raise InputError(f"{args.name!r} is a collection, not an alias; leave out --alias-only to drop it")
        aliases = _aliases_of(store, physical)
        if aliases and not args.with_aliases:
            raise InputError(
                f"aliases {', '.join(aliases)} still point at {physical!r} and would stop working; re-point them "
                "first (sdk sync rollback, or sdk collections drop ALIAS --alias-only), or pass --with-aliases to "
                "delete them with it")
        count = store.count(physical)
        also = f" and its aliases {', '.join(aliases)}" if aliases else ""
        if not _confirm(args, f"drop collection {physical!r} ({count} records){also}"):
            print("aborted: nothing dropped", file=sys.stderr)
            return 1
        for alias in aliases:
            store.delete_alias(alias)
        store.drop(physical)
    print(f"dropped {physical} ({count} records){also}")
    return 0
