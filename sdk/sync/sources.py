"""Where ``sdk sync`` reads documents from: a folder of text files (and images), a JSONL file or a CSV file.

A source is anything with a stable ``name`` and an ``__iter__`` that yields ``Document``s. The
name is stored in the sync ledger, so a run only ever deletes documents that came from the same
source. Iteration streams (one file, line or row at a time) and fails loudly: the sync engine
scans the whole source before it deletes anything, so an unreadable file or a bad line raises
``SourceError`` (naming the file, the line and the fix) instead of silently shrinking the source.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sdk.core.errors import SourceError
from sdk.core.types import Document

__all__ = [
    "IMAGE_SUFFIXES", "CsvSource", "FolderSource", "ImageDocument", "JsonlSource", "Source", "html_to_text",
    "open_source", "partitions", "sample_corpus",
]

DEFAULT_SUFFIXES: tuple[str, ...] = (".txt", ".md", ".rst", ".html", ".htm")
#: Image files a ``FolderSource`` reads when its images are on.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
_HTML_SUFFIXES = (".html", ".htm")
_ACCEPTED = "a folder (text files inside), a .jsonl file (one JSON object per line) or a .csv file (id,text header)"


@runtime_checkable
class Source(Protocol):
    """Yields the documents to sync. ``name`` identifies the source across runs (``folder:/abs/path``).

    Concrete sources also carry ``spec``: what ``open_source`` takes to open the same source again
    (a path string), or None when it cannot be reopened from a path alone.
    """

    @property
    def name(self) -> str: ...

    def __iter__(self) -> Iterator[Document]: ...


def sample_corpus() -> Path:
    """The bundled sample: 70 answers from the Python 3.11 FAQ (PSF License) as JSONL, for a first run."""
    return Path(__file__).resolve().parents[1] / "data" / "sample_corpus.jsonl"


def open_source(spec: str | os.PathLike[str] | Source) -> Source:
    """A ``Source`` as is; a directory -> ``FolderSource``; ``.jsonl`` -> ``JsonlSource``; ``.csv`` -> ``CsvSource``."""
    if not isinstance(spec, (str, os.PathLike)):
        if isinstance(spec, Source):
            return spec
        raise SourceError(f"cannot read documents from a {type(spec).__name__}; pass {_ACCEPTED}, or a Source object")
    path = Path(spec).expanduser()
    if path.is_dir():
        return FolderSource(path)
    if not path.exists():
        raise SourceError(f"source {str(spec)!r} does not exist; pass {_ACCEPTED}")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return JsonlSource(path)
    if suffix == ".csv":
        return CsvSource(path)
    raise SourceError(f"source {str(spec)!r} has an unknown suffix {path.suffix!r}; pass {_ACCEPTED}")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _absolute(path: str | os.PathLike[str]) -> Path:
    """The absolute, normalised path as the caller named it (symlinks are not resolved: the name stays stable)."""
    return Path(os.path.abspath(Path(path).expanduser()))


# -- folders ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageDocument(Document):
    """An image file as a document: ``text`` is its path relative to the folder (what the payload shows and
    a hit returns), ``file`` the file the encoder reads, ``digest`` the sha256 of its bytes (what sync
    compares between runs). Sync encodes it as one image, never as text."""

    file: str = ""
    digest: str = ""


class FolderSource:
    """Every text file under a folder, recursively; the document id is the path relative to it (POSIX).

    Files whose suffix is in ``suffixes`` (case-insensitive) are read with ``encoding``; HTML is
    turned into text (scripts and styles dropped, ``<title>`` kept as metadata "title"). Names
    starting with "." (files and folders) are skipped. Symlinked files are read; symlinked folders
    are walked when they point outside the tree (a link into the tree is skipped: its files are
    read under their real paths, and a link up the tree cannot loop); dangling links are skipped.
    Order is deterministic: entries sorted by name, folders walked depth-first where they sort.

    ``images=True`` also reads ``IMAGE_SUFFIXES`` files, each as one ``ImageDocument`` (metadata: path,
    width, height, format). ``None`` (the default) leaves them out when iterated directly and lets
    ``sdk sync`` decide: images are read when its dense encoder reads images (a CLIP model).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        suffixes: Iterable[str] = DEFAULT_SUFFIXES,
        encoding: str = "utf-8",
        images: bool | None = None,
    ) -> None:
        self.path = _absolute(path)
        if not self.path.is_dir():
            raise SourceError(f"{self.path} is not a folder; pass a folder of text files, or use open_source(path)")
        if isinstance(suffixes, str):
            suffixes = (suffixes,)
        cleaned = tuple(s.lower() for s in suffixes if isinstance(s, str))
        if not cleaned or len(cleaned) != len(tuple(suffixes)) or any(not s.startswith(".") for s in cleaned):
            raise SourceError(f"suffixes must be a non-empty list like ('.txt', '.md'), got {suffixes!r}")
        try:
            "".encode(encoding)
        except LookupError:
            raise SourceError(f"unknown encoding {encoding!r}; pass a Python codec name such as 'utf-8'") from None
        if images not in (None, True, False):
            raise SourceError(f"images must be True, False or None (sync decides), got {images!r}")
        self.suffixes = cleaned
        self.encoding = encoding
        self.images = images
        self.name = f"folder:{self.path}"
        defaults = set(cleaned) == set(DEFAULT_SUFFIXES) and encoding.lower().replace("_", "-") in ("utf-8", "utf8")
        self.spec: str | None = str(self.path) if defaults and images is None else None

    def __repr__(self) -> str:
        return f"FolderSource({str(self.path)!r}, suffixes={self.suffixes!r}, images={self.images!r})"

    def with_images(self, images: bool) -> FolderSource:
        """This source with ``images`` decided (same name and spec: sync reopens it and decides again)."""
        copy = FolderSource(self.path, self.suffixes, self.encoding, images=images)
        copy.spec = self.spec
        return copy

    def __iter__(self) -> Iterator[Document]:
        for rel, file in self._files():
            yield self._read(rel, file)

    def _files(self) -> Iterator[tuple[str, Path]]:
        """(relative POSIX path, path) of each file to read, in sorted order, lazily."""
        yield from self._walk(self.path, (), set(), os.path.realpath(self.path))

    def _walk(self, folder: Path, parts: tuple[str, ...], ancestors: set[tuple[int, int]],
              root: str) -> Iterator[tuple[str, Path]]:
        try:
            info = folder.stat()
            names = sorted(os.listdir(folder))
        except OSError as exc:
            raise self._error(folder, exc) from exc
        key = (info.st_dev, info.st_ino)
        if key in ancestors:  # a link back up the tree
            return
        ancestors.add(key)
        for name in names:
            if name.startswith("."):
                continue
            entry = folder / name
            try:
                mode = entry.stat().st_mode  # follows symlinks
            except FileNotFoundError:
                continue  # a dangling symlink (or a file deleted while scanning): not a document
            except OSError as exc:
                raise self._error(entry, exc) from exc
            if stat.S_ISDIR(mode):
                if entry.is_symlink() and _inside(os.path.realpath(entry), root):
                    continue  # a link into the tree: its files are read under their real paths
                yield from self._walk(entry, (*parts, name), ancestors, root)
            elif stat.S_ISREG(mode) and (entry.suffix.lower() in self.suffixes or self._image(entry)):
                yield "/".join((*parts, name)), entry
        ancestors.discard(key)

    def _image(self, file: Path) -> bool:
        return bool(self.images) and file.suffix.lower() in IMAGE_SUFFIXES

    def _read(self, rel: str, file: Path) -> Document:
        if self._image(file):
            return self._read_image(rel, file)
        try:
            with open(file, encoding=self.encoding, newline="") as fh:
                text = fh.read()
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"{file}: not valid {self.encoding} text ({exc.reason} at byte {exc.start}); convert the file to "
                f"{self.encoding}, pass the right encoding= to FolderSource, or remove the file from the folder"
            ) from exc
        except OSError as exc:
            raise self._error(file, exc) from exc
        metadata: dict[str, Any] = {"path": rel}
        if file.suffix.lower() in _HTML_SUFFIXES:
            title, text = html_to_text(text)
            if title:
                metadata["title"] = title
        return Document(rel, text, metadata)

    def _read_image(self, rel: str, file: Path) -> ImageDocument:
        """Hash the bytes and read the header (size, format); the pixels are decoded when encoded."""
        from sdk.encoders.modules.clip import pil_image_module

        image_module = pil_image_module()
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise self._error(file, exc) from exc
        try:
            with image_module.open(io.BytesIO(data)) as img:
                width, height, kind = img.width, img.height, img.format
        except Exception as exc:  # Pillow raises several types for a file that is not an image
            raise SourceError(
                f"{file}: not an image Pillow can read ({type(exc).__name__}: {exc}), although its suffix says "
                "so; replace it with a valid image, rename it, or move it out of the source folder"
            ) from exc
        metadata = {"path": rel, "width": width, "height": height, "format": kind}
        return ImageDocument(rel, rel, metadata, file=str(file), digest=hashlib.sha256(data).hexdigest()[:32])

    @staticmethod
    def _error(path: Path, exc: OSError) -> SourceError:
        fix = "give this user read access to it" if isinstance(exc, PermissionError) else "check that it is readable"
        return SourceError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__}); {fix}, "
                           "or move it out of the source folder")


