"""A client-side deadline for one transaction on a psycopg connection.

psycopg waits for the server's answer without a limit, and neither the server's
``statement_timeout`` nor TCP keepalives help when the path to the server holds the connection
open but passes nothing (a stalled proxy, load balancer or NAT: the peer's kernel still answers
keepalives). So a timer shuts the connection's socket down when a transaction outlives its
deadline: the waiting call returns at once with a connection error, the server rolls the
transaction back when it notices, and the retry policy runs the call again on a fresh connection.
``shutdown`` acts on the socket, not on one descriptor, so it is safe from another thread while
libpq waits on it; the lock makes sure it never fires after the transaction ended.
"""

from __future__ import annotations

import os
import socket
import threading
from types import TracebackType
from typing import Any

import psycopg
from psycopg import errors as pg_errors

__all__ = ["StatementDeadline"]


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
        self._timer: threading.Timer | None = None

    def __enter__(self) -> StatementDeadline:
        if self.seconds is not None and self.seconds > 0:
            self._timer = threading.Timer(self.seconds, self._fire)
            self._timer.daemon = True
            self._timer.start()
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
        if self._timer is not None:
            self._timer.cancel()
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
