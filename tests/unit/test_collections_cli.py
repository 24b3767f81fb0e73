"""``sdk collections list|describe|drop`` in process, on stores that outlive one connection.

memory:// is per process and per connect, so each test drives the CLI against embedded Qdrant on
disk and a Milvus Lite file: a collection synced by ``sdk sync`` (an alias over ``notes_v1``), one
made through an adapter with an alias of its own, and one made with the driver alone (no stored
spec), which the CLI must neither list nor drop.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from adapters import connect
from sdk.cli.main import main
from sdk.core.similarity import Similarity
from sdk.core.spec import CollectionSpec, DenseField
from sdk.core.types import Record

FOREIGN = "made_by_hand"


def _foreign(url: str) -> None:
    """A collection created with the driver itself: no stored spec."""
    if url.startswith("qdrant+local:"):
        from qdrant_client import QdrantClient, models

        client = QdrantClient(path=url.removeprefix("qdrant+local:"))
        client.create_collection(FOREIGN, vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT))
    else:
        from pymilvus import MilvusClient

        client = MilvusClient(uri=url.removeprefix("milvus+lite:"))
        client.create_collection(FOREIGN, dimension=4)
    client.close()


@pytest.fixture(params=["qdrant", "milvus"])
def store(request: pytest.FixtureRequest, tmp_path: Path, tiny_bert_dir: Path,
          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    """A store holding: notes (alias) -> notes_v1 (synced, 4 chunks), extra (3 records) with alias
    extra_live, and the foreign collection."""
    monkeypatch.setenv("SDK_LEDGER_DIR", str(tmp_path / "ledgers"))
    url = f"qdrant+local:{tmp_path / 'q'}" if request.param == "qdrant" else f"milvus+lite:{tmp_path / 'm.db'}"
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"n{i}.txt").write_text(f"note {i}: how do I install package number {i}?", encoding="utf8")
    assert main(["sync", str(src), "--store", url, "--collection", "notes", "--dense-model", str(tiny_bert_dir),
                 "--no-sparse", "--json"]) == 0
    spec = CollectionSpec("extra", dense=(DenseField("dense", 4, Similarity.DOT),), encoder="enc-test")
    with connect(url) as db:
        db.ensure_collection(spec)
        db.upsert("extra", [Record(f"e{i}", {"dense": [1.0, float(i), 0.0, 0.0]}) for i in range(3)])
        db.create_alias("extra_live", "extra")
    _foreign(url)
    capsys.readouterr()
    return url


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _fails(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run a command that must fail with one ``error:`` line; return that line."""
    assert main(list(argv)) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def _names(capsys: pytest.CaptureFixture[str], store: str) -> dict[str, list[str]]:
    found = _json(capsys, "collections", "list", "--store", store)["collections"]
    return {c["name"]: c["aliases"] for c in found}