_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "svg"})
_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "figure", "footer",
    "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section",
    "table", "td", "th", "tr", "ul",
})


class _TextExtractor(HTMLParser):
    """Collects visible text (block elements become line breaks) and the document title."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self._skip = 0
        self._in_title = False
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
            self._pre += tag == "pre"

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS and tag not in ("br", "hr"):  # void tags: one line break, from the start tag
            self.parts.append("\n")
            if tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
        elif not self._skip:
            self.parts.append(data if self._pre else _keep_edges(data))


def _keep_edges(data: str) -> str:
    """Collapse inner whitespace to one space, keeping one space where the run had one at an edge."""
    inner = " ".join(data.split())
    if not inner:
        return " " if data else ""
    return (" " if data[0].isspace() else "") + inner + (" " if data[-1].isspace() else "")


def html_to_text(html: str) -> tuple[str, str]:
    """``(title, text)`` of an HTML page with the standard library: no scripts, styles or markup."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.parts).split("\n")]
    paragraphs: list[str] = []
    for line in lines:
        if line or (paragraphs and paragraphs[-1]):
            paragraphs.append(line)
    title = " ".join("".join(parser.title_parts).split())
    return title, "\n".join(paragraphs).strip()


# -- files of records ---------------------------------------------------------------------------


def _check_file(path: str | os.PathLike[str], kind: str) -> Path:
    file = _absolute(path)
    if not file.is_file():
        what = "a folder" if file.is_dir() else "missing"
        raise SourceError(f"{file} is {what}; {kind} needs an existing file (use open_source for folders)")
    return file


