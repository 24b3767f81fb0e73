"""Retries and error translation, shared by every adapter.

The error-translation rule: a driver exception never leaves an adapter. ``Adapter._call`` runs
each driver call under a ``RetryPolicy``; whatever escapes is handed to ``Adapter._translate``,
which recognises the database's own cases (collection not found, schema clash) and defers to
``translate_error`` here for the rest: transient failures (refused or reset connections,
timeouts, 5xx, "unavailable") become ``TransientAdapterError`` and are retried within a bounded
budget; everything else becomes ``AdapterError``. Always ``raise ... from exc``.
"""

from __future__ import annotations

import errno
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from sdk.core.errors import AdapterError, SDKError, TransientAdapterError

__all__ = ["NO_RETRY", "RetryPolicy", "is_transient", "translate_error"]

T = TypeVar("T")

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

        return Retrying(**self._schedule())(once)

    async def acall(self, fn: Callable[[], Awaitable[T]], translate: Callable[[BaseException], SDKError]) -> T:
        """``call`` for a coroutine: the same budget and translation, the waits are ``asyncio.sleep``."""

        async def once() -> T:
            try:
                return await fn()
            except SDKError:
                raise
            except Exception as exc:
                raise translate(exc) from exc

        return await AsyncRetrying(**self._schedule())(once)

    def _schedule(self) -> dict[str, Any]:
        """The one retry schedule both ``call`` and ``acall`` follow."""
        return {
            "stop": stop_after_attempt(max(1, self.attempts)) | stop_after_delay(self.budget_s),
            "wait": wait_exponential(multiplier=self.initial_wait_s, max=self.max_wait_s)
            + wait_random(0, self.initial_wait_s),
            "retry": retry_if_exception_type(TransientAdapterError),
            "retry_error_callback": self._spent,
            "reraise": True,
        }

    def _spent(self, state: RetryCallState) -> NoReturn:
        """The budget ran out: the last error, saying so (one error, not one per attempt)."""
        exc = state.outcome.exception() if state.outcome is not None else None
        if not isinstance(exc, TransientAdapterError) or self.attempts <= 1:
            raise exc if exc is not None else TransientAdapterError("the call failed and was not retried")
        raise type(exc)(
            f"{exc} (gave up after {state.attempt_number} attempt{'s' if state.attempt_number != 1 else ''} in {state.seconds_since_start or 0.0:.1f} s, "
            f"the retry budget of RetryPolicy(attempts={self.attempts}, budget_s={self.budget_s:g}))"
        ) from exc.__cause__


NO_RETRY = RetryPolicy(attempts=1, budget_s=0.0)
