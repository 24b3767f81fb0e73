"""psycopg exceptions -> ``sdk.core.errors``, by SQLSTATE class rather than by message text.

Connection-level failures (server restart, ``pg_terminate_backend``, network resets), lock
conflicts and serialization failures are what a retry can cure; everything else (syntax, a
missing table, a violated constraint, a refused password or TLS setting) fails the same way on
every attempt and raises at once.
"""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors

from adapters.retry import translate_error
from sdk.core.errors import AdapterError, CollectionNotFoundError, SDKError, TransientAdapterError

__all__ = ["is_connection_lost", "translate"]

_TRANSIENT_SQLSTATE_PREFIXES = (
    "08",  # connection exception
    "40",  # transaction rollback: serialization failure, deadlock
    "53",  # insufficient resources (too many connections, out of memory / disk)
    "57P",  # operator intervention: admin shutdown, crash shutdown, cannot connect now
)


def translate(exc: BaseException, what: str) -> SDKError:
    """The SDK error for a psycopg exception raised while doing ``what``."""
    if isinstance(exc, SDKError):
        return exc
    if isinstance(exc, pg_errors.UndefinedTable):
        return CollectionNotFoundError(
            f"{what} failed: the table does not exist ({exc.diag.message_primary}); "
            "create the collection first or check its name"
        )
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate or ""
        refused = _refused_connection(exc, state)
        if refused:
            return AdapterError(f"{what} failed: {refused} ({exc})")
        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)) and not state:
            # No SQLSTATE: the client lost or could not open the connection.
            return TransientAdapterError(f"{what} failed: PostgreSQL is unreachable or dropped the connection: "
                                         f"{exc}. Check that the server runs and that its host and port are "
                                         "reachable from here")
        if state.startswith(_TRANSIENT_SQLSTATE_PREFIXES) or isinstance(exc, pg_errors.QueryCanceled):
            return TransientAdapterError(f"{what} failed (SQLSTATE {state}): {exc}")
        return AdapterError(f"{what} failed (SQLSTATE {state or 'none'}): {exc}")
    return translate_error(exc, what)


# The server refused who we are or how we came (no SQLSTATE at connect time, hence the text): a retry
# fails the same way, so these are not transient, and the message names the fix.
_REFUSALS = (
    (("password authentication failed", "authentication failed", "password is required", "no password supplied"),
     "PostgreSQL refused the credentials; check the user and password (in the URL, percent-encoded, or "
     "PGPASSWORD / ~/.pgpass)"),
    (("no pg_hba.conf entry",),
     "PostgreSQL's pg_hba.conf has no line for this user, database, address and TLS setting; connect with "
     "?sslmode=require (or ?tls=true) if the server takes TLS only, or ask its administrator"),
    (("server does not support ssl",),
     "the PostgreSQL server has TLS off; turn ssl on there, or connect without sslmode=require / tls=true"),
)


def _refused_connection(exc: BaseException, state: str) -> str | None:
    if state.startswith("28"):  # invalid authorization specification / password
        return _REFUSALS[0][1]
    if state or not isinstance(exc, psycopg.OperationalError):
        return None
    text = str(exc).lower()
    return next((fix for words, fix in _REFUSALS if any(w in text for w in words)), None)


def is_connection_lost(exc: BaseException) -> bool:
    """True when the connection itself is unusable and must be reopened before a retry."""
    cause = exc.__cause__ if isinstance(exc, AdapterError) else exc
    if isinstance(cause, (psycopg.OperationalError, psycopg.InterfaceError)):
        state = getattr(cause, "sqlstate", None) or ""
        return not state or state.startswith(("08", "57P"))
    return False
