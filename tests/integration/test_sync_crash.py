"""``sdk sync`` killed at any instant: a re-run leaves exactly the source's chunks (docs/SYNC.md, "Crashes").

- ``test_sigkill_at_random_points_then_rerun`` (embedded Qdrant, pgvector): ``sdk sync`` runs in a
  child process and is SIGKILLed after seeded random delays, one in each fifth of the run's
  expected length (measured first on a separate collection: a full run and an unchanged one).
  Between kills the source changes (edits that grow and shrink documents, deletes, additions, a
  deleted document back with its old text): kills 1-3 hit the first sync and two updates; a run to
  completion follows (checked like the last one), so that kill 4 hits a blue/green re-index
  (``--chunk-tokens 16``: v2 fills while v1 stays live) and kill 5 its resumption. The last run,
  a fresh ``python -m sdk.cli.main``, must encode exactly what the kills left; then the store holds
  exactly the source's chunks (ids and texts, no duplicates), the alias points at the ledger's live
  version, no ledger row is left pending and ``sdk sync verify`` exits 0. Where each kill landed
  (start-up, writing k of n chunks, deleting, switch, too late) is measured from the plans before
  and after it and printed (``pytest -s`` or ``-rP``).
- ``test_dropped_connections_during_sync`` (pgvector): a sync runs in a thread while another
  connection terminates the adapter's backends (found by the ``application_name`` the store URL
  gives them, so no other connection is touched) four times, at seeded points of its progress;
  the run survives through the adapter's retries, or fails with an SDK error and a re-run
  completes it; the same exact checks follow.

The killed runs are forked from a forkserver that imported torch, transformers and the SDK once:
each run is ``sdk.cli.main.main(["sync", ...])`` in its own process (its own store connections,
ledger handle and qdrant folder lock, all lost with the SIGKILL), without ~10 s of imports per
run, so the delays fall inside the sync itself. ``tests/unit/test_sync_crash_points.py`` stops a
run after every single store and ledger write instead, deterministically.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import redirect_stdout, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from sdk.core.errors import SDKError
from sdk.core.registry import connect
from sdk.sync import Ledger, open_source, plan, status, sync
from sdk.sync.chunking import TokenChunker
from sdk.sync.ledger import ledger_key
from tests.unit.test_sync import text

SEED = 20261201
REINDEX_TOKENS = 16
RUN_LIMIT_S = 300
PRELOAD = ["torch", "transformers", "sdk.cli.main", "sdk.sync", "sdk.sync.engine", "sdk.encoders.dense",
           "adapters.qdrant", "adapters.pgvector", __name__]
REPO = Path(__file__).resolve().parents[2]


# ---- running sdk sync in a child process -------------------------------------------------------
def _cli_child(argv: list[str], env: dict[str, str], out: str, err: str) -> None:
    """Runs in the forked child: ``sdk <argv>`` with stdout and stderr in files."""
    os.environ.update(env)
    with open(out, "w") as o, open(err, "w") as e:
        os.dup2(o.fileno(), 1)
        os.dup2(e.fileno(), 2)
    from sdk.cli.main import main

    sys.exit(main(argv))


@dataclass
class Run:
    code: int | None  # exit status; None when SIGKILLed
    seconds: float
    out: str
    err: str

    @property
    def report(self) -> dict[str, Any]:
        return json.loads(self.out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def forkserver() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    warm = ctx.Process(target=_nothing)  # starts the server and waits for its imports, outside any timing
    warm.start()
    warm.join(RUN_LIMIT_S)
    return ctx


def _nothing() -> None:
    return None


class Runner:
    def __init__(self, ctx: Any, folder: Path, env: dict[str, str]) -> None:
        self.ctx, self.folder, self.env, self.n = ctx, folder, env, 0
        folder.mkdir(parents=True, exist_ok=True)

    def run(self, argv: list[str], kill_after: float | None = None) -> Run:
        """``sdk <argv>`` in a forked child, SIGKILLed after ``kill_after`` seconds if still running."""
        self.n += 1
        out, err = self.folder / f"{self.n}.out", self.folder / f"{self.n}.err"
        child = self.ctx.Process(target=_cli_child, args=(argv, self.env, str(out), str(err)))
        started = time.perf_counter()
        child.start()
        if kill_after is not None:
            child.join(kill_after)
            if child.is_alive():
                child.kill()  # SIGKILL
        child.join(RUN_LIMIT_S)
        if child.is_alive():
            child.kill()
            child.join()
            pytest.fail(f"sdk {' '.join(argv)} still ran after {RUN_LIMIT_S} s")
        seconds = time.perf_counter() - started
        code = None if child.exitcode == -signal.SIGKILL else child.exitcode
        return Run(code, seconds, out.read_text(), err.read_text())

    def cli(self, argv: list[str]) -> Run:
        """The real command line: a fresh ``python -m sdk.cli.main``."""
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "sdk.cli.main", *argv], cwd=REPO, capture_output=True,
                              text=True, timeout=RUN_LIMIT_S, env={**os.environ, **self.env})
        return Run(done.returncode, time.perf_counter() - started, done.stdout, done.stderr)


# ---- sources and checks ----------------------------------------------------------------------------
def put(folder: Path, docs: dict[str, str]) -> Path:
    """Make ``folder`` hold exactly ``docs`` (rewrites only what changed)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        if path.name not in docs:
            path.unlink()
    for name, body in docs.items():
        path = folder / name
        if not path.exists() or path.read_text(encoding="utf8") != body:
            path.write_text(body, encoding="utf8")
    return folder


