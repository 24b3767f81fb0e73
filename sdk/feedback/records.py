"""What the feedback store keeps: an ``Impression`` per search and a ``FeedbackEvent`` per signal.

An impression is what the user was shown, not only what they clicked: the query, every ranked id
with its position and each stage's score, the models and the physical collection that served it.
Without the hits that were shown and *not* clicked there are no negatives and no position-bias
correction, so both are kept.

Signals (``SIGNALS``): ``click``, ``used`` (a RAG answer cited the document), ``thumbs_up``,
``thumbs_down`` and ``rating`` with a numeric value in ``RATING_RANGE`` (0 to 5 inclusive: a 1-5
star scale, a 0-3 graded-relevance scale and a 0-1 score all fit). Only ``rating`` takes a value.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sdk.core.errors import InputError

__all__ = [
    "RATING_RANGE",
    "SIGNALS",
    "FeedbackEvent",
    "Impression",
    "ShownHit",
    "check_signal",
    "hash_query",
    "new_search_id",
]

SIGNALS = ("click", "used", "thumbs_up", "thumbs_down", "rating")
RATING_RANGE = (0.0, 5.0)
_MAX_ID = 512  # characters of a search id or document id; longer is a caller mistake, not an id


def new_search_id() -> str:
    """A fresh search id: 32 hex characters of a random uuid4 (about a microsecond)."""
    return uuid.uuid4().hex


def hash_query(text: str) -> str:
    """``sha256`` hex of the query text as typed: what a store with ``hash_queries=True`` keeps.

    Equal queries share a hash, so impressions still group by query for training; the text cannot
    be read back, though a short common query can be guessed by hashing candidates."""
    return hashlib.sha256(text.encode("utf8")).hexdigest()


@dataclass(frozen=True)
class ShownHit:
    """One ranked result of an impression: 1-based ``position``, final ``score`` and every stage's score."""

    position: int
    doc_id: str
    score: float
    scores: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Impression:
    """One search as served. ``query`` is ``None`` when the store hashes queries (``query_hash`` stays).

    ``models`` maps each stage (``dense``, ``sparse``, ``reranker``) to its encoder fingerprint;
    ``collection`` is the name the pipeline queried (often an alias) and ``physical_collection``
    the collection behind it when the search was recorded (``None`` when it could not be read);
    ``config`` holds the legs, fusion, limits and filter; ``created_at`` is Unix time (seconds, UTC).
    """

    search_id: str
    created_at: float
    query: str | None
    query_hash: str
    collection: str
    physical_collection: str | None
    store: str
    hits: tuple[ShownHit, ...] = ()
    models: Mapping[str, str] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)

    def position_of(self, doc_id: str) -> int | None:
        """The 1-based position ``doc_id`` was shown at, ``None`` when it was not shown."""
        return next((h.position for h in self.hits if h.doc_id == doc_id), None)


@dataclass(frozen=True)
class FeedbackEvent:
    """One signal on one shown (or claimed-shown) document.

    ``known_search`` and ``position`` are filled by the store when the event is written:
    ``known_search`` is ``False`` when the store holds no impression for ``search_id`` (the
    impression was dropped, pruned, or the id came from elsewhere); ``position`` is ``None``
    when the document was not among that search's hits. Such events are kept, flagged, so the
    labels step can decide; they are never silently turned into training data.
    """

    search_id: str
    doc_id: str
    signal: str
    value: float | None = None
    created_at: float = field(default_factory=time.time)
    known_search: bool | None = None
    position: int | None = None


def _check_id(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{name} must be a non-empty string, got {value!r}")
    if len(value) > _MAX_ID:
        raise InputError(f"{name} is {len(value)} characters long; ids are at most {_MAX_ID}")
    return value


def check_signal(search_id: Any, doc_id: Any, signal: Any, value: Any = None) -> FeedbackEvent:
    """A validated ``FeedbackEvent`` stamped now; ``InputError`` names what is wrong and how to fix it.

    ``signal`` is one of ``SIGNALS``, or a bare number (a rating): ``feedback(sid, doc, 4)`` is
    ``feedback(sid, doc, "rating", 4)``.
    """
    sid, did = _check_id("search_id", search_id), _check_id("doc_id", doc_id)
    if isinstance(signal, numbers.Real) and not isinstance(signal, bool):
        if value is not None:
            raise InputError("a numeric signal is itself the rating; pass value=None (or signal='rating', value=x)")
        signal, value = "rating", signal
    if signal not in SIGNALS:
        raise InputError(f"unknown feedback signal {signal!r}; use one of {', '.join(SIGNALS)} or a numeric rating")
    low, high = RATING_RANGE
    if signal == "rating":
        if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise InputError(f"a rating needs a numeric value between {low:g} and {high:g}, got {value!r}")
        rating = float(value)
        if not math.isfinite(rating) or not low <= rating <= high:
            raise InputError(f"a rating must lie between {low:g} and {high:g} (inclusive), got {value!r}; "
                             "rescale it to that range")
        return FeedbackEvent(sid, did, signal, rating)
    if value is not None:
        raise InputError(f"the signal {signal!r} takes no value (only 'rating' does), got value={value!r}")
    return FeedbackEvent(sid, did, signal)
