"""Network faults between the SDK and PostgreSQL / Weaviate, injected by a real proxy (Toxiproxy).

Every port the SDK talks to (PostgreSQL's, Weaviate's HTTP and gRPC) goes through a Toxiproxy
proxy; the SDK connects to the proxy's URL and the tests add toxics while upserts, queries and
``sdk sync`` runs are under way. A toxic is added right before the first store call of the
phase under test (a spy on the adapter's hook), so the fault always meets real traffic.

- ``test_latency_below_the_timeouts``: 40 ms (+-15) each way and responses cut into small
  slices: indexing, searching and a sync run work, and the store holds exactly what was written.
- ``test_transient_resets_are_retried``: connections reset (``reset_peer``) for a short window
  during an upsert / a query: the adapter's bounded retries carry the call through; afterwards
  every id is there once with its text (nothing lost, nothing duplicated).
- ``test_lost_responses_are_retried``: the half-open case. The proxy keeps the connection and
  swallows the answer (``timeout`` toxic, 0 = forever) for one attempt: the client-side timeouts
  fire (psycopg has none of its own: ``adapters/pgvector/_deadline.py``), the retry writes the
  batch again, and the state is still exact although the first write may have landed.
- ``test_cut_mid_response``: the connection is closed after a few hundred bytes of the answer
  (``limit_data``) while records are read back: retried, complete.
- ``test_persistent_fault_fails_once``: the engine unreachable (proxy disabled: refused
  connections) or hanging (black hole) for good: one ``TransientAdapterError`` naming the engine
  and saying the retry budget is spent, within a bound generous for a loaded machine (a behaviour
  check, not a benchmark); once the fault is gone the same adapter answers within a few seconds
  (PostgreSQL after 36 s of failing traffic: the pool's reconnect delay must not have grown to
  tens of seconds) and the state is exact.
- ``test_lost_answer_to_create_collection``: the server creates the collection but its answer is
  lost; the retry must find the collection it made itself and succeed, not call it a stranger's.
- ``test_sync_survives_faults_and_resumes``: a sync run meets a reset window mid-write and
  completes; the next run (the source changed) loses the engine mid-write and fails with one SDK
  error; the re-run resumes from the ledger (encodes only what was not committed) and leaves
  exactly the source's chunks; ``verify`` finds no drift.

Faults injected and survived are counted per engine and written as JSON to
``$SDK_RELIABILITY_REPORT/faults.json`` (else under pytest's temporary directory; the path is
printed). Needs the engines and Toxiproxy: ``eval "$(scripts/engines.sh start postgres weaviate toxiproxy)"``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from sdk.core.errors import SDKError, TransientAdapterError
from sdk.core.registry import connect
from sdk.retrieval.pipeline import RetrievalPipeline
from sdk.sync import Ledger, open_source, plan, sync, verify
from sdk.sync.chunking import TokenChunker
from tests.conftest import data_dir
from tests.encoder_fixtures import read_jsonl
from tests.integration.conftest import postgres_url, weaviate_url  # noqa: F401 - fixtures used below
from tests.reliability.toxiproxy import Proxy, Toxiproxy
from tests.unit.test_sync import Counting, text, write_folder

pytestmark = pytest.mark.integration

ENGINES = [pytest.param("postgres", marks=pytest.mark.pgvector), pytest.param("weaviate", marks=pytest.mark.weaviate)]
LABELS = {"postgres": "PostgreSQL", "weaviate": "Weaviate"}
DOCS = 16  # pyfaq documents the pipeline tests index
#: Short client timeouts for the half-open tests (the defaults are 30 s and more, see the adapters).
SHORT = {"call_s": 2.0, "connect_s": 2.0}
#: Upper bound for "one clear error" under a persistent fault: the retry budget (15 s) plus one
#: attempt's worth of waiting, with slack for two busy cores.
PERSISTENT_BOUND_S = 60.0
RESET_WINDOW_S = 0.6
#: Long enough for psycopg_pool's doubling reconnect delay (1, 2, 4, ... 32 s) to pass 30 s.
LONG_OUTAGE_S = 36.0
#: How soon after the fault ends the first call must succeed (a reconnect, slack for a loaded machine).
RECOVERY_BOUND_S = 12.0


# ---------------------------------------------------------------------------------------------
# Counting: faults injected, survived, failed attempts the SDK retried
# ---------------------------------------------------------------------------------------------
@dataclass
class Scenario:
    engine: str
    phase: str
    fault: str
    expect: str  # "success" or "one error, then recovery"
    injected: int = 0
    retried_attempts: int = 0
    survived: bool = False
    seconds: float = 0.0
    note: str = ""


@dataclass
class FaultLog:
    scenarios: list[Scenario] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        per: dict[str, dict[str, int]] = {}
        for s in self.scenarios:
            row = per.setdefault(s.engine, {"scenarios": 0, "faults_injected": 0, "faults_survived": 0,
                                            "scenarios_survived": 0, "retried_attempts": 0})
            row["scenarios"] += 1
            row["faults_injected"] += s.injected
            row["faults_survived"] += s.injected if s.survived else 0
            row["scenarios_survived"] += int(s.survived)
            row["retried_attempts"] += s.retried_attempts
        return {"engines": per, "scenarios": [vars(s) for s in self.scenarios]}


_LOG = FaultLog()


@pytest.fixture(scope="module", autouse=True)
def fault_report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultLog]:
    yield _LOG
    if not _LOG.scenarios:
        return
    folder = Path(os.environ.get("SDK_RELIABILITY_REPORT") or tmp_path_factory.getbasetemp())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "faults.json"
    path.write_text(json.dumps(_LOG.summary(), indent=2) + "\n", encoding="utf8")
    print(f"\nfaults injected / survived: {json.dumps(_LOG.summary()['engines'])} -> {path}")


@contextmanager
def scenario(engine: str, phase: str, fault: str, expect: str = "success") -> Iterator[Scenario]:
    """Record one scenario; it counts as survived only if its block (all its checks) passed."""
    sc = Scenario(engine, phase, fault, expect)
    _LOG.scenarios.append(sc)
    started = time.monotonic()
    try:
        yield sc
        sc.survived = True
    finally:
        sc.seconds = round(time.monotonic() - started, 2)


# ---------------------------------------------------------------------------------------------
# The proxies and the adapters behind them
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def toxiproxy() -> Toxiproxy:
    server = Toxiproxy(os.environ.get("SDK_TEST_TOXIPROXY_URL", "http://127.0.0.1:8474"))
    try:
        server.version()
    except OSError as exc:
        pytest.fail(f"Toxiproxy does not answer at {server.url} ({exc}); start it: "
                    'eval "$(scripts/engines.sh start toxiproxy)"', pytrace=False)
    return server


class Retries(logging.Handler):
    """Counts weaviate-client's own retries (it retries gRPC UNAVAILABLE itself and logs each one)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "Retrying with exponential backoff" in record.getMessage():
            self.count += 1