def first_docs(rng: random.Random) -> dict[str, str]:
    """40 documents; every fifth long enough for several chunks."""
    return {f"d{i:02d}.txt": text(rng.randrange(10**6), 140 if i % 5 == 0 else rng.randrange(15, 60))
            for i in range(40)}


def mutate(docs: dict[str, str], gone: dict[str, str], rng: random.Random, step: int) -> dict[str, str]:
    """Edit 6 documents (grown past a chunk, shrunk to one, rewritten), delete 4, add 3, bring one back."""
    docs = dict(docs)
    earlier = list(gone)  # deleted by earlier steps
    names = sorted(docs)
    edited = rng.sample(names, 6)
    for name, words in zip(edited, (150, 12, 35, 150, 20, 45), strict=True):
        docs[name] = text(rng.randrange(10**6), words)
    for name in rng.sample(sorted(set(names) - set(edited)), 4):
        gone[name] = docs.pop(name)
    for i in range(3):
        docs[f"new{step}_{i}.txt"] = text(rng.randrange(10**6), rng.choice((25, 140)))
    if earlier:
        name = rng.choice(earlier)
        docs[name] = gone.pop(name)  # back, with its old text
    return docs


def expected(encoder: Any, folder: Path, chunk_tokens: int | None) -> dict[str, str]:
    chunker = TokenChunker.from_encoder(encoder, chunk_tokens)
    return {c.id: c.text for _, chunks in chunker.chunk_many(open_source(folder)) for c in chunks}


def assert_exactly_the_source(url: str, name: str, want: dict[str, str]) -> None:
    """Store == source chunk for chunk; alias on the ledger's live version; no pending ledger rows."""
    adapter = connect(url)  # qdrant+local: only while no sync process has the folder open
    try:
        ids = list(adapter.ids(name))
        got = {r.id: r.text for r in adapter.get(name, ids)}
        count = adapter.count(name)
        behind_alias = adapter.describe(name).name
    finally:
        adapter.close()
    assert len(ids) == len(set(ids)) == count, f"duplicates: {len(ids)} ids, {len(set(ids))} distinct, count {count}"
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    assert not missing and not extra, f"missing {missing}, extra {extra}"
    stale = sorted(i for i in want if got[i] != want[i])
    assert not stale, f"stale texts: {stale}"
    with Ledger.open(None, key=ledger_key(url, name)) as book:
        live = book.get("live")["collection"]
        pending = sorted(c for c, (_, _, fp) in book.chunks(live).items() if not fp)
    assert behind_alias == live, f"alias {name} -> {behind_alias}, but the ledger's live version is {live}"
    assert not pending, f"pending ledger rows: {pending}"


def assert_verify_clean(url: str, name: str, chunks: int) -> None:
    """``sdk sync verify --json`` exits 0 and reports no drift."""
    from sdk.cli.main import main

    with redirect_stdout(io.StringIO()) as printed:
        code = main(["sync", "verify", "--store", url, "--collection", name, "--json"])
    out = json.loads(printed.getvalue())
    assert code == 0 and not out["drift"], out
    assert out["ledger_chunks"] == out["store_chunks"] == chunks, out


def drop_everything(url: str, names: list[str]) -> None:
    with suppress(SDKError):
        adapter = connect(url)
        try:
            for name in names:
                with suppress(SDKError):
                    adapter.delete_alias(name)
                for version in range(1, 6):
                    with suppress(SDKError):
                        adapter.drop(f"{name}_v{version}")
        finally:
            adapter.close()


