"""``Capture``: what a pipeline does per search when feedback is on, split between two threads.

On the request thread, ``Capture.record`` only takes references (the hits, the timings, the
encoder objects), stamps the time and queues a ``PendingImpression``: microseconds, no I/O, no
exception. On the store's writer thread, ``PendingImpression.resolve`` does the slow parts: the
encoder fingerprints (hashing weights takes ~0.1 s the first time, so they are cached per encoder
object, and a hot-swapped reranker is noticed because it is a new object) and the physical
collection behind an alias (one ``describe`` round trip, reused for ``physical_ttl`` seconds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sdk.feedback.records import Impression, ShownHit, hash_query
from sdk.feedback.store import FeedbackStore, logger

__all__ = ["Capture", "PendingImpression"]

_MAX_CACHED_MODELS = 16


@dataclass(frozen=True)
class PendingImpression:
    """An impression whose expensive parts are computed by the writer thread (``resolve``)."""

    capture: Capture
    search_id: str
    created_at: float
    query: str
    hits: Sequence[Any]
    encoders: Mapping[str, Any]
    config: Mapping[str, Any]
    timings: Mapping[str, float]

    def resolve(self) -> Impression:
        c = self.capture
        hits = tuple(ShownHit(i, str(h.id), float(h.score), {k: float(v) for k, v in h.scores_by_stage.items()})
                     for i, h in enumerate(self.hits, start=1))
        models = {stage: c.fingerprint_of(enc) for stage, enc in self.encoders.items() if enc is not None}
        config = {k: (repr(v) if k == "filter" and v is not None else v) for k, v in self.config.items()}
        return Impression(self.search_id, self.created_at, self.query, hash_query(self.query), c.collection,
                          c.physical(), c.store_name, hits, models, config, dict(self.timings))


class Capture:
    """Feeds one pipeline's searches into a ``FeedbackStore`` (see the module docstring).

    ``fingerprint`` turns an encoder into its fingerprint; ``resolve_physical`` returns the
    collection behind ``collection`` (``VectorStore.describe(name).name``)."""

    def __init__(self, store: FeedbackStore, *, collection: str, store_name: str,
                 fingerprint: Callable[[Any], str], resolve_physical: Callable[[], str] | None,
                 physical_ttl: float = 1.0) -> None:
        self.store, self.collection, self.store_name = store, collection, store_name
        self._fingerprint, self._resolve_physical, self._ttl = fingerprint, resolve_physical, physical_ttl
        self._models: dict[int, tuple[Any, str]] = {}  # id(encoder) -> (encoder kept alive, fingerprint)
        self._physical: tuple[float, str | None] | None = None
        self._lock = threading.Lock()
        self._warned = False

    def record(self, search_id: str, query: str, hits: Sequence[Any], *, encoders: Mapping[str, Any],
               config: Mapping[str, Any], timings: Mapping[str, float]) -> None:
        """Queue the impression of one search; never raises, never waits."""
        try:
            self.store.submit(PendingImpression(self, search_id, time.time(), query, tuple(hits), dict(encoders),
                                                dict(config), dict(timings)))
        except Exception:  # noqa: BLE001 - feedback never breaks a search
            if not self._warned:
                self._warned = True
                logger.exception("feedback capture failed; the impression of this search is dropped")

    # ---- writer-thread helpers --------------------------------------------------------------
    def fingerprint_of(self, encoder: Any) -> str:
        with self._lock:
            cached = self._models.get(id(encoder))
            if cached is not None and cached[0] is encoder:
                return cached[1]
        value = self._fingerprint(encoder)
        with self._lock:
            if len(self._models) >= _MAX_CACHED_MODELS:
                self._models.clear()
            self._models[id(encoder)] = (encoder, value)
        return value

    def physical(self) -> str | None:
        """The physical collection behind the queried name, re-read at most every ``physical_ttl`` seconds."""
        if self._resolve_physical is None:
            return None
        now = time.monotonic()
        cached = self._physical
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        try:
            name: str | None = self._resolve_physical()
        except Exception as exc:  # noqa: BLE001 - an unreadable alias leaves the field empty
            logger.debug("feedback: cannot resolve the collection behind %r (%s)", self.collection, exc)
            name = None
        self._physical = (now, name)
        return name
