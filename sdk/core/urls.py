"""One URL grammar for every remote database: host, port, TLS and credentials read the same way.

    SCHEME://[USER[:PASSWORD]@]HOST[:PORT][/DATABASE][?OPTION=VALUE&...]

=============  =============================  ==============================  =====================
engine         plain / TLS                    credentials in the URL          from the environment
=============  =============================  ==============================  =====================
Qdrant         qdrant:// / qdrants://         ``:API_KEY@``                   QDRANT_API_KEY
Milvus         milvus:// / milvuss://         ``USER:PASSWORD@`` or ``:TOKEN@``  MILVUS_TOKEN
Weaviate       weaviate:// / weaviates://     ``:API_KEY@``                   WEAVIATE_API_KEY
PostgreSQL     postgresql:// (postgres://)    ``USER:PASSWORD@``              libpq's (PGPASSWORD, ~/.pgpass)
=============  =============================  ==============================  =====================

``?tls=true`` turns TLS on for every engine (the ``s`` scheme is its short form; PostgreSQL maps it
to ``sslmode=require`` and also takes libpq's own ``sslmode``). ``tls`` is a strict boolean
(true/false, 1/0, yes/no, on/off); any other value, an unknown option or a credential an engine
cannot use is a ``ConfigError`` naming the fix, never silently ignored. A credential in the URL
wins over the environment. Special characters in a user name, password or key are
percent-encoded (``urllib.parse.quote(secret, safe='')``). The human-readable version of this
table is docs/CONNECTING.md; the tests are tests/unit/test_urls.py.

Local forms (``memory://``, ``qdrant+local:PATH``, ``milvus+lite:PATH.db``) are not network
URLs and are handled by their adapters. Standard library only (floor 0).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import unquote, urlsplit

from sdk.core.errors import ConfigError
from sdk.core.redaction import redact, remember_secret

__all__ = ["DatabaseURL", "ENGINES", "Engine", "PG_ADAPTER_OPTIONS", "parse_bool", "parse_url", "pg_adapter_options",
           "redact"]

logger = logging.getLogger(__name__)

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_TLS_OPTIONS = ("tls", "https")  # "https" is the older Qdrant spelling, kept working
_SSLMODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
#: PostgreSQL URL options the SDK reads itself (the adapter's pool and deadline), never passed to libpq
PG_ADAPTER_OPTIONS = ("pool_min_size", "pool_max_size", "pool_timeout", "call_timeout")
_SSLMODE_SECURE = frozenset({"require", "verify-ca", "verify-full"})
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SECRET_OPTION = re.compile(r"key|token|password|secret|auth", re.IGNORECASE)


@dataclass(frozen=True)
class Engine:
    """How one database reads the grammar: its schemes, ports, credential form and options."""

    name: str
    label: str
    schemes: tuple[str, ...]
    tls_schemes: tuple[str, ...]
    default_port: int
    credential: str  # "api_key" (password part only), "token" (USER:PASSWORD or :TOKEN), "libpq"
    env: str | None
    options: Mapping[str, Callable[[str, str], str]] = field(default_factory=dict)
    database: bool = False  # a /DATABASE path is meaningful
    tls_port: int | None = None  # default port under TLS, when it differs


def _port_option(name: str, value: str) -> str:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ConfigError(f"{name}= must be a port number (1-65535), got {value!r}; e.g. {name}=50051")
    return value


def _host_option(name: str, value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]", value):
        raise ConfigError(f"{name}= must be a host name or address, got {value!r}; e.g. {name}=grpc-db.example.com")
    return value


ENGINES: Mapping[str, Engine] = MappingProxyType({
    "qdrant": Engine("qdrant", "Qdrant", ("qdrant",), ("qdrants",), 6333, "api_key", "QDRANT_API_KEY"),
    "milvus": Engine("milvus", "Milvus", ("milvus",), ("milvuss",), 19530, "token", "MILVUS_TOKEN",
                     database=True),
    "weaviate": Engine("weaviate", "Weaviate", ("weaviate",), ("weaviates",), 8080, "api_key", "WEAVIATE_API_KEY",
                       options={"grpc": _port_option, "grpc_host": _host_option}, tls_port=443),
    "postgresql": Engine("postgresql", "PostgreSQL", ("postgresql", "postgres"), (), 5432, "libpq", None,
                         database=True),
})
_BY_SCHEME = {s: e for e in ENGINES.values() for s in (*e.schemes, *e.tls_schemes)}


@dataclass(frozen=True, repr=False)
class DatabaseURL:
    """A parsed database URL. ``repr`` and ``str`` show it with every secret hidden."""

    engine: str
    scheme: str
    host: str
    port: int | None
    tls: bool
    user: str | None = None
    password: str | None = None
    api_key: str | None = None  # Qdrant / Weaviate API key, Milvus token
    database: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    source: str = ""  # the URL as given (holds the secret: never print it, print ``redacted``)

    @property
    def redacted(self) -> str:
        """The URL as given, secrets hidden: what messages and logs show."""
        return redact(self.source)

    def __repr__(self) -> str:
        return f"DatabaseURL({self.redacted!r}, tls={self.tls})"

    def __str__(self) -> str:
        return self.redacted

    @property
    def http_url(self) -> str:
        """``http(s)://HOST:PORT``: what HTTP and gRPC clients take."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def token(self) -> str | None:
        """Milvus' token: ``USER:PASSWORD`` or the token itself (``None`` without credentials)."""
        if self.user is not None and self.password is not None:
            return f"{self.user}:{self.password}"
        return self.api_key

    def conninfo(self) -> str:
        """PostgreSQL: the URL for libpq, with ``tls=`` spelt as libpq's ``sslmode``."""
        if self.engine != "postgresql":
            raise ConfigError(f"conninfo() is for PostgreSQL URLs, not {self.engine}")
        head, _, query = self.source.partition("?")
        query, _, fragment = query.partition("#")
        ours = (*_TLS_OPTIONS, *PG_ADAPTER_OPTIONS)
        kept = [item for item in query.split("&") if item and unquote(item.partition("=")[0]) not in ours]
        if any(unquote(item.partition("=")[0]) in _TLS_OPTIONS for item in query.split("&")):
            kept.append(f"sslmode={'require' if self.tls else 'disable'}")
        return head + ("?" + "&".join(kept) if kept else "") + ("#" + fragment if fragment else "")