# ---- where a kill landed ---------------------------------------------------------------------------
def landing(run: Run, before: Any, after: Any, url: str, name: str) -> str:
    """The phase a kill hit, from the plans before and after it and the ledger."""
    if run.code is not None:
        return f"too late: the run had finished (exit {run.code})"
    with Ledger.open(None, key=ledger_key(url, name)) as book:
        pending = sum(1 for _, _, fp in book.chunks(after.collection).values() if not fp)
        live = (book.get("live") or {}).get("collection")
    written = before.chunks_encoded - after.chunks_encoded
    if after.chunks_encoded == before.chunks_encoded and not pending and after.chunks_deleted == before.chunks_deleted:
        return "start-up (model load, scan, collection): nothing written yet"
    if after.chunks_encoded:
        return f"writing: {written} of {before.chunks_encoded} chunks committed, {pending} pending"
    if after.chunks_deleted:
        return f"deleting: {after.chunks_deleted} of {before.chunks_deleted} stale chunks left ({pending} pending)"
    if live != after.collection:
        return f"switch: {after.collection} filled, alias not yet recorded on it"
    return "after the writes and deletes (dropping old versions / recording the run)"


# ---- the tests ---------------------------------------------------------------------------------------
STEPS = (  # (what happens to the source before the killed run, --chunk-tokens); None: run to completion, check
    ("first sync", None),
    ("edits, deletes, additions", None),
    ("edits, deletes, additions, a deleted document back", None),
    None,  # so that a live version exists and the next step is a blue/green re-index
    ("re-index (--chunk-tokens 16) with edits, deletes, additions", REINDEX_TOKENS),
    ("resume the re-index, unchanged source", REINDEX_TOKENS),
)
KILLS = sum(step is not None for step in STEPS)


@pytest.mark.parametrize("engine", [pytest.param("qdrant", marks=pytest.mark.qdrant),
                                    pytest.param("pgvector", marks=pytest.mark.pgvector)])
