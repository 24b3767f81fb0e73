"""Readiness fixtures for the real database engines, and markers applied by directory.

Each session fixture (``postgres_url``, ``weaviate_url``, ``milvus_url``, ``qdrant_url``) yields a URL
that ``adapters.connect`` understands, found in this order:

1. ``SDK_TEST_<ENGINE>_URL`` from the environment, when set: an engine somebody started on purpose
   (``eval "$(scripts/engines.sh start)"``, a CI service) wins over anything implicit, so a CI job
   that started docker-compose does not get a second set of containers.
2. A testcontainers container, when a Docker daemon answers (testcontainers raises
   ``docker.errors.DockerException`` from the constructor within milliseconds when none does;
   ``SDK_TEST_NO_DOCKER=1`` skips the probe).
3. The embedded engines need nothing: Milvus Lite in a temporary directory, Qdrant local mode in memory.
   PostgreSQL and Weaviate have no embedded form: the fixture FAILS (it does not skip), saying how
   to start them, because a silently skipped integration suite proves nothing.

Every URL is checked (a real connection) before it is handed out, so a dead engine fails here with
one clear message instead of in every test.
"""

from __future__ import annotations

import importlib
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

# Keep in step with docker-compose.yml.
IMAGES = {
    "postgres": "pgvector/pgvector:pg16",
    "weaviate": "semitechnologies/weaviate:1.39.0",
    "milvus": "milvusdb/milvus:v2.5.26",
    "qdrant": "qdrant/qdrant:v1.20.0",
}
ENV_VARS = {
    "postgres": "SDK_TEST_POSTGRES_URL",
    "weaviate": "SDK_TEST_WEAVIATE_URL",
    "milvus": "SDK_TEST_MILVUS_URL",
    "qdrant": "SDK_TEST_QDRANT_URL",
}
START_HINT = 'start the engines first: eval "$(scripts/engines.sh start)"'

INTEGRATION_DIR = Path(__file__).resolve().parent
# Substring of a test module's name -> marker. Fixture use marks as well (see below).
MODULE_MARKERS = {
    "qdrant": "qdrant",
    "milvus": "milvus",
    "weaviate": "weaviate",
    "pgvector": "pgvector",
    "postgres": "pgvector",
}
FIXTURE_MARKERS = {
    "qdrant_url": "qdrant",
    "milvus_url": "milvus",
    "weaviate_url": "weaviate",
    "postgres_url": "pgvector",
}


# ---------------------------------------------------------------------------------------------
# Markers
# ---------------------------------------------------------------------------------------------
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test below tests/integration ``integration``, and by engine.

    The engine marker comes from the module name (``test_*qdrant*`` ...) or from the engine fixture
    the test uses, so a conformance suite parametrised over engines is marked too. This hook sees
    the whole session's items, hence the directory check.
    """
    for item in items:
        path = Path(str(item.path)).resolve()
        if INTEGRATION_DIR not in path.parents:
            continue
        item.add_marker(pytest.mark.integration)
        wanted: set[str] = set()
        name = path.stem.lower()
        if name.startswith("test_"):
            wanted.update(marker for key, marker in MODULE_MARKERS.items() if key in name)
        wanted.update(
            marker
            for fixture, marker in FIXTURE_MARKERS.items()
            if fixture in getattr(item, "fixturenames", ())
        )
        for marker in sorted(wanted):
            item.add_marker(getattr(pytest.mark, marker))


# ---------------------------------------------------------------------------------------------
# Docker (testcontainers)
# ---------------------------------------------------------------------------------------------
_docker_absent_reason: str | None = None


def _start_container(factory: Callable[[], Any]) -> Any | None:
    """Start a testcontainers container, or return None when no Docker daemon answers."""
    global _docker_absent_reason
    if os.environ.get("SDK_TEST_NO_DOCKER") == "1":
        return None
    if _docker_absent_reason is not None:
        return None
    try:
        from docker.errors import DockerException
    except ImportError:
        _docker_absent_reason = "the docker package is not installed"
        return None
    try:
        container = factory()
    except ImportError as exc:
        _docker_absent_reason = f"testcontainers is not installed ({exc})"
        return None
    except DockerException as exc:
        _docker_absent_reason = f"no Docker daemon answers ({exc.__class__.__name__})"
        return None
    container.start()
    return container


def _container_class(module: str, name: str) -> Any:
    """Recent testcontainers keep the database modules under ``testcontainers.community``; older ones at the top."""
    try:
        return getattr(importlib.import_module(f"testcontainers.community.{module}"), name)
    except ImportError:
        return getattr(importlib.import_module(f"testcontainers.{module}"), name)


def _stop(container: Any | None) -> None:
    if container is not None:
        container.stop()


# ---------------------------------------------------------------------------------------------
# Readiness checks
# ---------------------------------------------------------------------------------------------
def _fail(engine: str, url: str, why: str) -> None:
    pytest.fail(f"{engine} at {url} is not ready: {why}. {START_HINT}", pytrace=False)


def _tcp_check(engine: str, url: str, host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=5):
            pass
    except OSError as exc:
        _fail(engine, url, f"cannot connect to {host}:{port} ({exc})")


def _http_check(engine: str, url: str, probe: str) -> None:
    try:
        with urllib.request.urlopen(probe, timeout=5) as response:
            if response.status >= 300:
                _fail(engine, url, f"GET {probe} answered {response.status}")
    except (urllib.error.URLError, OSError) as exc:
        _fail(engine, url, f"GET {probe} failed ({exc})")


def _require_module(engine: str, module: str, extra: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        pytest.fail(
            f"{engine}: cannot import {module} ({exc}); pip install -c constraints.txt -e '.[{extra}]'",
            pytrace=False,
        )


def check_postgres(url: str) -> None:
    """Connect, make sure the ``vector`` extension exists."""
    _require_module("postgres", "psycopg", "pgvector")
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.Error as exc:
        _fail("postgres", url, f"{exc.__class__.__name__}: {exc}")


def check_weaviate(url: str) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 8080
    grpc_port = int(parse_qs(parts.query).get("grpc", ["50051"])[0])
    _http_check("weaviate", url, f"http://{host}:{port}/v1/.well-known/ready")
    _tcp_check("weaviate", url, host, grpc_port)


def check_milvus(url: str) -> None:
    _require_module("milvus", "pymilvus", "milvus")
    if url.startswith("milvus+lite:"):
        _require_module("milvus", "milvus_lite", "milvus")
        parent = Path(url.removeprefix("milvus+lite:")).parent
        if not parent.is_dir():
            _fail("milvus", url, f"directory {parent} does not exist")
        return
    parts = urlsplit(url)
    _tcp_check("milvus", url, parts.hostname or "127.0.0.1", parts.port or 19530)


def check_qdrant(url: str) -> None:
    _require_module("qdrant", "qdrant_client", "qdrant")
    if url.startswith("qdrant+local:"):
        return
    parts = urlsplit(url)
    _http_check("qdrant", url, f"http://{parts.hostname or '127.0.0.1'}:{parts.port or 6333}/readyz")


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """``postgresql://USER@HOST:PORT/DB`` of a PostgreSQL with pgvector."""
    url = os.environ.get(ENV_VARS["postgres"])
    container = None
    if not url:

        def factory() -> Any:
            return _container_class("postgres", "PostgresContainer")(
                IMAGES["postgres"], username="postgres", password="postgres", dbname="sdk", driver=None
            )

        container = _start_container(factory)
        if container is None:
            pytest.fail(
                f"no PostgreSQL for the pgvector tests: {ENV_VARS['postgres']} is not set and "
                f"{_docker_absent_reason or 'Docker is disabled'}; {START_HINT}",
                pytrace=False,
            )
        url = container.get_connection_url(driver=None)
    try:
        check_postgres(url)
        yield url
    finally:
        _stop(container)