def pg_adapter_options(url: DatabaseURL) -> dict[str, int | float | None]:
    """The pgvector adapter's keywords given as URL options (``?pool_max_size=20&call_timeout=60``).

    Sizes are whole numbers >= 1 (the adapter checks min <= max); timeouts are seconds > 0, and
    ``call_timeout=none`` lifts the per-call deadline. A bad value names the option and the fix.
    """
    found: dict[str, int | float | None] = {}
    for name in PG_ADAPTER_OPTIONS:
        raw = url.options.get(name)
        if raw is None:
            continue
        if name == "call_timeout" and raw.lower() == "none":
            found[name] = None
            continue
        size = name.endswith("_size")
        try:
            value: int | float = int(raw) if size else float(raw)
        except ValueError:
            value = 0
        if (size and value < 1) or (not size and not 0 < value < float("inf")):
            kind = "a whole number >= 1" if size else "a number of seconds > 0"
            extra = " (or none for no limit)" if name == "call_timeout" else ""
            raise ConfigError(f"{name}={raw!r} in {url.redacted!r} must be {kind}{extra}")
        found[name] = value
    return found


def parse_bool(name: str, value: str, *, fix: str = "") -> bool:
    """A strict boolean: true/false, 1/0, yes/no, on/off (any case); anything else is a ``ConfigError``."""
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean; write {name}=true or {name}=false{fix}")


