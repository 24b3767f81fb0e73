"""``redact``: hide passwords, tokens and API keys in any text before it becomes a message or a log line.

Database URLs carry secrets (``postgresql://user:PASSWORD@host``, ``qdrant://:KEY@host``), and
they reach error messages, log lines, reprs and the CLI's output through many paths, including
driver exception texts. One function hides them all; ``SDKError`` applies it to its own message,
so no SDK error can repeat a secret whoever built it.

What is hidden (replaced by ``***``):

- the password of a URL's user info (``scheme://user:***@host``); the whole user info for schemes
  whose user part can only be a key (``qdrant``, ``weaviate`` and their TLS forms);
- ``name=value`` pairs whose name says secret (``password``, ``sslpassword``, ``api_key``,
  ``apikey``, ``token``, ``access_token``, ``secret``, ``key``, ...), in URL queries, libpq
  conninfo strings (quoted values too) and Python reprs (``'password': 'x'``);
- HTTP credentials: ``Authorization: Bearer X`` / ``Basic X``, ``api-key: X``;
- every secret this process has handed to a driver (``remember_secret``) and the values of the
  credential environment variables, wherever they appear literally.

Standard library only (floor 0); this module imports nothing from the SDK so ``errors`` can use it.
"""

from __future__ import annotations

import os
import re
import threading

__all__ = ["MASK", "SECRET_ENV_VARS", "redact", "remember_secret"]

MASK = "***"

#: Environment variables that hold database credentials; their values are hidden wherever they appear.
SECRET_ENV_VARS = ("QDRANT_API_KEY", "MILVUS_TOKEN", "WEAVIATE_API_KEY", "PGPASSWORD")

# Schemes whose user info can only be a credential (they have no user names).
_KEY_ONLY_SCHEMES = frozenset({"qdrant", "qdrants", "weaviate", "weaviates"})
# Upper-case placeholders in the SDK's own hints ("write qdrant://:API_KEY@HOST") stay readable.
_PLACEHOLDERS = frozenset({"API_KEY", "KEY", "TOKEN", "PASSWORD", "SECRET", "VALUE", MASK})
# Literal secrets shorter than this are not searched for (they would mangle ordinary words);
# the structural rules above still hide them where they appear in a URL or key=value form.
_MIN_LITERAL = 6

_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*)://(?P<info>[^\s/?#]*)@")
_SECRET_NAME = r"[\w\-]*(?:password|passwd|pwd|secret|token|api[_\-]?key|apikey|credentials?)|key|auth"
# name=value (query strings, conninfo; a quoted conninfo value may hold spaces and \' escapes)
_ASSIGNMENT = re.compile(
    rf"(?P<name>(?<![\w\-])(?:{_SECRET_NAME}))(?P<sep>\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,)'\"]+)",
    re.IGNORECASE,
)
# 'password': 'x' / "token": "x" (dict and dataclass reprs, JSON)
_MAPPING = re.compile(
    rf"(?P<name>['\"](?:{_SECRET_NAME})['\"])(?P<sep>\s*:\s*)(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")",
    re.IGNORECASE,
)
_HEADER = re.compile(
    r"(?P<name>\b(?:authorization|proxy-authorization|x-api-key|api-key)\b)(?P<sep>\s*:\s*)"
    r"(?P<value>(?:(?:bearer|basic|token)\s+)?[^\s,;'\"]+)",
    re.IGNORECASE,
)
_SCHEME_TOKEN = re.compile(r"\b(?P<name>bearer)(?P<sep>\s+)(?P<value>[A-Za-z0-9\-._~+/=]{8,})", re.IGNORECASE)

_lock = threading.Lock()
_known: set[str] = set()


def remember_secret(secret: str | None) -> None:
    """Hide ``secret`` wherever it appears in text passed to ``redact`` from now on (this process).

    The URL parser calls it for every password, token and API key it hands to a driver, so a
    driver's own message that quotes the secret in some other form is still cleaned.
    """
    if secret and len(secret) >= _MIN_LITERAL:
        with _lock:
            _known.add(secret)


def redact(text: object) -> str:
    """``text`` (a URL, a conninfo string, an error message, anything) with every credential hidden."""
    out = text if isinstance(text, str) else str(text)
    if not out:
        return out
    out = _URL_USERINFO.sub(_userinfo, out)
    out = _ASSIGNMENT.sub(_masked, out)
    out = _MAPPING.sub(_masked, out)
    out = _HEADER.sub(_masked_header, out)
    out = _SCHEME_TOKEN.sub(_masked, out)
    for secret in _literals():
        if secret in out:
            out = out.replace(secret, MASK)
    return out


def _userinfo(match: re.Match[str]) -> str:
    scheme, info = match.group("scheme"), match.group("info")
    if not info or info.rpartition(":")[2] in _PLACEHOLDERS:
        return match.group(0)
    if scheme.lower() in _KEY_ONLY_SCHEMES:
        return f"{scheme}://{MASK}@"
    user, colon, _ = info.partition(":")
    if not colon:
        return match.group(0)  # a user name alone is not a secret (postgresql://postgres@host)
    return f"{scheme}://{user}:{MASK}@"


def _masked(match: re.Match[str]) -> str:
    value = match.group("value")
    if value.strip("'\"") in _PLACEHOLDERS:
        return match.group(0)
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match.group('name')}{match.group('sep')}{quote}{MASK}{quote}"


def _masked_header(match: re.Match[str]) -> str:
    value = match.group("value")
    kind = value.split()[0] + " " if len(value.split()) > 1 else ""
    return f"{match.group('name')}{match.group('sep')}{kind}{MASK}"


def _literals() -> list[str]:
    with _lock:
        found = set(_known)
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value) >= _MIN_LITERAL:
            found.add(value)
    return sorted(found, key=len, reverse=True)  # longest first: a secret containing another
