"""Logic every adapter shares: storage ids, batching, retries with error translation, RRF.

Kept in one place so the four databases cannot drift apart on what makes a re-run idempotent
(ids), what is retried (only transient failures, within a bounded budget) or how fused ranks
are computed when a fallback or a test needs them.
"""

from __future__ import annotations

import errno
import hashlib
import re
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from sdk.errors import AdapterError, SDKError, TransientAdapterError

__all__ = [
    "ID_NAMESPACE",
    "RetryPolicy",
    "batched",
    "is_transient",
    "point_id",
    "rrf_fuse",
    "translate_error",
]

T = TypeVar("T")

# Fixed forever: changing it would give every stored document a new id and duplicate them.
ID_NAMESPACE = uuid.UUID("6f1c2a9e-5b4d-5e8f-9a3c-7d2e1b0f4c58")


_NS = ID_NAMESPACE.bytes


def point_id(doc_id: str) -> str:
    """Storage id of a document: uuid5 of its id, so the same document always lands on the same point.

    Equal to ``str(uuid.uuid5(ID_NAMESPACE, doc_id))`` (a unit test holds it to that), computed
    without building a ``UUID`` object, which dominated upsert overhead on fast engines.
    """
    h = bytearray(hashlib.sha1(_NS + doc_id.encode()).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Chunks of at most ``size`` items, in order."""
    if size < 1:
        from sdk.errors import InputError

        raise InputError(f"batch_size must be >= 1, got {size}")
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


_TRANSIENT_WORDS = (
    "connection refused", "connection reset", "connection aborted", "broken pipe", "timed out",
    "timeout", "deadline exceeded", "unavailable", "temporarily", "try again", "too many requests",
    "server closed the connection",
)
# A 5xx only when it reads as a status ("HTTP 503", "status_code=502"), not any number in a message.
_STATUS_5XX = re.compile(r"(?:status|http|code)\D{0,12}5\d\d\b", re.IGNORECASE)
_TRANSIENT_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE,
                     errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH}


def is_transient(exc: BaseException) -> bool:
    """True for failures a retry may cure: refused/reset connections, timeouts, 5xx, 'unavailable'."""
    if isinstance(exc, TransientAdapterError):
        return True
    if isinstance(exc, SDKError):
        return False
    if isinstance(exc, (TimeoutError, socket.timeout, ConnectionError)):
        return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    if isinstance(status, int) and (status >= 500 or status == 429):
        return True
    code = getattr(exc, "code", None)
    if callable(code):  # grpc.RpcError
        try:
            name = getattr(code(), "name", "")
        except Exception:  # noqa: BLE001 - a broken error object is not transient
            name = ""
        if name in {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"}:
            return True
    text = str(exc).lower()
    return any(word in text for word in _TRANSIENT_WORDS) or bool(_STATUS_5XX.search(text))


def translate_error(exc: BaseException, what: str) -> SDKError:
    """Default translation of a driver error; adapters refine it (not found, schema) before this."""
    if isinstance(exc, SDKError):
        return exc
    cls = TransientAdapterError if is_transient(exc) else AdapterError
    return cls(f"{what} failed: {type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class RetryPolicy:
    """Retry only transient failures, at most ``attempts`` times and ``budget_s`` seconds in all."""

    attempts: int = 4
    budget_s: float = 15.0
    initial_wait_s: float = 0.2
    max_wait_s: float = 2.0

    def call(self, fn: Callable[[], T], translate: Callable[[BaseException], SDKError]) -> T:
        """Run ``fn``; driver errors become SDK errors (``raise ... from exc``); transient ones retry."""

        def once() -> T:
            try:
                return fn()
            except SDKError:
                raise
            except Exception as exc:
                raise translate(exc) from exc

        retrying = Retrying(
            stop=stop_after_attempt(max(1, self.attempts)) | stop_after_delay(self.budget_s),
            wait=wait_exponential(multiplier=self.initial_wait_s, max=self.max_wait_s)
            + wait_random(0, self.initial_wait_s),
            retry=retry_if_exception_type(TransientAdapterError),
            reraise=True,
        )
        return retrying(once)


NO_RETRY = RetryPolicy(attempts=1, budget_s=0.0)


def rrf_fuse(
    rankings: Mapping[str, Sequence[str]],
    k: int = 60,
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: ``score(d) = sum_leg w_leg / (k + rank_leg(d))`` with ranks from 1.

    Ties are broken by the best single-leg rank, then by id, so the result is deterministic.
    """
    weights = weights or {}
    scores: dict[str, float] = {}
    best: dict[str, int] = {}
    for leg, ids in rankings.items():
        w = float(weights.get(leg, 1.0))
        for rank, doc in enumerate(ids, start=1):
            scores[doc] = scores.get(doc, 0.0) + w / (k + rank)
            best[doc] = min(best.get(doc, rank), rank)
    ordered = sorted(scores.items(), key=lambda kv: (-kv[1], best[kv[0]], kv[0]))
    return ordered[:limit] if limit is not None else ordered
