"""A source cut into pieces (for the Ray engine's readers) yields exactly the documents of the whole."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from sdk.core.errors import SourceError
from sdk.sync.sources import CsvSource, FolderSource, JsonlSource, partitions


def _docs(source) -> list[tuple[str, str, dict]]:
    return [(d.id, d.text, dict(d.metadata)) for d in source]


def _pieces(source, **kw) -> list[tuple[str, str, dict]]:
    return [doc for piece in partitions(source, **kw) for doc in _docs(pickle.loads(pickle.dumps(piece)))]


@pytest.mark.parametrize("bytes_per_part", [1, 7, 64, 1000, 1 << 20])
def test_jsonl_byte_ranges_give_every_line_once(tmp_path: Path, bytes_per_part: int) -> None:
    path = tmp_path / "c.jsonl"
    lines = [json.dumps({"id": f"d{i}", "text": "é" * i + " x", "title": "t" if i % 3 else ""}) for i in range(40)]
    path.write_bytes(("\ufeff" + "\n".join(lines[:20]) + "\n\n" + "\n".join(lines[20:])).encode())  # BOM, blank line
    source = JsonlSource(path)
    assert _pieces(source, bytes_per_part=bytes_per_part) == _docs(source)


def test_a_bad_line_in_a_piece_names_its_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": }\n', encoding="utf8")
    (_, second) = partitions(JsonlSource(path), bytes_per_part=25)
    with pytest.raises(SourceError, match=r"line at byte 25\): not valid JSON"):
        list(second)


def test_folder_groups_of_files_and_empty_or_whole_sources(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    for i in range(7):
        (root / f"sub{i % 2}").mkdir(parents=True, exist_ok=True)
        (root / f"sub{i % 2}" / f"f{i}.md").write_text(f"# doc {i}\n\ntext {i}", encoding="utf8")
    (root / "page.html").write_text("<title>T</title><p>hello</p>", encoding="utf8")
    source = FolderSource(root)
    assert len(partitions(source, files_per_part=3)) == 3
    assert _pieces(source, files_per_part=3) == _docs(source)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert _pieces(JsonlSource(empty)) == []
    csv_path = tmp_path / "c.csv"
    csv_path.write_text('id,text\na,"multi\nline"\n', encoding="utf8")
    assert partitions(CsvSource(csv_path))[0].path == CsvSource(csv_path).path  # kept whole


def test_min_pieces_cuts_small_sources_finer(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    for i in range(7):
        (root / f"f{i}.txt").write_text(f"text {i}", encoding="utf8")
    source = FolderSource(root)
    assert len(partitions(source, min_pieces=3)) == 3 and _pieces(source, min_pieces=3) == _docs(source)
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": "w " * 50}) + "\n" for i in range(400)), encoding="utf8")
    big = JsonlSource(path)
    assert len(partitions(big)) == 1 and len(partitions(big, min_pieces=4)) == 4
    assert _pieces(big, min_pieces=4) == _docs(big)
