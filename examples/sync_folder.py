"""Keep a collection in step with a folder of notes: sync, edit, sync again, search.

    python examples/sync_folder.py

The first run encodes every chunk; after one file is edited and one deleted, the second run
re-encodes only the changed chunks and removes the deleted document (the ledger remembers what was
written). The same thing from the shell: ``sdk sync ./notes --store qdrant+local:./kb --collection notes``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from sdk import RetrievalPipeline
from sdk.encoders.dense import DenseEncoder
from sdk.sync import sync

NOTES = {
    "install.md": "# Installing\nUse pip inside a virtual environment: python -m venv .venv, then pip install.",
    "debian.md": "# Debian\napt-get update refreshes the package index; apt-get install installs a package.",
    "postgres.md": "# PostgreSQL\npgvector adds vector similarity search to PostgreSQL: CREATE EXTENSION vector.",
}


def main() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        notes, store = Path(tmp) / "notes", f"qdrant+local:{tmp}/kb"
        notes.mkdir()
        for name, text in NOTES.items():
            (notes / name).write_text(text, encoding="utf8")
        ledger = Path(tmp) / "ledger.sqlite"
        first = sync(notes, store, "notes", sparse=False, ledger=ledger, progress=False)
        (notes / "debian.md").write_text("# Debian\napt full-upgrade upgrades every installed package.", encoding="utf8")
        (notes / "postgres.md").unlink()
        second = sync(notes, store, "notes", sparse=False, ledger=ledger, progress=False)
        print(f"first run: {first.summary()}\nsecond run: {second.summary()}")
        pipeline = RetrievalPipeline(DenseEncoder(), store=store, collection="notes", limit=1)
        try:
            top = pipeline.search("how do I upgrade all packages on Debian?")[0]
        finally:
            pipeline.close()
        print(f"top hit: {top.id} {top.text!r}")
        return {"first": first, "second": second, "top": top.id}


if __name__ == "__main__":
    main()
