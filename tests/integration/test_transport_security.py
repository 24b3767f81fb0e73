"""TLS and passwords against a real PostgreSQL (issue 16, findings 5 and 6).

A throwaway cluster is started for this module: TLS on (a self-signed certificate made with
``openssl``), ``password_encryption = scram-sha-256`` and a ``pg_hba.conf`` that accepts TCP only
as ``hostssl ... scram-sha-256``, so a test that connects at all has used TLS and a password.
Then the SDK connects with ``postgresql://USER:PASSWORD@HOST:PORT/DB?sslmode=require`` (and the
grammar's ``?tls=true``), writes and queries; a wrong password must fail with an ``SDKError``
whose message, and the CLI's output, never show the password.

Needs the PostgreSQL server binaries (``/usr/lib/postgresql/<major>/bin``, as scripts/engines.sh
installs them) with pgvector and ``openssl``; skipped only when those are absent.
"""

from __future__ import annotations

import contextlib
import io
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

import sdk
from sdk.core.errors import AdapterError, SDKError, TransientAdapterError
from sdk.core.similarity import Similarity
from sdk.core.spec import CollectionSpec, DenseField
from sdk.core.types import HybridQuery, Record
from sdk.core.urls import parse_url

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (the pgvector extra)")
pytestmark = pytest.mark.pgvector

PASSWORD = "Tls-p@ss w%rd-7781"  # '@', ' ' and '%' must be percent-encoded in the URL
WRONG = "Wrong-p@ss-5519"
USER = "forge_tls"
DB = "forge_tls"


