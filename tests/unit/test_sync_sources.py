"""Document sources for sdk sync: folders, JSONL and CSV files, and every way they fail loudly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sdk.core.errors import SourceError, SyncError
from sdk.core.types import Document
from sdk.sync import sources
from sdk.sync.sources import CsvSource, FolderSource, JsonlSource, Source, html_to_text, open_source
from tests.conftest import data_dir


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _jsonl(path: Path, *records: object) -> Path:
    return _write(path, "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


# -- the protocol and open_source ----------------------------------------------------------


def test_open_source_picks_the_class_by_path(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    jsonl = _jsonl(tmp_path / "c.JSONL", {"id": "a", "text": "x"})
    csv_file = _write(tmp_path / "c.csv", "id,text\na,x\n")
    assert isinstance(open_source(folder), FolderSource)
    assert isinstance(open_source(str(jsonl)), JsonlSource)  # suffix case does not matter
    assert isinstance(open_source(csv_file), CsvSource)
    custom = JsonlSource(jsonl)
    assert open_source(custom) is custom
    for source in (FolderSource(folder), custom, CsvSource(csv_file)):
        assert isinstance(source, Source)


def test_source_names_are_absolute_and_stable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "docs").mkdir()
    _jsonl(tmp_path / "c.jsonl", {"id": "a", "text": "x"})
    monkeypatch.chdir(tmp_path)
    assert FolderSource("docs").name == f"folder:{tmp_path / 'docs'}"
    assert FolderSource("./docs/../docs").name == FolderSource(tmp_path / "docs").name
    assert JsonlSource("c.jsonl").name == f"jsonl:{tmp_path / 'c.jsonl'}"
    assert open_source(JsonlSource("c.jsonl").spec).name == JsonlSource("c.jsonl").name  # spec reopens it
    assert FolderSource("docs", suffixes=(".txt",)).spec is None  # non-default options: not a plain path


def test_open_source_errors_name_the_accepted_forms(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist.*folder.*jsonl.*csv"):
        open_source(tmp_path / "missing.jsonl")
    other = _write(tmp_path / "notes.txt", "hello")
    with pytest.raises(SourceError, match=r"unknown suffix '\.txt'.*\.jsonl.*\.csv"):
        open_source(other)
    with pytest.raises(SourceError, match="Source object"):
        open_source(42)  # type: ignore[arg-type]
    assert issubclass(SourceError, SyncError)


# -- folders -------------------------------------------------------------------------------


def _tree(root: Path) -> Path:
    _write(root / "b.md", "# B\n\nmarkdown body\n")
    _write(root / "a.txt", "plain text\r\nsecond line")
    _write(root / "sub" / "c.rst", "Title\n=====\n\nrst")
    _write(root / "sub" / "deeper" / "d.txt", "deep")
    _write(root / "page.HTML", "<html><head><title>Page T</title><script>alert(1)</script>"
                               "<style>p {color: red}</style></head><body><h1>Head</h1>"
                               "<p>Hello <b>bold</b> world &amp; more</p></body></html>")
    _write(root / "image.png", b"\x89PNG\r\n")
    _write(root / ".hidden.txt", "secret")
    _write(root / ".git" / "config.txt", "hidden folder")
    _write(root / "sub" / ".cache" / "x.md", "hidden folder below")
    return root


def test_folder_reads_text_files_recursively_in_sorted_order(tmp_path: Path) -> None:
    docs = list(FolderSource(_tree(tmp_path / "docs")))
    assert [d.id for d in docs] == ["a.txt", "b.md", "page.HTML", "sub/c.rst", "sub/deeper/d.txt"]
    by_id = {d.id: d for d in docs}
    assert by_id["a.txt"].text == "plain text\r\nsecond line"  # exactly as on disk
    assert by_id["sub/deeper/d.txt"].metadata == {"path": "sub/deeper/d.txt"}
    page = by_id["page.HTML"]
    assert page.metadata == {"path": "page.HTML", "title": "Page T"}
    assert page.text == "Head\n\nHello bold world & more"
    assert "alert" not in page.text and "color" not in page.text
    assert [d.id for d in FolderSource(tmp_path / "docs", suffixes=[".MD"])] == ["b.md"]


def test_folder_iteration_is_lazy_and_repeatable(tmp_path: Path) -> None:
    source = FolderSource(_tree(tmp_path / "docs"))
    stream = iter(source)
    assert next(stream).id == "a.txt"
    _write(tmp_path / "docs" / "sub" / "new.txt", "added while scanning")
    assert "sub/new.txt" in [d.id for d in stream]
    assert [d.id for d in source] == [d.id for d in source]


def test_folder_follows_symlinks_without_looping(tmp_path: Path) -> None:
    root = _tree(tmp_path / "docs")
    outside = _write(tmp_path / "elsewhere" / "linked.txt", "linked file")
    os.symlink(outside, root / "link.txt")
    os.symlink(root, root / "sub" / "loop")  # a cycle back to the top
    os.symlink(root / "sub" / "deeper", root / "a_link_into_the_tree")
    os.symlink(tmp_path / "elsewhere", root / "zlinked_dir")
    os.symlink(tmp_path / "elsewhere", tmp_path / "elsewhere" / "self")  # a cycle outside the tree
    os.symlink(tmp_path / "nowhere.txt", root / "dangling.txt")
    docs = {d.id: d for d in FolderSource(root)}
    assert docs["link.txt"].text == "linked file"
    assert "zlinked_dir/linked.txt" in docs and "sub/deeper/d.txt" in docs
    assert not any("loop" in doc_id or "a_link" in doc_id or "self" in doc_id for doc_id in docs)
    assert "dangling.txt" not in docs
    assert len(docs) == 7


def test_folder_unreadable_file_names_the_file_and_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path / "docs")
    _write(root / "latin1.txt", "caf\xe9".encode("latin-1"))
    with pytest.raises(SourceError, match=r"latin1\.txt: not valid utf-8.*encoding="):
        list(FolderSource(root))
    assert next(d for d in FolderSource(root, encoding="latin-1") if d.id == "latin1.txt").text == "café"

    real_open = open

    def refuse(file, *args, **kwargs):  # permissions cannot be tested with chmod when running as root
        if str(file).endswith("b.md"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(sources, "open", refuse, raising=False)
    with pytest.raises(SourceError, match=r"b\.md: cannot be read \(Permission denied\); give this user read access"):
        list(FolderSource(root, encoding="latin-1"))


def test_folder_unlistable_folder_and_bad_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path / "docs")
    real_listdir = os.listdir

    def refuse(path):
        if str(path).endswith("deeper"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_listdir(path)

    monkeypatch.setattr(sources.os, "listdir", refuse)
    with pytest.raises(SourceError, match=r"deeper: cannot be read \(Permission denied\)"):
        list(FolderSource(root))
    monkeypatch.undo()
    with pytest.raises(SourceError, match="not a folder"):
        FolderSource(root / "a.txt")
    with pytest.raises(SourceError, match="suffixes"):
        FolderSource(root, suffixes=["txt"])
    with pytest.raises(SourceError, match="unknown encoding"):
        FolderSource(root, encoding="no-such-codec")


def test_html_to_text() -> None:
    title, text = html_to_text("<title> A  <b>t</b></title><div>one<br>two</div><ul><li>x</li><li>y</li></ul>"
                               "<noscript>off</noscript><p>a&lt;b &eacute;</p>")
    assert title == "A t"
    assert text.split("\n") == ["one", "two", "", "x", "", "y", "", "a<b é"]


# -- JSONL -----------------------------------------------------------------------------------


def test_jsonl_fields_title_and_metadata(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "c.jsonl",
        {"_id": "d1", "title": "Install", "text": "pip install x", "metadata": {"lang": "en", "n": 3}},
        "",
        {"id": 7, "text": "int id, no title", "title": ""},
        {"id": "d3", "_id": "ignored", "text": "", "title": "Only a title", "extra": "ignored"},
        "   ",
        {"id": "d4", "text": "meta title loses", "title": "T", "metadata": {"title": "M"}},
    )
    docs = list(JsonlSource(path))
    assert docs == [
        Document("d1", "Install\n\npip install x", {"lang": "en", "n": 3, "title": "Install"}),
        Document("7", "int id, no title", {}),
        Document("d3", "Only a title", {"title": "Only a title"}),
        Document("d4", "T\n\nmeta title loses", {"title": "T"}),
    ]


def test_jsonl_reads_the_beir_corpus_fully() -> None:
    corpus = data_dir() / "pyfaq" / "corpus.jsonl"
    if not corpus.is_file():
        pytest.fail(f"BEIR data not found at {corpus}; set SDK_DATA_DIR to the folder holding pyfaq/")
    with open(corpus, encoding="utf-8") as fh:
        raw = [json.loads(line) for line in fh if line.strip()]
    docs = list(open_source(corpus))
    assert len(docs) == len(raw) == 4461
    assert len({d.id for d in docs}) == len(docs)
    first = raw[0]
    assert docs[0].id == first["_id"]
    assert docs[0].text == f"{first['title']}\n\n{first['text']}"
    assert docs[0].metadata["title"] == first["title"]


@pytest.mark.parametrize(("line", "message"), [
    ('{"id": "x", "text": "ok"', r"c\.jsonl:2: not valid JSON .*column"),
    ('["id", "text"]', r"c\.jsonl:2: expected a JSON object"),
    ('{"text": "no id"}', r"c\.jsonl:2: no 'id' \(or '_id'\)"),
    ('{"id": "", "text": "empty id"}', r"c\.jsonl:2: 'id' is empty"),
    ('{"id": 1.5, "text": "float id"}', r"c\.jsonl:2: 'id' must be a string or an integer, got float"),
    ('{"id": true, "text": "bool id"}', r"c\.jsonl:2: 'id' must be a string or an integer, got bool"),
    ('{"id": "x"}', r"c\.jsonl:2: 'text' is missing"),
    ('{"id": "x", "text": null}', r"c\.jsonl:2: 'text' is a NoneType"),
    ('{"id": "x", "text": "t", "title": 3}', r"c\.jsonl:2: 'title' must be a string"),
    ('{"id": "x", "text": "t", "metadata": [1]}', r"c\.jsonl:2: 'metadata' must be a JSON object"),
])
def test_jsonl_bad_line_names_path_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = _jsonl(tmp_path / "c.jsonl", {"id": "first", "text": "fine"}, line)
    stream = iter(JsonlSource(path))
    assert next(stream).id == "first"  # streaming: the good line comes out before the bad one is read
    with pytest.raises(SourceError, match=message):
        next(stream)


def test_jsonl_duplicate_ids_name_both_lines(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "c.jsonl", {"id": "a", "text": "1"}, {"id": "b", "text": "2"}, "",
                  {"_id": "a", "text": "3"})
    with pytest.raises(SourceError, match=r"c\.jsonl:4: duplicate id 'a' \(first on line 1\)"):
        list(JsonlSource(path))
    path = _jsonl(tmp_path / "n.jsonl", {"id": 1, "text": "1"}, {"id": "1", "text": "2"})
    with pytest.raises(SourceError, match="duplicate id '1'"):
        list(JsonlSource(path))


def test_jsonl_encoding_bom_and_missing_file(tmp_path: Path) -> None:
    bom = _write(tmp_path / "bom.jsonl", b'\xef\xbb\xbf{"id": "a", "text": "x"}\r\n')
    assert list(JsonlSource(bom)) == [Document("a", "x", {})]
    bad = _write(tmp_path / "bad.jsonl", b'{"id": "a", "text": "x"}\n{"id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(SourceError, match=r"bad\.jsonl:2: not valid UTF-8"):
        list(JsonlSource(bad))
    with pytest.raises(SourceError, match="missing"):
        JsonlSource(tmp_path / "nope.jsonl")
    path = _jsonl(tmp_path / "c.jsonl", {"id": "a", "text": "x"})
    source = JsonlSource(path)
    path.unlink()
    with pytest.raises(SourceError, match=r"c\.jsonl: cannot be read"):
        list(source)


# -- CSV -------------------------------------------------------------------------------------


def test_csv_columns_metadata_and_multiline_fields(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.csv", '\ufeffid, text ,lang,empty\n1,"first, with comma",en,\n\n'
                                      '2,"two\nlines",,\n3,,de,\n')
    docs = list(CsvSource(path))
    assert docs == [
        Document("1", "first, with comma", {"lang": "en"}),
        Document("2", "two\nlines", {}),
        Document("3", "", {"lang": "de"}),
    ]


def test_csv_missing_column_names_it_and_the_columns_found(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.csv", "key,body\n1,x\n")
    with pytest.raises(SourceError, match=r"c\.csv:1: no 'id' or 'text' column.*found: 'key', 'body'"):
        list(CsvSource(path))
    path = _write(tmp_path / "d.csv", "id,content\n1,x\n")
    with pytest.raises(SourceError, match=r"no 'text' column.*found: 'id', 'content'"):
        list(CsvSource(path))
    with pytest.raises(SourceError, match="empty file"):
        list(CsvSource(_write(tmp_path / "e.csv", "\n")))
    with pytest.raises(SourceError, match="more than once"):
        list(CsvSource(_write(tmp_path / "f.csv", "id,text,a,a\n1,x,y,z\n")))


def test_csv_row_errors_name_path_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.csv", 'id,text\n1,"a\nb"\n2,x,extra\n')
    stream = iter(CsvSource(path))
    assert next(stream).text == "a\nb"
    with pytest.raises(SourceError, match=r"c\.csv:4: 3 fields, but the header has 2"):
        next(stream)
    with pytest.raises(SourceError, match=r"e\.csv:3: 'id' is empty"):
        list(CsvSource(_write(tmp_path / "e.csv", "id,text\n1,x\n ,y\n")))
    with pytest.raises(SourceError, match=r"dup\.csv:5: duplicate id 'a' \(first on line 2\)"):
        list(CsvSource(_write(tmp_path / "dup.csv", "id,text\na,1\nb,2\n\na,3\n")))
    with pytest.raises(SourceError, match=r"bad\.csv:3: not valid UTF-8"):
        list(CsvSource(_write(tmp_path / "bad.csv", b"id,text\n1,x\n2,caf\xe9\n")))
    with pytest.raises(SourceError, match=r"open\.csv:3: malformed CSV \(unexpected end of data\)"):
        list(CsvSource(_write(tmp_path / "open.csv", 'id,text\n1,"unclosed\n2,x\n')))


def test_csv_long_fields(tmp_path: Path) -> None:
    text = "word " * 60_000  # 300 kB: over csv's default field limit
    path = _write(tmp_path / "c.csv", f"id,text\n1,{text}\n")
    assert list(CsvSource(path))[0].text == text
