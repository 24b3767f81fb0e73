"""Entry point of the ``sdk`` command: parses arguments and turns SDK errors into one line.

Each sub-command lives in its own module exposing ``register(subparsers)``; a failing
command prints ``error: ...`` and exits 1 (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sdk.cli import encode, eval, export, feedback, learn, search, sync, train
from sdk.core.errors import SDKError
from sdk.core.version import __version__

__all__ = ["build_parser", "main"]

# One module per sub-command, each with ``register(subparsers)``; heavy imports stay inside handlers.
_COMMANDS = (sync, search, encode, eval, export, train, feedback, learn)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdk", description="Local encoders and vector databases, in sync.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in _COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sync.rewrite_argv(list(sys.argv[1:] if argv is None else argv)))
    try:
        return int(args.handler(args) or 0)
    except SDKError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