def test_sigkill_at_random_points_then_rerun(engine: str, request: pytest.FixtureRequest, tmp_path: Path,
                                             tiny_bert: Any, tiny_bert_dir: Path, forkserver: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    ledgers = tmp_path / "ledgers"
    monkeypatch.setenv("SDK_LEDGER_DIR", str(ledgers))
    env = {"SDK_LEDGER_DIR": str(ledgers), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    url = f"qdrant+local:{tmp_path / 'qdrant'}" if engine == "qdrant" else request.getfixturevalue("postgres_url")
    name = f"crash_{uuid.uuid4().hex[:8]}"
    rng = random.Random(f"{SEED}-{engine}")
    src = tmp_path / "src"
    docs, gone = first_docs(rng), {}
    put(src, docs)
    runner = Runner(forkserver, tmp_path / "runs", env)

    def argv(collection: str, chunk_tokens: int | None) -> list[str]:
        return ["sync", str(src), "--store", url, "--collection", collection, "--dense-model", str(tiny_bert_dir),
                "--no-sparse", "--batch-size", "4", "--device", "cpu", "--json",
                *(["--chunk-tokens", str(chunk_tokens)] if chunk_tokens else [])]

    def planned(chunk_tokens: int | None) -> Any:
        return plan(src, url, name, dense=tiny_bert, sparse=False, chunk_tokens=chunk_tokens)

    def finish(chunk_tokens: int | None, run: Any, how: str) -> dict[str, Any]:
        """Run to completion: it encodes exactly what the kills left, and the store then equals the source."""
        left = planned(chunk_tokens)
        done = run(argv(name, chunk_tokens))
        assert done.code == 0, done.err
        want = expected(tiny_bert, src, chunk_tokens)
        report = done.report
        assert report["chunks_encoded"] == left.chunks_encoded <= len(want), (report, left)
        assert report["chunks_total"] == len(want), report
        print(f"  {how} ({done.seconds:.1f} s): encoded {report['chunks_encoded']} of {len(want)} chunks, "
              f"deleted {report['chunks_deleted']}")
        assert_exactly_the_source(url, name, want)
        assert_verify_clean(url, name, len(want))
        return report

    try:
        # How long a run takes: a full first sync and an unchanged re-run, on another collection.
        full = runner.run(argv(name + "_m", None))
        noop = runner.run(argv(name + "_m", None))
        assert full.code == 0 and noop.code == 0, full.err + noop.err
        per_chunk = max(full.seconds - noop.seconds, 0.05) / full.report["chunks_encoded"]
        fractions = [(i + rng.random()) / KILLS for i in range(KILLS)]  # one in each fifth of a run
        rng.shuffle(fractions)
        print(f"{engine}: full run {full.seconds:.2f} s ({full.report['chunks_encoded']} chunks), "
              f"unchanged run {noop.seconds:.2f} s")

        for step in STEPS:
            if step is None:
                assert finish(None, runner.run, "run to completion")["collection"] == f"{name}_v1"
                continue
            what, chunk_tokens = step
            if what.startswith(("edits", "re-index")):
                docs = mutate(docs, gone, rng, len(fractions))
                put(src, docs)
            before = planned(chunk_tokens)
            if what.startswith("re-index"):
                assert before.reindex, before  # blue/green: v1 stays live while v2 fills
            fraction = fractions.pop()
            delay = fraction * (noop.seconds + per_chunk * (before.chunks_encoded + before.chunks_deleted / 20))
            killed = runner.run(argv(name, chunk_tokens), kill_after=delay)
            assert killed.code in (None, 0), killed.err
            after = planned(chunk_tokens)
            print(f"  kill ({what}; {before.chunks_encoded} to write, {before.chunks_deleted} to delete) at "
                  f"{delay:.2f} s = {fraction:.2f} of the expected run: {landing(killed, before, after, url, name)}")

        report = finish(REINDEX_TOKENS, runner.cli, "final run, python -m sdk.cli.main")
        info = status(url, name)
        assert info["collection"] == report["collection"] == f"{name}_v2", info
        assert info["versions"] == [f"{name}_v1", f"{name}_v2"], info
    finally:
        drop_everything(url, [name, name + "_m"])


def _with_application_name(url: str, app: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "application_name"] + [("application_name", app)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_dropped_connections_during_sync(postgres_url: str, tmp_path: Path, tiny_bert: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    monkeypatch.setenv("SDK_LEDGER_DIR", str(tmp_path / "ledgers"))
    app = f"sdk-crash-{uuid.uuid4().hex[:8]}"  # only this test's store connections carry it
    url = _with_application_name(postgres_url, app)
    name = f"drop_{uuid.uuid4().hex[:8]}"
    rng = random.Random(SEED)
    src = put(tmp_path / "src", {f"d{i:03d}.txt": text(rng.randrange(10**6), 140 if i % 6 == 0 else 40)
                                 for i in range(120)})
    want = expected(tiny_bert, src, None)
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["report"] = sync(src, url, name, dense=tiny_bert, sparse=False, batch_size=2, progress=False)
        except SDKError as exc:
            outcome["error"] = exc

    # Drop the connections when the ledger shows these many chunks committed (seeded, spread over the run).
    marks = sorted(rng.sample(range(1, len(want) - 10), 4))
    terminated: list[str] = []
    try:
        thread = threading.Thread(target=work, name="sync-under-fire", daemon=True)
        thread.start()
        with psycopg.connect(postgres_url, autocommit=True, application_name=f"{app}-killer") as killer, \
                Ledger.open(None, key=ledger_key(url, name)) as book:
            find = ("SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = %s AND pid <> pg_backend_pid()")
            while thread.is_alive() and marks:
                time.sleep(0.02)
                building = (book.get("building") or {}).get("collection")
                done = book.counts(building)[1] if building else 0
                if done < marks[0]:
                    continue
                hit = [pid for pid, ok in killer.execute(find, (app,)).fetchall() if ok]
                if hit:  # none while the adapter is between a lost connection and the next one
                    terminated.append(f"backend {hit[0]} at {done} of {len(want)} chunks committed")
                    marks.pop(0)
        thread.join(RUN_LIMIT_S)
        assert not thread.is_alive(), "the sync did not end"
        assert len(terminated) >= 2, f"the run ended before most connection drops: {terminated}"
        reruns = 0
        while "report" not in outcome:
            assert isinstance(outcome.pop("error"), SDKError)
            reruns += 1
            assert reruns <= 2, "two plain re-runs did not finish the job"
            work()
        assert_exactly_the_source(url, name, want)
        assert_verify_clean(url, name, len(want))
        print(f"pgvector connection drops: terminated {'; '.join(terminated)}; the run "
              + (f"failed and {reruns} re-run(s) finished it" if reruns else "survived through retries"))
    finally:
        drop_everything(postgres_url, [name])
