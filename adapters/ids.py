"""Storage ids, batching and id paging: what makes a re-run of the same write idempotent on every
database, and what lets a scan of every document id resume a failed page."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from sdk.core.errors import InputError

__all__ = ["ID_NAMESPACE", "CursorPages", "batched", "point_id"]

T = TypeVar("T")
C = TypeVar("C")

# Fixed forever: changing it would give every stored document a new id and duplicate them.
ID_NAMESPACE = uuid.UUID("6f1c2a9e-5b4d-5e8f-9a3c-7d2e1b0f4c58")


_NS = ID_NAMESPACE.bytes


def point_id(doc_id: str) -> str:
    """Storage id of a document: uuid5 of its id, so the same document always lands on the same point.

    Equal to ``str(uuid.uuid5(ID_NAMESPACE, doc_id))`` (a unit test holds it to that), computed
    without building a ``UUID`` object, which dominated upsert overhead on fast engines.
    """
    try:
        raw = doc_id.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate: no database stores such an id
        raise InputError(f"document id {doc_id[:60]!r} is not valid Unicode (lone surrogate at position "
                         f"{exc.start}); fix how it was decoded") from None
    h = bytearray(hashlib.sha1(_NS + raw).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Chunks of at most ``size`` items, in order."""
    if size < 1:
        raise InputError(f"batch_size must be >= 1, got {size}")
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class CursorPages(Generic[C]):
    """Pages of document ids fetched by cursor, where asking again after a failure repeats the page.

    ``fetch(cursor)`` returns ``(page, next_cursor)``: ``cursor`` is ``None`` for the first page and
    ``next_cursor`` is ``None`` after the last one. The cursor moves only when a fetch succeeds, so
    when ``Adapter.ids`` retries a page after a transient error (calls ``next()`` again) the same
    page is fetched. A generator cannot do that: once it has raised it is finished, and a retry
    would read its end as the end of the collection. ``Adapter._scan_ids`` returns one of these.
    """

    def __init__(self, fetch: Callable[[C | None], tuple[list[str], C | None]]) -> None:
        self._fetch = fetch
        self._cursor: C | None = None
        self._done = False

    def __iter__(self) -> CursorPages[C]:
        return self

    def __next__(self) -> list[str]:
        if self._done:
            raise StopIteration
        page, cursor = self._fetch(self._cursor)
        self._cursor, self._done = cursor, cursor is None
        return page
