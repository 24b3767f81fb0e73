"""One URL grammar for every remote engine, and secrets that never reach a message (issue 16, findings 5, 6).

``sdk.core.urls.parse_url`` reads TLS, credentials and options the same way for Qdrant, Milvus,
Weaviate and PostgreSQL; ``redact`` hides passwords, tokens and keys in any text. The adapter
checks build the real client objects (or, where the client connects while it is built, inspect
the arguments the adapter computes) without a server. The PostgreSQL half with a real TLS server
is tests/integration/test_transport_security.py.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
from urllib.parse import quote

import pytest

from sdk.core.errors import AdapterError, ConfigError, SDKError
from sdk.core.redaction import MASK, redact, remember_secret
from sdk.core.urls import ENGINES, parse_bool, parse_url

ENV_VARS = ("QDRANT_API_KEY", "MILVUS_TOKEN", "WEAVIATE_API_KEY", "PGPASSWORD")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


# ---- the grammar, engine by engine ----------------------------------------------------------------
@pytest.mark.parametrize(("url", "engine", "host", "port", "tls"), [
    ("qdrant://db.example:6333", "qdrant", "db.example", 6333, False),
    ("qdrant://db.example", "qdrant", "db.example", 6333, False),
    ("qdrants://db.example", "qdrant", "db.example", 6333, True),
    ("qdrant://db.example:7000?tls=true", "qdrant", "db.example", 7000, True),
    ("qdrant://db.example?https=1", "qdrant", "db.example", 6333, True),  # the older spelling still works
    ("milvus://db.example", "milvus", "db.example", 19530, False),
    ("milvuss://db.example:443", "milvus", "db.example", 443, True),
    ("milvus://db.example?tls=on", "milvus", "db.example", 19530, True),
    ("weaviate://db.example:8080?grpc=50051", "weaviate", "db.example", 8080, False),
    ("weaviates://db.example", "weaviate", "db.example", 443, True),
    ("weaviate://db.example?tls=yes&grpc=443", "weaviate", "db.example", 443, True),
    ("postgresql://u@db.example/sdk", "postgresql", "db.example", 5432, False),
    ("postgres://u@db.example:6543/sdk?sslmode=verify-full", "postgresql", "db.example", 6543, True),
    ("postgresql://u@db.example/sdk?sslmode=prefer", "postgresql", "db.example", 5432, False),  # not guaranteed
    ("postgresql://u@db.example/sdk?tls=true", "postgresql", "db.example", 5432, True),
    ("qdrant://[::1]:6333?tls=1", "qdrant", "::1", 6333, True),
])
def test_grammar_per_engine(url: str, engine: str, host: str, port: int, tls: bool) -> None:
    parsed = parse_url(url)
    assert (parsed.engine, parsed.host, parsed.port, parsed.tls) == (engine, host, port, tls)


def test_http_url_follows_tls() -> None:
    assert parse_url("qdrants://h:1234").http_url == "https://h:1234"
    assert parse_url("qdrant://h:1234?tls=false").http_url == "http://h:1234"
    assert parse_url("milvus://[::1]?tls=1").http_url == "https://[::1]:19530"


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", "on", "On"])
def test_tls_true_spellings(value: str) -> None:
    assert parse_url(f"qdrant://h?tls={value}").tls is True
    assert parse_bool("tls", value) is True


@pytest.mark.parametrize("value", ["false", "0", "no", "off", "False"])
def test_tls_false_spellings(value: str) -> None:
    assert parse_url(f"qdrant://h?tls={value}").tls is False


@pytest.mark.parametrize("url", [
    "qdrant://h?tls=maybe", "qdrant://h?tls=", "qdrant://h?tls=10", "qdrant://h?tls=enabled",
    "milvus://h?tls=tru", "weaviate://h?tls=2", "postgresql://u@h/db?tls=sure",
])
def test_tls_rejects_anything_but_a_boolean(url: str) -> None:
    """The old substring test took ``tls=10`` as TLS and ``tls=true`` as plain; now only booleans pass."""
    with pytest.raises(ConfigError, match=r"not a boolean; write tls=true or tls=false"):
        parse_url(url)


def test_tls_contradictions_are_refused() -> None:
    with pytest.raises(ConfigError, match="qdrants:// means TLS .* use qdrant:// for a plain connection"):
        parse_url("qdrants://h?tls=false")
    with pytest.raises(ConfigError, match="tls= and https= disagree"):
        parse_url("qdrant://h?tls=1&https=0")
    with pytest.raises(ConfigError, match="both tls= and sslmode=; keep one"):
        parse_url("postgresql://u@h/db?tls=true&sslmode=require")
    with pytest.raises(ConfigError, match="not a libpq sslmode; use one of"):
        parse_url("postgresql://u@h/db?sslmode=always")


@pytest.mark.parametrize(("url", "fix"), [
    ("qdrant://h?timeout=5", r"unknown option 'timeout' .* known options: tls"),
    ("weaviate://h?grcp=50051", r"unknown option 'grcp' .* known options: grpc, grpc_host, tls"),
    ("weaviate://h?grpc_host=a/b", r"grpc_host= must be a host name"),
    ("weaviate://h?grpc=fifty", r"grpc= must be a port number"),
    ("qdrant://h?api_key=abcdef123", r"credentials in the user info \(qdrant://:API_KEY@HOST\).*QDRANT_API_KEY"),
    ("milvus://h?token=abcdef123", r"USER:PASSWORD@ or :TOKEN@"),
    ("qdrant://h?tls=1&tls=1", r"appears twice"),
    ("qdrant://h?tls", r"has no value; write tls=VALUE"),
    ("qdrant://h/collection", r"Qdrant URLs take no path"),
    ("milvus://h/db/extra", r"Milvus URLs take no path.*HOST:PORT/DATABASE"),
    ("qdrant://h:99999", r"bad port"),
    ("qdrant://h:0", r"port 0"),
    ("qdrant://:6333", r"names no host"),
    ("qdrant://user@h", r"Qdrant has no user names; write the API key after a colon"),
    ("weaviate://admin:key12345@h", r"Weaviate has no user names"),
    ("milvus://root@h", r"user without a password"),
    ("qdrant://:ke%zzy@h", r"not a %XX escape; percent-encode"),
    ("qdrant://:key@h#frag", r"'#' in a password must be written %23"),
    ("redis://h", r"unknown database URL scheme 'redis'"),
    ("not a url", r"not a database URL"),
])
def test_bad_urls_name_the_fix(url: str, fix: str) -> None:
    """Nothing is silently ignored: every option, credential and path either means something or fails."""
    with pytest.raises(ConfigError, match=fix):
        parse_url(url)


# ---- credentials: the URL, else the environment ---------------------------------------------------
def test_credentials_from_the_url() -> None:
    assert parse_url("qdrant://:qk-123456@h").api_key == "qk-123456"
    assert parse_url("weaviates://:wk-123456@h").api_key == "wk-123456"
    milvus = parse_url("milvus://root:Mil%40vus@h/analytics")
    assert (milvus.user, milvus.password, milvus.token, milvus.database) == ("root", "Mil@vus", "root:Mil@vus",
                                                                             "analytics")
    assert parse_url("milvus://:zilliz-token-1@h").token == "zilliz-token-1"
    pg = parse_url("postgresql://app:p%40ss%20word@h:5433/sdk")
    assert (pg.user, pg.password, pg.port) == ("app", "p@ss word", 5433)


def test_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDRANT_API_KEY", "env-qdrant-key")
    monkeypatch.setenv("MILVUS_TOKEN", "root:env-milvus")
    monkeypatch.setenv("WEAVIATE_API_KEY", "env-weaviate-key")
    assert parse_url("qdrant://h").api_key == "env-qdrant-key"
    assert parse_url("milvus://h").token == "root:env-milvus"
    assert parse_url("weaviate://h").api_key == "env-weaviate-key"
    # the URL wins over the environment
    assert parse_url("qdrant://:url-key-1@h").api_key == "url-key-1"
    assert parse_url("milvus://u:url-pass@h").token == "u:url-pass"
    monkeypatch.setenv("QDRANT_API_KEY", "")
    assert parse_url("qdrant://h").api_key is None  # empty means unset


def test_postgres_leaves_libpq_its_own_settings() -> None:
    """PGPASSWORD, ~/.pgpass, multi-host lists, Unix sockets and every libpq option pass through."""
    assert parse_url("postgresql:///sdk?host=/var/run/postgresql").conninfo() == \
        "postgresql:///sdk?host=/var/run/postgresql"
    multi = "postgres://u@h1:5432,h2:5433/sdk?target_session_attrs=read-write&options=-c%20x%3Dy"
    assert parse_url(multi).conninfo() == multi
    assert parse_url("postgresql://u@h/sdk?tls=true&connect_timeout=3").conninfo() == \
        "postgresql://u@h/sdk?connect_timeout=3&sslmode=require"
    assert parse_url("postgresql://u@h/sdk?tls=false").conninfo() == "postgresql://u@h/sdk?sslmode=disable"


def test_postgres_pool_options_are_the_adapters_and_never_reach_libpq() -> None:
    from sdk.core.urls import pg_adapter_options

    url = parse_url("postgresql://u:pw@h/sdk?pool_max_size=20&connect_timeout=3&pool_timeout=2.5&call_timeout=none")
    assert pg_adapter_options(url) == {"pool_max_size": 20, "pool_timeout": 2.5, "call_timeout": None}
    assert url.conninfo() == "postgresql://u:pw@h/sdk?connect_timeout=3"
    assert pg_adapter_options(parse_url("postgresql://h/sdk?pool_min_size=2&call_timeout=60")) == \
        {"pool_min_size": 2, "call_timeout": 60.0}
    for bad in ("pool_max_size=0", "pool_max_size=2.5", "pool_timeout=-1", "pool_timeout=inf", "call_timeout=x",
                "pool_min_size="):
        with pytest.raises(ConfigError, match=bad.split("=")[0]) as exc:
            pg_adapter_options(parse_url(f"postgresql://u:s3cret@h/sdk?{bad}"))
        assert "s3cret" not in str(exc.value)


def test_secrets_sent_in_clear_are_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sdk.core.urls"):
        parse_url("qdrant://:clear-key-1@db.example")
        parse_url("qdrant://:clear-key-1@127.0.0.1")  # loopback: nothing on the network
        parse_url("qdrants://:clear-key-1@db.example")
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "without TLS" in warned[0] and "qdrants://" in warned[0]
    assert "clear-key-1" not in warned[0]


def test_every_tls_scheme_is_an_installed_entry_point() -> None:
    """``connect("weaviates://...")`` and friends find their adapter (pyproject.toml entry points)."""
    from sdk.core.registry import schemes

    grammar = {s for e in ENGINES.values() for s in (*e.schemes, *e.tls_schemes)}
    assert {"qdrants", "milvuss", "weaviates"} <= grammar
    assert grammar <= set(schemes()), "reinstall: .venv/bin/pip install -e . --no-deps"


# ---- redact ---------------------------------------------------------------------------------------
SECRETS = ["hunter2-secret", "p@ss:w/rd?#&=", "ümlaut-Päss", "tok.en_with-~chars", "a" * 40, "sp ace'quote\""]
SHAPES = [
    "postgresql://app:{enc}@db.example:5432/sdk",
    "postgres://app:{enc}@db.example/sdk?sslmode=require",
    "postgresql://app:{enc}@db.example:5432,db2.example:5433/sdk",
    "qdrant://:{enc}@db.example:6333?tls=true",
    "qdrants://{enc}@db.example",
    "milvus://root:{enc}@db.example:19530/db",
    "milvuss://:{enc}@db.example",
    "weaviates://:{enc}@db.example?grpc=443",
    "https://user:{enc}@proxy.example/path",
    "postgresql://db.example/sdk?password={enc}",
    "postgresql://db.example/sdk?user=app&password={enc}&sslmode=require",
    "qdrant://db.example?api_key={enc}",
    "http://h/x?token={enc}&access_token={enc}",
]
CONNINFO = [
    "host=db.example port=5432 user=app password={raw}",
    "host=db.example password='{quoted}' dbname=sdk",
    "host=db.example sslpassword={raw} sslmode=require",
    "{{'user': 'app', 'password': '{py}'}}",
    '{{"api_key": "{js}"}}',
    "Authorization: Bearer {raw}",
    "headers: api-key: {raw}",
    "x-api-key: {raw}",
]


def _no_space(s: str) -> str:
    return s.replace(" ", "_").replace("'", "_").replace('"', "_")


@pytest.mark.parametrize(("shape", "secret"), list(itertools.product(SHAPES, SECRETS)))
def test_redact_never_leaks_a_url_secret(shape: str, secret: str) -> None:
    enc = quote(secret, safe="")
    url = shape.format(enc=enc)
    for text in (url, f"connecting to {url} failed", f"error: {url!r}", f"({url})"):
        out = redact(text)
        assert enc not in out and secret not in out, out
        assert MASK in out
        assert redact(out) == out  # idempotent
    assert "db.example" in redact(url) or "proxy.example" in redact(url) or "h/x" in redact(url)


@pytest.mark.parametrize(("shape", "secret"), list(itertools.product(CONNINFO, SECRETS)))
def test_redact_never_leaks_a_conninfo_or_header_secret(shape: str, secret: str) -> None:
    raw = _no_space(secret).replace("&", "_").replace(",", "_").replace(";", "_")
    quoted = secret.replace("\\", "\\\\").replace("'", "\\'")
    text = shape.format(raw=raw, quoted=quoted, py=secret.replace("'", "\\'"), js=secret.replace('"', '\\"'))
    out = redact(text)
    for fragment in {raw, quoted, secret.replace("'", "\\'"), secret.replace('"', '\\"')}:
        assert fragment not in out, out


def test_redact_keeps_what_is_not_secret() -> None:
    assert redact("postgresql://postgres@127.0.0.1:5432/sdk") == "postgresql://postgres@127.0.0.1:5432/sdk"
    assert redact("qdrant+local:./data") == "qdrant+local:./data"
    assert redact("postgresql://app:pw@h/db") == f"postgresql://app:{MASK}@h/db"
    assert redact("weaviate://127.0.0.1:8080?grpc=50051") == "weaviate://127.0.0.1:8080?grpc=50051"
    assert redact("TokenChunker(max_tokens=256, overlap=32)") == "TokenChunker(max_tokens=256, overlap=32)"
    assert redact("basic authentication failed") == "basic authentication failed"
    assert redact(None) == "None"


def test_redact_hides_secrets_it_was_told_about_and_env_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """A driver that quotes the token in its own words is still cleaned (literal match)."""
    remember_secret("remembered-token-123")
    assert redact("server said: bad token remembered-token-123.") == f"server said: bad token {MASK}."
    monkeypatch.setenv("MILVUS_TOKEN", "root:env-token-456")
    assert "env-token-456" not in redact("auth root:env-token-456 refused")
    parse_url("qdrant://:parsed-key-789@h")  # parsing remembers what it will send
    assert redact("header parsed-key-789") == f"header {MASK}"


def test_database_url_repr_and_str_hide_secrets() -> None:
    parsed = parse_url("milvus://root:s3cret-pass@h/db")
    for text in (repr(parsed), str(parsed), f"{parsed}", parsed.redacted):
        assert "s3cret-pass" not in text and "root:***@h" in text


def test_sdk_errors_never_show_a_secret() -> None:
    """Whoever builds an SDKError (adapter, driver text, registry), its message is redacted."""
    err = AdapterError("connecting to postgresql://app:hunter2x@h/db failed: password=hunter2x")
    assert "hunter2x" not in str(err) and "hunter2x" not in repr(err)
    assert "app:***@h" in str(err)
    assert isinstance(ConfigError("x"), SDKError)


def test_config_errors_from_parsing_never_show_the_secret() -> None:
    for url in ("qdrant://:bad-key-1234@h?tls=maybe", "qdrant://admin:bad-key-1234@h",
                "milvus://root:bad-key-1234@h?unknown=1", "postgresql://u:bad-key-1234@h/db?sslmode=x",
                "weaviate://:bad-key-1234@h/path", "qdrant://:bad-key-1234@h:99999"):
        with pytest.raises(ConfigError) as info:
            parse_url(url)
        assert "bad-key-1234" not in str(info.value), str(info.value)


def test_registry_errors_hide_the_secret() -> None:
    from sdk.core.registry import connect

    with pytest.raises(ConfigError) as info:
        connect("redis://default:redis-pass-99@cache.example:6379")
    assert "redis-pass-99" not in str(info.value) and "default:***@" in str(info.value)


@pytest.mark.parametrize("store", [
    "redis://default:cli-secret-77@cache.example:6379",  # unknown scheme: the registry's message
    "qdrant://:cli-secret-77@db.example?tls=maybe",      # bad TLS value: the grammar's message
    "qdrant://admin:cli-secret-77@db.example",           # a user part Qdrant cannot use
])
def test_cli_error_line_hides_the_secret(store: str) -> None:
    """``sdk search --store URL``: the one-line error names the problem without the secret."""
    from sdk.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["search", "q", "--store", store, "--collection", "docs"])
    printed = out.getvalue() + err.getvalue()
    assert code == 1 and printed.startswith("error: ")
    assert "cli-secret-77" not in printed, printed


# ---- adapters: what the real clients are given -----------------------------------------------------
def test_qdrant_client_uses_https_and_the_api_key() -> None:
    pytest.importorskip("qdrant_client")
    from qdrant_client import QdrantClient

    from adapters.qdrant.adapter import client_options

    opts = client_options("qdrants://:qd-key-123456@db.example")
    assert opts == {"url": "https://db.example:6333", "api_key": "qd-key-123456"}
    client = QdrantClient(**opts, check_compatibility=False)  # building it sends nothing
    try:
        remote = client._client
        assert remote.rest_uri == "https://db.example:6333" and remote._https is True
        assert remote._rest_headers["api-key"] == "qd-key-123456"
    finally:
        client.close()
    plain = client_options("qdrant://db.example:6333")
    assert plain == {"url": "http://db.example:6333", "api_key": None}
    assert client_options("qdrant+local::memory:") == {"location": ":memory:"}
    with pytest.raises(ConfigError, match="not a Qdrant URL"):
        client_options("milvus://db.example")


def test_milvus_client_uses_tls_and_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """``MilvusClient`` connects while it is built: the channel's readiness wait is the only thing
    skipped, so the real handler shows the secure channel and the authorization header."""
    pytest.importorskip("pymilvus")
    from pymilvus import MilvusClient
    from pymilvus.client.grpc_handler import GrpcHandler

    from adapters.milvus.adapter import client_options

    opts = client_options("milvuss://root:Mil%40vus-1@db.example/analytics")
    assert opts == {"uri": "https://db.example:19530", "token": "root:Mil@vus-1", "db_name": "analytics"}
    assert client_options("milvus://:tok-1234567@db.example?tls=true")["uri"].startswith("https://")
    monkeypatch.setenv("MILVUS_TOKEN", "env-tok-99")
    assert client_options("milvus://db.example") == {"uri": "http://db.example:19530", "token": "env-tok-99"}
    assert client_options("milvus+lite:/tmp/x.db") == {"uri": "/tmp/x.db"}

    monkeypatch.setattr(GrpcHandler, "_wait_for_channel_ready", lambda self, *a, **k: None)
    client = MilvusClient(**opts)
    try:
        handler = client._get_connection()
        assert handler._secure is True and handler._address == "db.example:19530"
        assert handler._authorization_interceptor is not None
    finally:
        client.close()


def test_weaviate_client_uses_tls_and_the_api_key() -> None:
    weaviate = pytest.importorskip("weaviate")
    from weaviate.connect import ConnectionParams

    from adapters.weaviate.adapter import client_options

    opts = client_options("weaviates://:wv-key-123456@db.example?grpc=443&grpc_host=grpc-db.example")
    assert (opts["http_secure"], opts["grpc_secure"], opts["http_port"], opts["grpc_port"]) == (True, True, 443, 443)
    assert (opts["http_host"], opts["grpc_host"]) == ("db.example", "grpc-db.example")
    assert opts["auth_credentials"].api_key == "wv-key-123456"
    params = ConnectionParams.from_params(**{k: v for k, v in opts.items() if k != "auth_credentials"})
    client = weaviate.WeaviateClient(connection_params=params, auth_client_secret=opts["auth_credentials"],
                                     skip_init_checks=True)  # not connected: nothing is sent
    assert client._connection.url == "https://db.example:443"
    plain = client_options("weaviate://127.0.0.1:8080?grpc=50051")
    assert (plain["http_secure"], plain["grpc_secure"], plain["auth_credentials"]) == (False, False, None)
    assert client_options("weaviates://db.example")["grpc_port"] == 50051  # HTTP on 443 by default
    with pytest.raises(ConfigError, match="set grpc=PORT or grpc_host=HOST"):
        client_options("weaviates://db.example?grpc=443")


def test_pgvector_adapter_spells_tls_for_libpq() -> None:
    pytest.importorskip("psycopg")
    from adapters.pgvector import PgvectorAdapter

    adapter = PgvectorAdapter.from_url("postgresql://app:pg-pass-1234@db.example/sdk?tls=true")
    assert adapter._conninfo == "postgresql://app:pg-pass-1234@db.example/sdk?sslmode=require"
    assert "pg-pass-1234" not in repr(adapter)
    with pytest.raises(ConfigError, match="not a boolean"):
        PgvectorAdapter.from_url("postgresql://app@db.example/sdk?tls=si")


def test_feedback_and_ledger_urls_are_redacted(tmp_path: object) -> None:
    from sdk.feedback import open_feedback_store
    from sdk.sync.ledger import ledger_key

    with pytest.raises(ConfigError) as info:
        open_feedback_store("mysql://app:fb-pass-1234@db.example/fb")
    assert "fb-pass-1234" not in str(info.value)
    # the ledger's file name does not depend on (or derive from) the password
    assert ledger_key("postgresql://app:one-1234@h/db", "docs") == ledger_key("postgresql://app:two-5678@h/db", "docs")
    assert ledger_key("qdrant+local:/data", "docs") == ledger_key("qdrant+local:/data", "docs")