def _pg_bin() -> Path | None:
    for major in ("17", "16", "15", "14"):
        path = Path(f"/usr/lib/postgresql/{major}/bin")
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            return path
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and shutil.which("initdb") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Cluster:
    port: int
    superuser_password: str

    def url(self, password: str = PASSWORD, query: str = "sslmode=require", user: str = USER) -> str:
        return f"postgresql://{user}:{quote(password, safe='')}@127.0.0.1:{self.port}/{DB}?{query}"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A fresh TLS-only, scram-only PostgreSQL on a free port; stopped and deleted afterwards."""
    bin_dir = _pg_bin()
    if bin_dir is None or shutil.which("openssl") is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) or openssl are not installed; "
                    "scripts/engines.sh start postgres installs them")
    as_root = os.geteuid() == 0
    if as_root:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' OS user to own the cluster")
    base = Path(tempfile.mkdtemp(prefix="rf-tls-pg-", dir="/tmp"))
    data, log = base / "data", base / "server.log"

    def run(*cmd: str) -> None:
        full = ["runuser", "-u", "postgres", "--", *cmd] if as_root else list(cmd)
        done = subprocess.run(full, capture_output=True, text=True, timeout=120)
        if done.returncode:
            tail = log.read_text()[-2000:] if log.is_file() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stdout}{done.stderr}\n{tail}")

    superuser_password = uuid.uuid4().hex
    (base / "pwfile").write_text(superuser_password + "\n")
    if as_root:
        for path in (base, base / "pwfile"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(base / "pwfile"),
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
            "-keyout", str(data / "server.key"), "-out", str(data / "server.crt"))
        os.chmod(data / "server.key", 0o600)
        (data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"  # no plain 'host' line: TCP without TLS is refused
        )
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{base}'\n"
                       "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                       "password_encryption = 'scram-sha-256'\nfsync = off\nmax_connections = 50\n")
        if as_root:
            for path in (data / "pg_hba.conf", data / "postgresql.conf", data / "server.key", data / "server.crt"):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start")
        admin = f"postgresql://postgres:{superuser_password}@127.0.0.1:{port}/postgres?sslmode=require"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(USER), psycopg.sql.Literal(PASSWORD)))
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {} OWNER {}").format(
                psycopg.sql.Identifier(DB), psycopg.sql.Identifier(USER)))
        with psycopg.connect(admin.replace("/postgres?", f"/{DB}?"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")  # the role need not be a superuser
        yield Cluster(port, superuser_password)
    finally:
        if (data / "postmaster.pid").is_file():
            with contextlib.suppress(Exception):
                run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def _round_trip(url: str) -> None:
    """Create a collection, write three records and find the nearest one, through ``sdk.connect``."""
    name = f"tls_{uuid.uuid4().hex[:8]}"
    spec = CollectionSpec(name, dense=(DenseField("dense", 4, Similarity.COSINE, "float32"),))
    vectors = np.eye(4, dtype=np.float32)
    with sdk.connect(url) as store:
        store.ensure_collection(spec)
        store.upsert(name, [Record(f"doc{i}", {"dense": vectors[i]}, text=f"text {i}") for i in range(3)])
        hits = store.query(name, HybridQuery(dense=vectors[1], limit=2))
        assert hits[0].id == "doc1"
        assert store.count(name) == 3
        store.drop(name)


@pytest.mark.parametrize("query", ["sslmode=require", "tls=true&connect_timeout=10"])
def test_password_over_tls_round_trip(cluster: Cluster, query: str) -> None:
    """The password in the URL (percent-encoded) and TLS reach libpq: the server takes TCP only over
    TLS with scram, so a write and a query prove both were used. ``?tls=true`` (the grammar every
    engine reads) is sslmode=require here; libpq alone refuses it as an unknown option."""
    _round_trip(cluster.url(query=query))
    with psycopg.connect(parse_url(cluster.url(query=query)).conninfo(), autocommit=True) as conn:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row == (True,)


def test_plain_connection_is_refused_by_the_server(cluster: Cluster) -> None:
    """The fixture really enforces TLS: ``tls=false`` (sslmode=disable) finds no pg_hba line, and
    the error says so and names the fix, at once (a refusal is not retried)."""
    with sdk.connect(cluster.url(query="tls=false&connect_timeout=10")) as store, \
            pytest.raises(AdapterError, match=r"pg_hba.conf has no line .*sslmode=require") as info:
        store.count("anything")
    assert not isinstance(info.value, TransientAdapterError)


def test_wrong_password_error_never_shows_it(cluster: Cluster) -> None:
    """A refused password is an AdapterError naming the problem and the fix, raised without retries;
    neither password (raw or URL-encoded) appears in its message or repr."""
    url = cluster.url(password=WRONG)
    with pytest.raises(SDKError) as info, sdk.connect(url) as store:
        store.count("anything")
    err = info.value
    assert isinstance(err, AdapterError) and not isinstance(err, TransientAdapterError)  # a retry cannot cure it
    text = str(err)
    assert "password authentication failed" in text and "check the user and password" in text
    for secret in (WRONG, quote(WRONG, safe=""), PASSWORD, quote(PASSWORD, safe="")):
        assert secret not in text
        assert secret not in repr(err)


def test_cli_output_never_shows_the_password(cluster: Cluster, tmp_path: Path) -> None:
    """``sdk sync status`` with a PostgreSQL store and ledger: with a wrong password the one-line error
    hides it (the ledger's message used to repeat the whole URL); with the right one the JSON
    report's ``ledger`` names the database without the password."""
    from sdk.cli.main import main

    for password in (WRONG, PASSWORD):
        url = cluster.url(password=password)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["sync", "status", "--store", url, "--collection", "docs", "--ledger", url, "--json"])
        printed = out.getvalue() + err.getvalue()
        for secret in (password, quote(password, safe="")):
            assert secret not in printed, printed
        if password == WRONG:
            assert code == 1 and printed.startswith("error: ") and f"{USER}:***@" in printed
        else:
            assert code == 0, printed


def test_ledger_and_feedback_store_hide_the_password(cluster: Cluster) -> None:
    """Objects that keep a URL for their messages (the sync ledger, the feedback store) keep it
    redacted: ``where`` and ``repr`` show ``USER:***@``."""
    from sdk.feedback import open_feedback_store
    from sdk.sync.ledger import Ledger, ledger_key

    url = cluster.url(query="tls=true")
    with Ledger.open(url, key=ledger_key(url, "docs")) as book:
        assert PASSWORD not in book.where and quote(PASSWORD, safe="") not in book.where
        assert f"{USER}:***@" in book.where
    store = open_feedback_store(f"{url}&table_prefix=fb_{uuid.uuid4().hex[:6]}")
    try:
        for text in (store.where, repr(store)):
            assert quote(PASSWORD, safe="") not in text and f"{USER}:***@" in text
    finally:
        store.close()
    # a password change keeps the ledger: its key is computed without the credentials
    assert ledger_key(url, "docs") == ledger_key(cluster.url(password="another-one", query="tls=true"), "docs")