@pytest.fixture(scope="session")
def weaviate_url() -> Iterator[str]:
    """``weaviate://HOST:HTTP_PORT?grpc=GRPC_PORT`` of a Weaviate server."""
    url = os.environ.get(ENV_VARS["weaviate"])
    container = None
    if not url:

        def factory() -> Any:
            return _container_class("weaviate", "WeaviateContainer")(
                IMAGES["weaviate"], env_vars={"ENABLE_MODULES": "", "DISABLE_TELEMETRY": "true"}
            )

        container = _start_container(factory)
        if container is None:
            pytest.fail(
                f"no Weaviate server: {ENV_VARS['weaviate']} is not set and "
                f"{_docker_absent_reason or 'Docker is disabled'}; {START_HINT}",
                pytrace=False,
            )
        host = container.get_container_host_ip()
        url = f"weaviate://{host}:{container.get_exposed_port(8080)}?grpc={container.get_exposed_port(50051)}"
    try:
        check_weaviate(url)
        yield url
    finally:
        _stop(container)


@pytest.fixture(scope="session")
def milvus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``milvus://HOST:PORT`` (server) or ``milvus+lite:PATH`` (Milvus Lite 2.5.1 file)."""
    url = os.environ.get(ENV_VARS["milvus"])
    container = None
    if not url:

        def factory() -> Any:
            return _container_class("milvus", "MilvusContainer")(IMAGES["milvus"])

        container = _start_container(factory)
        if container is not None:
            url = f"milvus://{container.get_container_host_ip()}:{container.get_exposed_port(19530)}"
        else:
            url = f"milvus+lite:{tmp_path_factory.mktemp('milvus') / 'milvus.db'}"
    try:
        check_milvus(url)
        yield url
    finally:
        _stop(container)


@pytest.fixture(scope="session")
def qdrant_url() -> Iterator[str]:
    """``qdrant://HOST:PORT`` (server) or ``qdrant+local::memory:`` / ``qdrant+local:PATH``."""
    url = os.environ.get(ENV_VARS["qdrant"])
    container = None
    if not url:

        def factory() -> Any:
            return _container_class("qdrant", "QdrantContainer")(IMAGES["qdrant"])

        container = _start_container(factory)
        if container is not None:
            url = f"qdrant://{container.get_container_host_ip()}:{container.exposed_rest_port}"
        else:
            url = "qdrant+local::memory:"
    try:
        check_qdrant(url)
        yield url
    finally:
        _stop(container)
