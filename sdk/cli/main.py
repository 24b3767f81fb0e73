"""Entry point of the ``sdk`` command: parses arguments and turns SDK errors into one line.

Each sub-command lives in its own module exposing ``register(subparsers)``; a failing
command prints ``error: ...`` and exits 1 (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sdk.cli import (
    collections,
    completion,
    encode,
    eval,
    export,
    feedback,
    learn,
    models,
    search,
    sync,
    train,
)
from sdk.core.errors import SDKError
from sdk.core.redaction import redact
from sdk.core.version import __version__

__all__ = ["build_parser", "main"]

# One module per sub-command, each with ``register(subparsers)``; heavy imports stay inside handlers.
_COMMANDS = (sync, search, encode, eval, export, train, feedback, learn, models, collections, completion)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdk", description="Local encoders and vector databases, in sync: sync a source into a collection, "
                                "search it, evaluate, train, learn from feedback.",
        epilog="examples:\n  sdk sync ./notes --store qdrant+local:./kb --collection notes\n"
               "  sdk search \"how do I pin a version?\" --store qdrant+local:./kb --collection notes\n"
               "  sdk COMMAND --help        options and examples of one command\n"
               "global options (anywhere on the line): --debug",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in _COMMANDS:
        command.register(sub)
    return parser


GLOBAL_FLAGS = ("--debug",)


def hoist_global_flags(argv: list[str]) -> list[str]:
    """Move global flags given after the sub-command (``sdk sync ... --debug``) to the front, where
    argparse reads them; nothing after a ``--`` separator is touched."""
    stop = argv.index("--") if "--" in argv else len(argv)
    flags = [a for a in argv[:stop] if a in GLOBAL_FLAGS]
    rest = [a for a in argv[:stop] if a not in GLOBAL_FLAGS]
    return [*dict.fromkeys(flags), *rest, *argv[stop:]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(hoist_global_flags(sync.rewrite_argv(list(sys.argv[1:] if argv is None else argv))))
    try:
        return int(args.handler(args) or 0)
    except SDKError as exc:
        if args.debug:
            raise
        print(f"error: {redact(exc)}", file=sys.stderr)  # SDKError hides secrets already; belt and braces
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