def test_list_shows_the_sdk_collections_with_aliases_counts_and_fields(
        store: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Both SDK collections, each with its alias, record count, dense field and encoder; the foreign one not."""
    found = {c["name"]: c for c in _json(capsys, "collections", "list", "--store", store)["collections"]}
    assert set(found) == {"extra", "notes_v1"}
    notes, extra = found["notes_v1"], found["extra"]
    assert notes["aliases"] == ["notes"] and notes["count"] == 4 and notes["sparse"] == []
    assert notes["dense"][0]["similarity"] == "cosine" and notes["dense"][0]["dim"] > 0
    assert notes["encoder"].startswith("dense=sha256:")
    assert extra == {"name": "extra", "aliases": ["extra_live"], "count": 3, "sparse": [], "encoder": "enc-test",
                     "dense": [{"name": "dense", "dim": 4, "similarity": "dot", "storage": "float32"}]}
    assert main(["collections", "list", "--store", store]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["NAME", "ALIASES", "RECORDS", "DENSE", "SPARSE", "ENCODER"]
    row = next(line for line in table if line.startswith("notes_v1"))
    short = notes["encoder"].removeprefix("dense=sha256:")[:12]
    assert f"dense={short}" in row and " notes " in row and FOREIGN not in "\n".join(table)


def test_describe_an_alias_shows_the_spec_aliases_and_sync_state(store: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Describing the alias gives its collection's full spec, count, aliases and the sync ledger's state."""
    info = _json(capsys, "collections", "describe", "notes", "--store", store)
    assert info["name"] == "notes_v1" and info["alias_of"] == "notes_v1" and info["aliases"] == ["notes"]
    assert info["count"] == 4 and info["spec"]["name"] == "notes_v1" and info["spec"]["encoder"].startswith("dense=")
    assert info["sync"]["name"] == "notes" and info["sync"]["collection"] == "notes_v1"
    assert info["sync"]["documents"] == 4
    extra = _json(capsys, "collections", "describe", "extra", "--store", store)
    assert extra["alias_of"] is None and extra["sync"] is None and extra["count"] == 3
    assert extra["spec"]["dense"][0]["similarity"] == "dot"
    assert main(["collections", "describe", "notes", "--store", store]) == 0
    text = capsys.readouterr().out
    assert text.startswith("notes (alias) -> notes_v1\nrecords: 4\naliases: notes\n")
    assert "sync: notes (live version); live: 4 documents" in text
    assert "not created by" in _fails(capsys, "collections", "describe", FOREIGN, "--store", store)
    assert "does not exist" in _fails(capsys, "collections", "describe", "nothing_here", "--store", store)


def test_drop_refuses_aliases_unconfirmed_and_aliased_collections(store: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Every refusal is one line naming the flag that goes ahead, and leaves everything in place."""
    line = _fails(capsys, "collections", "drop", "notes", "--store", store, "--yes")
    assert "alias of collection 'notes_v1'" in line and "--alias-only" in line and "drop notes_v1" in line
    for confirmed in ([], ["--yes"]):  # the aliases are checked before anything is asked
        line = _fails(capsys, "collections", "drop", "notes_v1", "--store", store, *confirmed)
        assert "aliases notes still point at 'notes_v1'" in line and "--with-aliases" in line
    line = _fails(capsys, "collections", "drop", "extra", "--store", store, "--with-aliases")
    assert "stdin is not a terminal" in line and line.endswith("pass --yes")  # pytest's stdin is no terminal
    line = _fails(capsys, "collections", "drop", "extra", "--store", store, "--alias-only", "--yes")
    assert "is a collection, not an alias" in line
    assert "not created by" in _fails(capsys, "collections", "drop", FOREIGN, "--store", store, "--yes")
    assert _names(capsys, store) == {"extra": ["extra_live"], "notes_v1": ["notes"]}
    with connect(store) as db:
        assert db.count("notes") == 4 and db.count("extra_live") == 3


def test_drop_without_yes_asks_on_a_terminal(store: str, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the command asks; anything but y drops nothing, and a non-terminal needs --yes."""
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert main(["collections", "drop", "extra_live", "--store", store, "--alias-only"]) == 1
    assert "aborted" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert "pass --yes" in _fails(capsys, "collections", "drop", "extra_live", "--store", store, "--alias-only")
    assert _names(capsys, store)["extra"] == ["extra_live"]
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    assert main(["collections", "drop", "extra_live", "--store", store, "--alias-only"]) == 0
    assert "deleted alias extra_live (collection extra kept)" in capsys.readouterr().out
    assert _names(capsys, store) == {"extra": [], "notes_v1": ["notes"]}


def test_drop_alias_only_then_collections(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--alias-only deletes just the alias; --with-aliases drops a collection and its aliases; the rest stays."""
    assert main(["collections", "drop", "extra", "--store", store, "--yes", "--with-aliases"]) == 0
    assert capsys.readouterr().out.strip() == "dropped extra (3 records) and its aliases extra_live"
    assert main(["collections", "drop", "notes", "--store", store, "--alias-only", "--yes"]) == 0
    capsys.readouterr()
    assert _names(capsys, store) == {"notes_v1": []}
    assert main(["collections", "drop", "notes_v1", "--store", store, "--yes"]) == 0
    assert capsys.readouterr().out.strip() == "dropped notes_v1 (4 records)"
    assert main(["collections", "list", "--store", store]) == 0
    assert capsys.readouterr().out.startswith("no collections created by this SDK in ")
    with connect(store) as db:  # the collection made by hand was never touched
        assert not db.exists("extra_live") and not db.exists("notes")
    _foreign_still_there(store)


def _foreign_still_there(url: str) -> None:
    if url.startswith("qdrant+local:"):
        from qdrant_client import QdrantClient

        client: Any = QdrantClient(path=url.removeprefix("qdrant+local:"))
        assert client.collection_exists(FOREIGN)
    else:
        from pymilvus import MilvusClient

        client = MilvusClient(uri=url.removeprefix("milvus+lite:"))
        assert client.has_collection(FOREIGN)
    client.close()