@dataclass
class Target:
    """One engine behind its proxies: URLs, adapters, toxics on every proxy at once, a spy."""

    engine: str
    proxies: list[Proxy]
    url: str  # the engine's URL through the proxies
    adapters: list[Any] = field(default_factory=list)
    failures: int = 0  # transient errors the adapters translated (each one is a retried or final attempt)
    client_retries: Retries = field(default_factory=Retries)
    on_failure: list[Callable[[int], None]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return LABELS[self.engine]

    def connect(self, *, short: bool = False) -> Any:
        """An adapter through the proxies: ``sdk.connect(url)``, or with short client timeouts."""
        if not short:
            adapter = connect(self.url)
        elif self.engine == "postgres":
            from adapters.pgvector import PgvectorAdapter

            adapter = PgvectorAdapter(self.url, call_timeout=SHORT["call_s"], connect_timeout=SHORT["connect_s"],
                                      pool_timeout=SHORT["call_s"])
        else:
            from adapters.weaviate import WeaviateAdapter

            adapter = WeaviateAdapter.from_url(self.url, call_timeout=SHORT["call_s"])
        self._spy(adapter)
        self.adapters.append(adapter)
        return adapter

    def _spy(self, adapter: Any) -> None:
        translate = adapter._translate

        def counting(exc: BaseException, what: str) -> SDKError:
            err = translate(exc, what)
            if isinstance(err, TransientAdapterError):
                self.failures += 1
                for hook in list(self.on_failure):
                    hook(self.failures)
            return err

        adapter._translate = counting

    def add(self, sc: Scenario, kind: str, **attributes: Any) -> list[tuple[Proxy, str]]:
        """The same toxic on every proxy of the engine (its whole network path)."""
        added = [(p, p.add(kind, **attributes)) for p in self.proxies]
        sc.injected += 1
        return added

    def heal(self, toxics: list[tuple[Proxy, str]]) -> None:
        for proxy, name in toxics:
            if name in proxy.toxics:
                proxy.remove(name)

    def clear(self) -> None:
        for p in self.proxies:
            p.clear()
            p.enable()

    def transient(self, sc: Scenario, kind: str, *, window_s: float | None = None, after_failures: int | None = None,
                  **attributes: Any) -> Callable[[], None]:
        """An action that injects ``kind`` and heals it after ``window_s`` or after the adapters saw
        ``after_failures`` more failed attempts, whichever comes first."""

        def inject() -> None:
            toxics = self.add(sc, kind, **attributes)
            healed = threading.Event()
            start = self.failures

            def heal(*_: Any) -> None:
                if not healed.is_set():
                    healed.set()
                    self.heal(toxics)

            if window_s is not None:
                timer = threading.Timer(window_s, heal)
                timer.daemon = True
                timer.start()
            if after_failures is not None:
                self.on_failure.append(lambda n: heal() if n - start >= after_failures else None)

        return inject


@pytest.fixture(params=ENGINES)
def target(request: pytest.FixtureRequest, toxiproxy: Toxiproxy) -> Iterator[Target]:
    engine = request.param
    real = request.getfixturevalue(f"{engine}_url")
    parts = urlsplit(real)
    host = parts.hostname or "127.0.0.1"
    if engine == "postgres":
        pg = toxiproxy.create(f"{host}:{parts.port or 5432}")
        proxies = [pg]
        url = parts._replace(netloc=parts.netloc.replace(f"{host}:{parts.port or 5432}", f"127.0.0.1:{pg.port}")
                             ).geturl()
    else:
        grpc_port = int(parse_qs(parts.query).get("grpc", ["50051"])[0])
        http = toxiproxy.create(f"{host}:{parts.port or 8080}")
        grpc = toxiproxy.create(f"{host}:{grpc_port}")
        proxies = [http, grpc]
        url = f"weaviate://127.0.0.1:{http.port}?grpc={grpc.port}"
    tgt = Target(engine, proxies, url)
    wlog = logging.getLogger("weaviate-client")
    wlog.addHandler(tgt.client_retries)
    try:
        yield tgt
    finally:
        wlog.removeHandler(tgt.client_retries)
        tgt.on_failure.clear()
        tgt.clear()
        for adapter in tgt.adapters:
            try:
                adapter.close()
            except Exception:  # noqa: BLE001 - cleanup must not hide the test's own failure
                pass
        for p in proxies:
            p.delete()


def before_call(adapter: Any, hook: str, action: Callable[[], None], nth: int = 1) -> None:
    """Run ``action`` right before the ``nth`` call of the adapter's driver hook (``_upsert_batch``, ...)."""
    real = getattr(adapter, hook)
    calls = 0

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == nth:
            action()
        return real(*args, **kwargs)

    setattr(adapter, hook, wrapped)


def tally(sc: Scenario, tgt: Target, failures_before: int, retries_before: int) -> None:
    sc.retried_attempts = (tgt.failures - failures_before) + (tgt.client_retries.count - retries_before)


# ---------------------------------------------------------------------------------------------
# Data and exact-state checks
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pyfaq_docs() -> list[dict[str, str]]:
    path = data_dir() / "pyfaq" / "corpus.jsonl"
    if not path.is_file():
        pytest.fail(f"pyfaq not found at {path}; set SDK_DATA_DIR")
    return [{"id": d["_id"], "text": (d.get("title", "") + " " + d["text"]).strip()[:400]}
            for d in read_jsonl(path, DOCS)]


def exact_state(adapter: Any, collection: str, expected: dict[str, str]) -> None:
    """Nothing lost, nothing duplicated: ids listed once each, count, and every record's text."""
    ids = list(adapter.ids(collection))
    assert len(ids) == len(set(ids)), f"duplicate ids in {collection}: {len(ids) - len(set(ids))}"
    assert set(ids) == set(expected), (f"missing {sorted(set(expected) - set(ids))[:5]}, "
                                       f"unexpected {sorted(set(ids) - set(expected))[:5]}")
    assert adapter.count(collection) == len(expected)
    got = {r.id: r.text for r in adapter.get(collection, sorted(expected))}
    assert got == expected


def top_hit_is_itself(pipe: RetrievalPipeline, docs: list[dict[str, str]], n: int = 3) -> None:
    for d in docs[:n]:
        hits = pipe.search(d["text"], limit=3)
        assert hits and hits[0].id == d["id"], (d["id"], [h.id for h in hits])


@pytest.fixture
def name() -> str:
    return f"flt_{uuid.uuid4().hex[:10]}"


def drop_quietly(adapter: Any, *names: str) -> None:
    for n in names:
        try:
            if adapter.capabilities.aliases:
                try:
                    adapter.delete_alias(n)
                except Exception:  # noqa: BLE001
                    pass
            adapter.drop(n)
        except Exception:  # noqa: BLE001 - cleanup
            pass


# ---------------------------------------------------------------------------------------------
# Pipelines: latency, resets, lost answers, cut answers, persistent faults
# ---------------------------------------------------------------------------------------------
def test_latency_below_the_timeouts(target: Target, minilm: Any, pyfaq_docs: list[dict[str, str]],
                                    name: str) -> None:
    adapter = target.connect()
    expected = {d["id"]: d["text"] for d in pyfaq_docs}
    with scenario(target.engine, "upsert+query", "latency 40+-15 ms both ways, 64-byte slices") as sc:
        target.add(sc, "latency", latency=40, jitter=15)
        target.add(sc, "latency", stream="upstream", latency=40, jitter=15)
        target.add(sc, "slicer", average_size=64, size_variation=32, delay=50)
        try:
            pipe = RetrievalPipeline(minilm, store=adapter, collection=name)
            assert pipe.add_documents(pyfaq_docs, chunk_size=10) == len(pyfaq_docs)
            top_hit_is_itself(pipe, pyfaq_docs)
            exact_state(adapter, name, expected)
        finally:
            target.clear()
            drop_quietly(adapter, name)


@pytest.mark.parametrize("phase", ["upsert", "query"])
def test_transient_resets_are_retried(target: Target, minilm: Any, pyfaq_docs: list[dict[str, str]],
                                      name: str, phase: str) -> None:
    adapter = target.connect()
    expected = {d["id"]: d["text"] for d in pyfaq_docs}
    pipe = RetrievalPipeline(minilm, store=adapter, collection=name)
    try:
        with scenario(target.engine, phase, f"reset_peer for {RESET_WINDOW_S} s") as sc:
            f0, r0 = target.failures, target.client_retries.count
            inject = target.transient(sc, "reset_peer", window_s=RESET_WINDOW_S, stream="upstream", timeout=0)
            if phase == "upsert":
                before_call(adapter, "_upsert_batch", inject, nth=2)
                assert pipe.add_documents(pyfaq_docs, chunk_size=8) == len(pyfaq_docs)
            else:
                pipe.add_documents(pyfaq_docs)
                before_call(adapter, "_search", inject)
                top_hit_is_itself(pipe, pyfaq_docs, n=1)
            tally(sc, target, f0, r0)
            target.clear()
            assert sc.retried_attempts >= 1, "the reset never reached the SDK: the fault was not injected"
            top_hit_is_itself(pipe, pyfaq_docs)
            exact_state(adapter, name, expected)
    finally:
        target.clear()
        drop_quietly(adapter, name)


def test_lost_responses_are_retried(target: Target, minilm: Any, pyfaq_docs: list[dict[str, str]],
                                    name: str) -> None:
    adapter = target.connect(short=True)
    expected = {d["id"]: d["text"] for d in pyfaq_docs}
    pipe = RetrievalPipeline(minilm, store=adapter, collection=name)
    try:
        with scenario(target.engine, "upsert", "half-open: answers swallowed (timeout 0) for one attempt") as sc:
            f0, r0 = target.failures, target.client_retries.count
            inject = target.transient(sc, "timeout", after_failures=1, timeout=0)
            before_call(adapter, "_upsert_batch", inject, nth=2)
            started = time.monotonic()
            assert pipe.add_documents(pyfaq_docs, chunk_size=8) == len(pyfaq_docs)
            took = time.monotonic() - started
            tally(sc, target, f0, r0)
            target.clear()
            assert sc.retried_attempts >= 1
            assert took < PERSISTENT_BOUND_S, f"the client timeout did not fire in time ({took:.1f} s)"
            exact_state(adapter, name, expected)
    finally:
        target.clear()
        drop_quietly(adapter, name)


def lose_answer_of_next_create(target: Target, adapter: Any, inject: Callable[[], None]) -> None:
    """Make the next collection create reach the server and its answer get lost.

    PostgreSQL: the toxic goes on after the transaction's statements, so its COMMIT travels up and
    the server commits, but the answer never comes back. Weaviate: it goes on right before the
    create request, which travels up (the toxic holds only the server's side) and is carried out.
    """
    if target.engine == "postgres":
        real_tx = adapter._tx
        armed = False

        def arm() -> None:
            nonlocal armed
            armed = True

        def tx(fn: Callable[[Any], Any], **kwargs: Any) -> Any:
            nonlocal armed
            if not armed:
                return real_tx(fn, **kwargs)
            armed = False

            def then_lose_the_answer(conn: Any) -> Any:
                out = fn(conn)
                inject()
                return out

            return real_tx(then_lose_the_answer, **kwargs)

        adapter._tx = tx
        before_call(adapter, "_create", arm)
    else:
        before_call(adapter._client.collections, "create", inject)


def test_lost_answer_to_create_collection(target: Target, name: str) -> None:
    from sdk.core.spec import CollectionSpec, DenseField

    adapter = target.connect(short=True)
    spec = CollectionSpec(name=name, dense=(DenseField("dense", 8),))
    try:
        with scenario(target.engine, "create collection", "answer lost after the server carried the create out") as sc:
            f0, r0 = target.failures, target.client_retries.count
            lose_answer_of_next_create(target, adapter, target.transient(sc, "timeout", after_failures=1, timeout=0))
            stored = adapter.ensure_collection(spec)  # the retry finds its own collection, not a stranger's
            tally(sc, target, f0, r0)
            target.clear()
            assert sc.retried_attempts >= 1
            assert stored == spec and adapter.describe(name) == spec
            assert adapter.count(name) == 0
    finally:
        target.clear()
        drop_quietly(adapter, name)


def test_cut_mid_response(target: Target, minilm: Any, pyfaq_docs: list[dict[str, str]], name: str) -> None:
    adapter = target.connect()
    expected = {d["id"]: d["text"] for d in pyfaq_docs}
    pipe = RetrievalPipeline(minilm, store=adapter, collection=name)
    try:
        pipe.add_documents(pyfaq_docs)
        with scenario(target.engine, "read", "connection closed after 300 bytes of the answer") as sc:
            f0, r0 = target.failures, target.client_retries.count
            inject = target.transient(sc, "limit_data", window_s=RESET_WINDOW_S, after_failures=1, bytes=300)
            before_call(adapter, "_get", inject)
            got = {r.id: r.text for r in adapter.get(name, sorted(expected))}
            tally(sc, target, f0, r0)
            target.clear()
            assert got == expected
            assert sc.retried_attempts >= 1
            exact_state(adapter, name, expected)
    finally:
        target.clear()
        drop_quietly(adapter, name)


@pytest.mark.parametrize("fault", ["refused", "half_open"])
def test_persistent_fault_fails_once(target: Target, minilm: Any, pyfaq_docs: list[dict[str, str]],
                                     name: str, fault: str) -> None:
    adapter = target.connect(short=True)
    expected = {d["id"]: d["text"] for d in pyfaq_docs}
    pipe = RetrievalPipeline(minilm, store=adapter, collection=name)
    try:
        pipe.add_documents(pyfaq_docs)
        label = "proxy disabled: connections refused" if fault == "refused" else "black hole (timeout 0)"
        # PostgreSQL's pool reconnects with a growing delay while the server is away: a long outage with
        # traffic is what shows whether the adapter is back soon after the server is.
        outage_s = LONG_OUTAGE_S if fault == "refused" and target.engine == "postgres" else 0.0
        if outage_s:
            label += f" for {outage_s:g} s of traffic"
        with scenario(target.engine, "query", f"persistent: {label}", "one error, then recovery") as sc:
            f0, r0 = target.failures, target.client_retries.count
            if fault == "refused":
                for p in target.proxies:
                    p.disable()
                sc.injected += 1
            else:
                target.add(sc, "timeout", timeout=0)
            started = time.monotonic()
            with pytest.raises(TransientAdapterError) as err:
                pipe.search(pyfaq_docs[0]["text"])
            took = time.monotonic() - started
            tally(sc, target, f0, r0)
            sc.note = f"error after {took:.1f} s: {str(err.value)[:300]}"
            assert took < PERSISTENT_BOUND_S, sc.note
            assert target.label in str(err.value) and "gave up after" in str(err.value), sc.note
            while time.monotonic() - started < outage_s:
                with pytest.raises(TransientAdapterError):
                    pipe.search(pyfaq_docs[1]["text"])
            target.clear()
            healed = time.monotonic()
            top_hit_is_itself(pipe, pyfaq_docs, n=1)  # the same adapter recovers by itself, and soon
            recovery = time.monotonic() - healed
            sc.note += f"; answered {recovery:.1f} s after the fault ended"
            assert recovery < RECOVERY_BOUND_S, sc.note
            top_hit_is_itself(pipe, pyfaq_docs)
            exact_state(adapter, name, expected)
    finally:
        target.clear()
        drop_quietly(adapter, name)


# ---------------------------------------------------------------------------------------------
# sdk sync: a reset window mid-write, then a lost engine mid-write and the resumed re-run
# ---------------------------------------------------------------------------------------------
def test_sync_survives_faults_and_resumes(target: Target, tiny_bert: Any, tmp_path: Path, name: str) -> None:
    adapter = target.connect()
    dense = Counting(tiny_bert)
    docs = {f"doc{i:02d}.txt": text(i, 20 + 15 * (i % 4)) for i in range(14)}
    docs["long/guide.md"] = " ".join(text(100 + k, 25) for k in range(6))
    src = write_folder(tmp_path / "src", docs)
    book = Ledger.open(tmp_path / "ledger.sqlite", key=name)

    def run() -> Any:
        return sync(src, adapter, name, dense=dense, sparse=False, ledger=book, batch_size=4)

    def expected() -> dict[str, str]:
        chunker = TokenChunker.from_encoder(tiny_bert, None)
        return {c.id: c.text for doc in open_source(src) for c in chunker.chunk(doc)}

    try:
        with scenario(target.engine, "sync", f"reset_peer for {RESET_WINDOW_S} s mid-write") as sc:
            f0, r0 = target.failures, target.client_retries.count
            before_call(adapter, "_upsert_batch",
                        target.transient(sc, "reset_peer", window_s=RESET_WINDOW_S, stream="upstream", timeout=0),
                        nth=2)
            first = run()
            tally(sc, target, f0, r0)
            target.clear()
            assert sc.retried_attempts >= 1
            assert first.chunks_written == len(expected())
            exact_state(adapter, name, expected())

        # The source changes; the next run loses the engine after two of its batches.
        (src / "doc03.txt").unlink()
        for i in (1, 5, 9):
            (src / f"doc{i:02d}.txt").write_text(text(500 + i, 60), encoding="utf8")
        for i in range(20, 26):
            (src / f"new{i}.txt").write_text(text(700 + i, 30), encoding="utf8")
        todo = plan(src, adapter, name, dense=dense, sparse=False, ledger=book, batch_size=4).chunks_encoded
        with scenario(target.engine, "sync", "proxy disabled mid-write, then re-run",
                      "one error, then recovery") as sc:

            def lose_engine() -> None:
                for p in target.proxies:
                    p.disable()
                sc.injected += 1

            before_call(adapter, "_upsert_batch", lose_engine, nth=3)
            f0, r0 = target.failures, target.client_retries.count
            started = time.monotonic()
            with pytest.raises(SDKError) as err:
                run()
            took = time.monotonic() - started
            tally(sc, target, f0, r0)
            sc.note = f"error after {took:.1f} s: {str(err.value)[:300]}"
            assert took < PERSISTENT_BOUND_S, sc.note
            assert target.label in str(err.value) and "gave up after" in str(err.value), sc.note
            target.clear()
            encoded_before = dense.texts
            again = run()
            resumed = dense.texts - encoded_before
            assert 0 < resumed < todo, f"the re-run encoded {resumed} chunks of {todo}: it did not resume"
            assert again.chunks_written == resumed
            exact_state(adapter, name, expected())
            assert not verify(adapter, name, ledger=book).drift
            assert run().chunks_encoded == 0
    finally:
        target.clear()
        versions = [v["collection"] for v in book.get("versions", [])] + [(book.get("building") or {}).get("collection")]
        drop_quietly(adapter, name, *{v for v in versions if v})
        book.close()