def _open_error(file: Path, exc: OSError) -> SourceError:
    reason = exc.strerror or type(exc).__name__
    return SourceError(f"{file}: cannot be read ({reason}); check that the file exists and this user may read it")


def _document_id(value: Any, where: str, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise SourceError(f"{where}: {field!r} must be a string or an integer, got {type(value).__name__} ({value!r:.40})")
    text = str(value)
    if not text.strip():
        raise SourceError(f"{where}: {field!r} is empty; every document needs a non-empty id")
    return text


def _check_unique(seen: dict[str, int], doc_id: str, lineno: int, file: Path) -> None:
    first = seen.setdefault(doc_id, lineno)
    if first != lineno:
        raise SourceError(
            f"{file}:{lineno}: duplicate id {doc_id!r} (first on line {first}); ids must be unique within a "
            "source: remove or rename one of the two"
        )


class _FileSource:
    """One file: named ``<kind>:<absolute path>``; ``spec`` reopens it with ``open_source``."""

    kind = ""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = _check_file(path, type(self).__name__)
        self.name = f"{self.kind}:{self.path}"
        self.spec: str | None = str(self.path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


class JsonlSource(_FileSource):
    """One JSON object per line: ``id`` (or ``_id``), ``text``, optional ``title`` and ``metadata``.

    A BEIR ``corpus.jsonl`` works as is. A non-empty ``title`` is kept as metadata "title" and
    prepended to the text (``title + "\\n\\n" + text``), the way BEIR corpora are embedded. Other
    top-level keys are ignored; ``metadata`` (an object) is merged into the document's metadata.
    Blank lines are skipped; a bad line raises ``SourceError`` with ``path:line``.
    """

    kind = "jsonl"

    def __iter__(self) -> Iterator[Document]:
        seen: dict[str, int] = {}
        try:
            fh = open(self.path, "rb")  # bytes: a decoding error can name its line
        except OSError as exc:
            raise _open_error(self.path, exc) from exc
        with fh:
            for lineno, raw in enumerate(fh, start=1):
                doc = self._line(raw, f"{self.path}:{lineno}", lineno == 1)
                if doc is not None:
                    _check_unique(seen, doc.id, lineno, self.path)
                    yield doc

    @classmethod
    def _line(cls, raw: bytes, where: str, first: bool) -> Document | None:
        """One line's document (None for a blank line); ``where`` names it in errors."""
        try:
            line = raw.decode("utf-8-sig" if first else "utf-8")
        except UnicodeDecodeError as exc:
            raise SourceError(f"{where}: not valid UTF-8 ({exc.reason}); save the file as UTF-8") from exc
        if not line.strip():
            return None
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceError(
                f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object"
            ) from exc
        return cls._document(record, where)

    @staticmethod
    def _document(record: Any, where: str) -> Document:
        if not isinstance(record, dict):
            raise SourceError(f"{where}: expected a JSON object with 'id' and 'text', got a {type(record).__name__}")
        key = "id" if record.get("id") is not None else "_id"
        if record.get(key) is None:
            raise SourceError(f"{where}: no 'id' (or '_id'); every line needs an id, e.g. {{\"id\": \"doc1\", \"text\": ...}}")
        doc_id = _document_id(record[key], where, key)
        text = record.get("text")
        if not isinstance(text, str):
            got = "missing" if "text" not in record else f"a {type(text).__name__}"
            raise SourceError(f"{where}: 'text' is {got}; every line needs a string 'text'")
        extra = record.get("metadata")
        if extra is not None and not isinstance(extra, Mapping):
            raise SourceError(f"{where}: 'metadata' must be a JSON object, got a {type(extra).__name__}")
        metadata: dict[str, Any] = dict(extra or {})
        title = record.get("title")
        if title is not None and not isinstance(title, str):
            raise SourceError(f"{where}: 'title' must be a string, got a {type(title).__name__}")
        if title and title.strip():
            metadata["title"] = title
            text = f"{title}\n\n{text}" if text else title
        return Document(doc_id, text, metadata)


class CsvSource(_FileSource):
    """A CSV file with a header row holding ``id`` and ``text`` columns; other non-empty cells become
    metadata (as strings). Fields may span lines (quoted); errors name ``path:line``."""

    kind = "csv"

    def __iter__(self) -> Iterator[Document]:
        _allow_long_fields()
        try:
            fh = open(self.path, "rb")  # bytes, decoded line by line: a decoding error can name its line
        except OSError as exc:
            raise _open_error(self.path, exc) from exc
        with fh:
            # strict: an unclosed quote is an error, not the rest of the file swallowed into one field
            reader = csv.reader(self._lines(fh), strict=True)
            try:
                yield from self._rows(reader)
            except csv.Error as exc:
                raise SourceError(f"{self.path}:{reader.line_num}: malformed CSV ({exc}); check the quoting") from exc

    def _lines(self, fh: Any) -> Iterator[str]:
        for lineno, raw in enumerate(fh, start=1):
            try:
                yield raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise SourceError(f"{self.path}:{lineno}: not valid UTF-8 ({exc.reason}); save the file as UTF-8") from exc

    def _rows(self, reader: Any) -> Iterator[Document]:
        header: list[str] | None = None
        seen: dict[str, int] = {}
        while True:
            lineno = reader.line_num + 1  # where the next row starts (a quoted field may span lines)
            row = next(reader, None)
            if row is None:
                break
            if not row or not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = self._header(row, lineno)
                continue
            where = f"{self.path}:{lineno}"
            if len(row) != len(header):
                raise SourceError(f"{where}: {len(row)} fields, but the header has {len(header)}; check the quoting")
            cells = dict(zip(header, row, strict=True))
            doc_id = _document_id(cells.pop("id"), where, "id")
            text = cells.pop("text")
            metadata = {k: v for k, v in cells.items() if k and v != ""}
            _check_unique(seen, doc_id, lineno, self.path)
            yield Document(doc_id, text, metadata)
        if header is None:
            raise SourceError(f"{self.path}: empty file; a CSV source needs a header row with 'id' and 'text' columns")

    def _header(self, row: list[str], lineno: int) -> list[str]:
        names = [cell.strip() for cell in row]
        missing = [c for c in ("id", "text") if c not in names]
        if missing:
            raise SourceError(
                f"{self.path}:{lineno}: no {' or '.join(repr(c) for c in missing)} column; the header must name "
                f"'id' and 'text' columns (found: {', '.join(repr(n) for n in names)})"
            )
        doubled = sorted({n for n in names if n and names.count(n) > 1})
        if doubled:
            raise SourceError(f"{self.path}:{lineno}: column(s) {doubled} appear more than once in the header; rename them")
        return names


def _allow_long_fields() -> None:
    """csv refuses fields over 128 KiB by default; whole documents can be longer."""
    limit = 2**31 - 1
    if csv.field_size_limit() < limit:
        csv.field_size_limit(limit)


# ---- partitions: a source read in pieces by several workers (sdk.sync.ray_engine) ----------------


class _FolderPart:
    """Some files of a ``FolderSource``, read exactly as the whole folder reads them."""

    def __init__(self, source: FolderSource, files: list[tuple[str, str]]) -> None:
        self.source, self.files = source, files

    def __iter__(self) -> Iterator[Document]:
        for rel, file in self.files:
            yield self.source._read(rel, Path(file))


class _JsonlPart:
    """The lines of a JSONL file that start in bytes ``[start, end)``; errors name the byte offset."""

    def __init__(self, path: Path, start: int, end: int) -> None:
        self.path, self.start, self.end = path, start, end

    def __iter__(self) -> Iterator[Document]:
        try:
            fh = open(self.path, "rb")
        except OSError as exc:
            raise _open_error(self.path, exc) from exc
        with fh:
            offset = self.start
            if offset:
                fh.seek(offset - 1)
                offset += len(fh.readline()) - 1  # a line begun before the range belongs to the previous part
            while offset < self.end:
                raw = fh.readline()
                if not raw:
                    break
                doc = JsonlSource._line(raw, f"{self.path} (line at byte {offset})", offset == 0)
                offset += len(raw)
                if doc is not None:
                    yield doc


def partitions(source: Source, *, files_per_part: int = 256, bytes_per_part: int = 8 << 20,
               min_pieces: int = 1) -> list[Iterable[Document]]:
    """``source`` cut into pieces that iterate to the same documents, in order, when read one after another.

    A folder is cut into groups of at most ``files_per_part`` files (listed here, read by whoever
    iterates a piece); a JSONL file into byte ranges of at most ``bytes_per_part`` (each line belongs to
    the range it starts in). Smaller pieces are cut when that is what it takes to give ``min_pieces``
    (so every worker of a cluster has one; a JSONL piece stays >= 4 KiB). A CSV file (a quoted field may
    span lines) and any other source stay whole. Pieces pickle, so workers on other machines can read
    them when the paths are shared. Ids repeated across pieces are the reader's to catch (``Syncer`` does).
    """
    if isinstance(source, FolderSource):
        files = [(rel, str(file)) for rel, file in source._files()]
        per = max(1, min(files_per_part, -(-len(files) // max(1, min_pieces))))
        return [_FolderPart(source, files[i:i + per]) for i in range(0, len(files), per)]
    if isinstance(source, JsonlSource):
        try:
            size = source.path.stat().st_size
        except OSError as exc:
            raise _open_error(source.path, exc) from exc
        per = max(1, min(bytes_per_part, max(4096, -(-size // max(1, min_pieces)))))
        return [_JsonlPart(source.path, start, min(start + per, size)) for start in range(0, max(size, 1), per)]
    return [source]
