"""A client-side deadline for one transaction on a psycopg connection.

psycopg waits for the server's answer without a limit, and neither the server's
``statement_timeout`` nor TCP keepalives help when the path to the server holds the connection
open but passes nothing (a stalled proxy, load balancer or NAT: the peer's kernel still answers
keepalives). So a timer shuts the connection's socket down when a transaction outlives its
deadline: the waiting call returns at once with a connection error, the server rolls the
transaction back when it notices, and the retry policy runs the call again on a fresh connection.
``shutdown`` acts on the socket, not on one descriptor, so it is safe from another thread while
libpq waits on it; the lock makes sure it never fires after the transaction ended.

One watchdog thread keeps every deadline of the process (a heap, earliest first), started once:
a timer thread per transaction put a thread start-up (and its join) on every query (issue 18).
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from types import TracebackType
from typing import Any

import psycopg
from psycopg import errors as pg_errors

__all__ = ["StatementDeadline"]


class _Watchdog:
    """One daemon thread firing the deadlines that come due; a cancelled one stays in the heap
    until its time (or until cancelled entries outnumber live ones: then the heap is rebuilt)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, StatementDeadline]] = []
        self._order = itertools.count()
        self._cancelled = 0
        self._thread: threading.Thread | None = None

    def add(self, deadline: StatementDeadline, seconds: float) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sdk-pg-deadlines", daemon=True)
                self._thread.start()
            entry = (time.monotonic() + seconds, next(self._order), deadline)
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:
                self._cond.notify()

    def cancel(self) -> None:
        with self._cond:
            self._cancelled += 1
            if self._cancelled > 1000 and self._cancelled * 2 > len(self._heap):
                self._heap = [e for e in self._heap if not e[2]._done]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _run(self) -> None:
        while True:
            due: list[StatementDeadline] = []
            with self._cond:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    deadline = heapq.heappop(self._heap)[2]
                    if deadline._done:
                        self._cancelled = max(0, self._cancelled - 1)
                    else:
                        due.append(deadline)
                if not due:
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
                    continue
            for deadline in due:  # outside the condition: firing takes the deadline's own lock
                deadline._fire()


_WATCHDOG = _Watchdog()
if hasattr(os, "register_at_fork"):  # a forked child has no watchdog thread (and maybe a held lock): a new one
    os.register_at_fork(after_in_child=_WATCHDOG.__init__)


class StatementDeadline:
    """``with StatementDeadline(conn, 30.0): ...``: the block's round trips end within ``seconds``.

    When the deadline fired, the block's connection error is replaced by ``ConnectionTimeout``
    (an ``OperationalError`` without SQLSTATE: transient, the connection must be reopened).
    ``seconds=None`` means no deadline.
    """

    def __init__(self, conn: Any, seconds: float | None) -> None:
        self.seconds = seconds
        self.fired = False
        self._conn = conn
        self._lock = threading.Lock()
        self._done = False
        self._armed = False

    def __enter__(self) -> StatementDeadline:
        if self.seconds is not None and self.seconds > 0:
            _WATCHDOG.add(self, self.seconds)
            self._armed = True
        return self

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            try:
                fd = self._conn.fileno()
                sock = socket.socket(fileno=os.dup(fd))
            except Exception:  # noqa: BLE001 - connection already closed: nothing to unblock
                return
            self.fired = True
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            finally:
                sock.close()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with self._lock:
            self._done = True
        if self._armed and not self.fired:
            _WATCHDOG.cancel()
        if not self.fired:
            return
        # The socket is shut down even when the block happened to finish: never reuse the connection.
        try:
            self._conn.close()
        except Exception:  # noqa: BLE001
            pass
        # A block that finished keeps its result (its transaction committed); other errors stay as raised.
        if isinstance(exc, psycopg.Error):
            raise pg_errors.ConnectionTimeout(
                f"no answer within {self.seconds:g} s (the adapter's call_timeout: raise it for statements "
                "that legitimately run longer), the connection was closed"
            ) from exc