def parse_url(url: str) -> DatabaseURL:
    """Read a remote database URL (grammar in the module docstring); every mistake is a ``ConfigError``."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"not a database URL: {redact(url)!r}; write SCHEME://HOST:PORT, e.g. qdrant://localhost:6333")
    scheme = url.split("://", 1)[0].lower()
    engine = _BY_SCHEME.get(scheme)
    shown = redact(url)
    if engine is None:
        raise ConfigError(f"unknown database URL scheme {scheme!r} in {shown!r}; known: {', '.join(sorted(_BY_SCHEME))}")
    parts = urlsplit(url)
    netloc = parts.netloc
    info, at, hostport = netloc.rpartition("@")
    if at and _BAD_ESCAPE.search(info):
        raise ConfigError(f"the credentials in {shown!r} hold a '%' that is not a %XX escape; percent-encode "
                          "special characters, e.g. urllib.parse.quote(password, safe='')")
    if parts.fragment:
        raise ConfigError(f"{shown!r} has a '#' fragment; a '#' in a password must be written %23")
    pairs = _query_pairs(parts.query, shown)
    options = dict(pairs)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError as exc:
        if engine.credential != "libpq":  # libpq also reads multi-host lists (h1:5432,h2:5433)
            raise ConfigError(f"bad port in {shown!r} ({exc}); write HOST:PORT with PORT in 1-65535") from exc
        port = None
    if port == 0:
        raise ConfigError(f"port 0 in {shown!r} is not a port; write HOST:PORT with PORT in 1-65535")
    user = unquote(info.partition(":")[0]) if at else None
    password = unquote(info.partition(":")[2]) if at and ":" in info else None
    if engine.credential == "libpq":
        return _postgres(engine, scheme, url, shown, host, port, user, password, options)
    if not host:
        raise ConfigError(f"{shown!r} names no host; write {scheme}://HOST:PORT")
    database = _database(engine, parts.path, shown)
    tls = _tls(engine, scheme, options, shown)
    for name, value in options.items():
        if name in _TLS_OPTIONS:
            continue
        check = engine.options.get(name)
        if check is None:
            raise ConfigError(_unknown_option(engine, name, shown))
        check(name, value)
    user, password, api_key = _credentials(engine, user or None, password or None, shown)
    for secret in (password, api_key):
        remember_secret(secret)
    if (password or api_key) and not tls and not _is_loopback(host):
        logger.warning("%s credentials go to %s without TLS (readable on the network); use %s:// or ?tls=true",
                       engine.label, host, engine.tls_schemes[0] if engine.tls_schemes else scheme)
    port = port or (engine.tls_port if tls and engine.tls_port else engine.default_port)
    return DatabaseURL(engine.name, scheme, host, port, tls, user, password, api_key, database,
                       MappingProxyType({k: v for k, v in options.items() if k not in _TLS_OPTIONS}), url)


def _query_pairs(query: str, shown: str) -> list[tuple[str, str]]:
    """``a=1&b=2`` percent-decoded the way libpq reads it ('+' stays '+'); a repeated name is an error."""
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in query.split("&"):
        if not item:
            continue
        name, eq, value = item.partition("=")
        name = unquote(name)
        if not eq:
            raise ConfigError(f"option {name!r} in {shown!r} has no value; write {name}=VALUE")
        if name in seen:
            raise ConfigError(f"option {name!r} appears twice in {shown!r}; keep one")
        seen.add(name)
        pairs.append((name, unquote(value)))
    return pairs


def _tls(engine: Engine, scheme: str, options: Mapping[str, str], shown: str) -> bool:
    by_scheme = scheme in engine.tls_schemes
    fix = f", or use {engine.tls_schemes[0]}:// for TLS" if engine.tls_schemes else ""
    given = [parse_bool(name, options[name], fix=fix) for name in _TLS_OPTIONS if name in options]
    if len(set(given)) > 1:
        raise ConfigError(f"tls= and https= disagree in {shown!r}; keep tls= only")
    if by_scheme and given and not given[0]:
        raise ConfigError(f"{scheme}:// means TLS but {shown!r} says tls=false; use "
                          f"{engine.schemes[0]}:// for a plain connection")
    return by_scheme or bool(given and given[0])


def _database(engine: Engine, path: str, shown: str) -> str | None:
    name = unquote(path.strip("/"))
    if not name:
        return None
    if not engine.database or "/" in name:
        raise ConfigError(f"{engine.label} URLs take no path, got {path!r} in {shown!r}; write "
                          f"{engine.schemes[0]}://HOST:PORT" + ("/DATABASE" if engine.database else ""))
    return name


def _credentials(engine: Engine, user: str | None, password: str | None,
                 shown: str) -> tuple[str | None, str | None, str | None]:
    """(user, password, api key or token) for a non-PostgreSQL engine, URL first, then the environment."""
    env = (os.environ.get(engine.env) or None) if engine.env else None
    if engine.credential == "api_key":
        if user:
            raise ConfigError(f"{engine.label} has no user names; write the API key after a colon: "
                              f"{engine.schemes[0]}://:API_KEY@HOST (got a user part in {shown!r}), or set {engine.env}")
        return None, None, password or env
    if user and not password:
        raise ConfigError(f"{engine.label} credentials are USER:PASSWORD@ or :TOKEN@; {shown!r} has a user "
                          f"without a password; or set {engine.env}")
    if user and password:
        return user, password, None
    return None, None, password or env


def _postgres(engine: Engine, scheme: str, url: str, shown: str, host: str, port: int | None,
              user: str | None, password: str | None, options: Mapping[str, str]) -> DatabaseURL:
    """PostgreSQL: libpq reads the rest itself (PGPASSWORD, ~/.pgpass, its own options); only TLS is ours."""
    sslmode = options.get("sslmode")
    tls_given = [name for name in _TLS_OPTIONS if name in options]
    if sslmode is not None and sslmode not in _SSLMODES:
        raise ConfigError(f"sslmode={sslmode!r} in {shown!r} is not a libpq sslmode; use one of "
                          f"{', '.join(sorted(_SSLMODES))} (require or verify-full for TLS)")
    if tls_given and sslmode is not None:
        raise ConfigError(f"{shown!r} gives both tls= and sslmode=; keep one (sslmode=verify-full also "
                          "checks the server certificate)")
    if tls_given:
        tls = _tls(engine, scheme, options, shown)
    else:
        tls = sslmode in _SSLMODE_SECURE
    for secret in (password, options.get("password")):
        remember_secret(secret)
    return DatabaseURL(engine.name, scheme, host, port or (engine.default_port if host else None), tls,
                       user or None, password, None, None, MappingProxyType(dict(options)), url)


def _unknown_option(engine: Engine, name: str, shown: str) -> str:
    known = ", ".join(sorted({*_TLS_OPTIONS[:1], *engine.options}))
    if _SECRET_OPTION.search(name):
        form = "USER:PASSWORD@ or :TOKEN@" if engine.credential == "token" else ":API_KEY@"
        return (f"{engine.label} URLs take credentials in the user info ({engine.schemes[0]}://{form}HOST), "
                f"not as ?{name}=; or set {engine.env}; in {shown!r}")
    return f"unknown option {name!r} in the {engine.label} URL {shown!r}; known options: {known}"


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
