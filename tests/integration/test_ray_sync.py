"""``sdk sync --engine ray`` on a local Ray instance (``ray.init(num_cpus=2)``): the collection it
builds equals the single-process sync's (ids, vectors within 1e-5, payloads), on the embedded store
(Qdrant local, written by the driver) and on PostgreSQL (written by the encoder actors); an
unchanged corpus schedules no encoding; a killed encoder actor and a killed driver both resume to
the exact result. Tiny random models keep encoding cheap: the bookkeeping is what is tested."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray  # noqa: E402  (the ray extra is part of .[all]: a missing install fails, it does not skip)

from sdk.core.registry import connect
from sdk.sync import Ledger, sync, verify
from tests.encoder_fixtures import build_tiny_mlm
from tests.unit.test_sync import text

REPO = Path(__file__).resolve().parents[2]
CHUNK_TOKENS = 24  # several chunks for the longer documents


@pytest.fixture(scope="module")
def local_ray() -> Iterator[str]:
    """One local Ray instance for the module; its GCS address lets a second driver process join it."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def models(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {"dense": str(tiny_bert_dir), "sparse": str(build_tiny_mlm(tmp_path_factory.mktemp("splade")))}


def corpus(folder: Path, n: int = 40) -> Path:
    """A JSONL corpus: short and long documents, titles and metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "corpus.jsonl"
    with path.open("w", encoding="utf8") as out:
        for i in range(n):
            record = {"id": f"doc{i:03d}", "text": text(i, 8 + 17 * (i % 5)), "metadata": {"n": i, "tag": f"t{i % 3}"}}
            if i % 4 == 0:
                record["title"] = f"Title {i}"
            out.write(json.dumps(record) + "\n")
    return path


def contents(store: Any, name: str) -> dict[str, tuple[str, dict, dict, dict]]:
    """id -> (text, metadata, dense vectors, sparse vectors as {index: value})."""
    ids = sorted(store.ids(name))
    out = {}
    for record in store.get(name, ids):
        sparse = {k: dict(zip(v.indices, v.values, strict=True)) for k, v in (record.sparse or {}).items()}
        dense = {k: np.asarray(v, dtype=np.float64) for k, v in (record.vectors or {}).items()}
        out[record.id] = (record.text, dict(record.metadata or {}), dense, sparse)
    return out


def assert_same(ours: dict[str, Any], reference: dict[str, Any]) -> None:
    assert sorted(ours) == sorted(reference)
    for cid, (text_, meta, dense, sparse) in reference.items():
        o_text, o_meta, o_dense, o_sparse = ours[cid]
        assert (o_text, o_meta) == (text_, meta), cid
        assert sorted(o_dense) == sorted(dense)
        for field, vec in dense.items():
            assert np.abs(o_dense[field] - vec).max() <= 1e-5, (cid, field)
        assert sorted(o_sparse) == sorted(sparse)
        for field, weights in sparse.items():
            assert sorted(o_sparse[field]) == sorted(weights), (cid, field)
            assert max(abs(o_sparse[field][i] - w) for i, w in weights.items()) <= 1e-5, (cid, field)


@pytest.fixture(params=["qdrant_local", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Two stores of the same engine (the single-process reference, the Ray run) and their URLs."""
    name = f"ray_{uuid.uuid4().hex[:8]}"
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        urls = (url, url)
        names = (f"{name}_ref", name)
    else:
        urls = (f"qdrant+local:{tmp_path / 'ref'}", f"qdrant+local:{tmp_path / 'ray'}")
        names = (name, name)
    env = {"urls": urls, "names": names, "ledgers": (tmp_path / "ref.sqlite", tmp_path / "ray.sqlite"),
           "server": request.param == "postgres"}
    yield env
    if env["server"]:
        with connect(urls[0]) as db:
            for n in names:
                for suffix in ("", "_v1", "_v2"):
                    try:
                        db.delete_alias(n) if suffix == "" else db.drop(n + suffix)
                    except Exception:  # noqa: BLE001 - cleanup must not hide the test's own failure
                        pass


def run(env: dict[str, Any], which: int, source: Path, models: dict[str, str], **kw: Any) -> Any:
    return sync(source, env["urls"][which], env["names"][which], dense=models["dense"], sparse=models["sparse"],
                ledger=str(env["ledgers"][which]), chunk_tokens=CHUNK_TOKENS, **kw)


def read(env: dict[str, Any], which: int) -> dict[str, Any]:
    with connect(env["urls"][which]) as db:
        return contents(db, env["names"][which])


def test_ray_sync_equals_the_single_process_sync(stores: dict[str, Any], models: dict[str, str], tmp_path: Path,
                                                 local_ray: str) -> None:
    source = corpus(tmp_path / "src")
    ref = run(stores, 0, source, models)
    got = run(stores, 1, source, models, engine="ray", ray={"encoder_actors": 2, "documents_per_batch": 8,
                                                             "bytes_per_part": 2048})
    assert (got.added, got.chunks_encoded, got.chunks_total) == (ref.added, ref.chunks_encoded, ref.chunks_total)
    assert ref.chunks_total > ref.added  # some documents were cut into several chunks
    assert_same(read(stores, 1), read(stores, 0))

    # an unchanged corpus: nothing encoded, nothing scheduled
    again = run(stores, 1, source, models, engine="ray")
    assert (again.unchanged, again.chunks_encoded, again.chunks_written) == (40, 0, 0)

    # edit one document, delete another, add one: the same changes as the single-process run
    lines = source.read_text(encoding="utf8").splitlines()
    edited = json.loads(lines[7])
    edited["text"] += " an edit at the end."
    lines[7] = json.dumps(edited)
    del lines[12]
    lines.append(json.dumps({"id": "new", "text": text(999, 30)}))
    source.write_text("\n".join(lines) + "\n", encoding="utf8")
    ref2 = run(stores, 0, source, models)
    got2 = run(stores, 1, source, models, engine="ray", ray={"bytes_per_part": 1500})
    counts = ("added", "updated", "deleted", "unchanged", "chunks_encoded", "chunks_deleted", "chunks_total")
    assert [getattr(got2, c) for c in counts] == [getattr(ref2, c) for c in counts]
    assert (got2.added, got2.updated, got2.deleted) == (1, 1, 1) and 0 < got2.chunks_encoded < got2.chunks_total
    assert_same(read(stores, 1), read(stores, 0))


def _worker_pids(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_a_killed_encoder_actor_resumes_to_the_exact_result(models: dict[str, str], tmp_path: Path,
                                                           local_ray: str) -> None:
    source = corpus(tmp_path / "src", n=120)
    urls = (f"qdrant+local:{tmp_path / 'ref'}", f"qdrant+local:{tmp_path / 'ray'}")
    env = {"urls": urls, "names": ("kb", "kb"), "ledgers": (tmp_path / "ref.sqlite", tmp_path / "ray.sqlite")}
    run(env, 0, source, models)
    killed: list[int] = []

    def kill_the_actor() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for pid in _worker_pids("_EncodeAndWrite"):
                time.sleep(1.0)  # let it load the models and take batches
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:  # gone meanwhile: look again
                    break
                killed.append(pid)
                break
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_actor)
    killer.start()
    try:
        run(env, 1, source, models, engine="ray", ray={"documents_per_batch": 1})
    except Exception:  # noqa: BLE001 - Ray may give up on the batch; the resumed run must finish the job
        pass
    finally:
        killer.join()
    assert killed, "no encoder actor was seen running"
    report = run(env, 1, source, models, engine="ray")
    assert report.chunks_total == sum(1 for _ in read(env, 1))
    assert_same(read(env, 1), read(env, 0))
    assert not verify(urls[1], "kb", ledger=str(env["ledgers"][1])).drift


DRIVER = textwrap.dedent("""
    import sys
    from sdk.sync import sync
    address, source, url, ledger, dense, sparse = sys.argv[1:7]
    sync(source, url, "kb", dense=dense, sparse=sparse, ledger=ledger, chunk_tokens=int(sys.argv[7]),
         engine="ray", ray={"address": address, "documents_per_batch": 1})
""")


def test_a_killed_driver_resumes_to_the_exact_result(models: dict[str, str], tmp_path: Path, local_ray: str) -> None:
    source = corpus(tmp_path / "src", n=120)
    urls = (f"qdrant+local:{tmp_path / 'ref'}", f"qdrant+local:{tmp_path / 'ray'}")
    env = {"urls": urls, "names": ("kb", "kb"), "ledgers": (tmp_path / "ref.sqlite", tmp_path / "ray.sqlite")}
    run(env, 0, source, models)
    key = f"qdrant+local:{tmp_path / 'ray'}"
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, local_ray, str(source), urls[1], str(env["ledgers"][1]), models["dense"],
         models["sparse"], str(CHUNK_TOKENS)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pending_seen = 0
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None:
            # polled often: the pending window lasts as long as the encoding (a few seconds here)
            if env["ledgers"][1].exists():
                from sdk.sync.ledger import ledger_key

                with Ledger.open(str(env["ledgers"][1]), key=ledger_key(key, "kb")) as book:
                    rows = book.chunks("kb_v1")
                pending_seen = sum(1 for _, _, fp in rows.values() if fp == "")
                if pending_seen:  # the write-ahead is in: the actors are encoding what is pending
                    break
            time.sleep(0.05)
    finally:
        driver.kill()
        _, err = driver.communicate()
    assert pending_seen, f"the driver was not caught mid-write: {err.decode(errors='replace')[-2000:]}"
    report = run(env, 1, source, models, engine="ray")
    assert report.chunks_encoded >= pending_seen  # the pending rows were written again
    assert_same(read(env, 1), read(env, 0))
    assert not verify(urls[1], "kb", ledger=str(env["ledgers"][1])).drift


def test_encode_dataset_adds_the_encoders_vectors_and_writes_parquet(models: dict[str, str], tmp_path: Path,
                                                                    local_ray: str) -> None:
    from sdk.encoders.dense import DenseEncoder
    from sdk.encoders.ray_data import encode_dataset
    from sdk.encoders.sparse import SparseEncoder

    texts = [text(i, 5 + i % 9) for i in range(50)]
    ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(texts)])
    dense = encode_dataset(ds, models["dense"], actors=2, batch_size=8)
    dense.write_parquet(str(tmp_path / "dense"))
    back = ray.data.read_parquet(str(tmp_path / "dense")).to_pandas().sort_values("id")
    expected = DenseEncoder(models["dense"], device="cpu").encode_document(texts)
    assert np.abs(np.stack(back["embedding"].to_list()) - expected).max() <= 1e-5

    rows = encode_dataset(ds, models["sparse"], kind="sparse", role="query", output="sp").take_all()
    reference = SparseEncoder(models["sparse"], device="cpu").encode_query(texts)
    for row in rows:
        ref = reference[row["id"]]
        assert list(row["sp_indices"]) == list(ref.indices)
        assert np.abs(np.asarray(row["sp_values"]) - np.asarray(ref.values)).max() <= 1e-5


def test_cli_sync_engine_ray_equals_the_local_cli_sync(models: dict[str, str], tmp_path: Path, local_ray: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from sdk.cli.main import main

    source = corpus(tmp_path / "src", n=12)
    env = {"urls": (f"qdrant+local:{tmp_path / 'ref'}", f"qdrant+local:{tmp_path / 'ray'}"), "names": ("kb", "kb")}
    common = ["--collection", "kb", "--dense-model", models["dense"], "--sparse-model", models["sparse"],
              "--chunk-tokens", str(CHUNK_TOKENS), "--json"]
    assert main(["sync", str(source), "--store", env["urls"][0], "--ledger", str(tmp_path / "a.sqlite"), *common]) == 0
    local = json.loads(capsys.readouterr().out)
    assert main(["sync", str(source), "--store", env["urls"][1], "--ledger", str(tmp_path / "b.sqlite"), *common,
                 "--engine", "ray", "--encoder-actors", "1"]) == 0
    on_ray = json.loads(capsys.readouterr().out)
    assert (on_ray["added"], on_ray["chunks_written"]) == (local["added"], local["chunks_written"]) == (12, local["chunks_written"])
    assert_same(read(env, 1), read(env, 0))


def test_ray_options_and_engine_errors_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                models: dict[str, str], local_ray: str) -> None:
    from sdk.core.errors import ConfigError
    from sdk.encoders.ray_data import encode_dataset
    from sdk.sync.ray_engine import RayOptions

    with pytest.raises(ConfigError, match="encoder_actors must be a positive integer"):
        RayOptions(encoder_actors=0)
    with pytest.raises(ConfigError, match="unknown ray option.*actors"):
        RayOptions.of({"actors": 2})
    with pytest.raises(ConfigError, match="needs a CPU or a GPU"):
        RayOptions(cpus_per_actor=0)
    with pytest.raises(ConfigError, match="engine must be 'local' or 'ray'"):
        sync(tmp_path, "memory://", "kb", engine="spark")
    with pytest.raises(ConfigError, match="pass engine='ray'"):
        sync(tmp_path, "memory://", "kb", ray={"encoder_actors": 2})
    with pytest.raises(ConfigError, match="kind must be"):
        encode_dataset(None, "m", kind="colbert")
    from sdk.core.errors import MissingDependencyError
    from sdk.sync.ray_engine import ensure_ray

    source = corpus(tmp_path / "src", n=3)
    with pytest.raises(ConfigError, match="5 encoder actors x 1 CPU need 5 CPUs, and the Ray cluster has 2"):
        sync(source, "memory://", "kb", dense=models["dense"], sparse=False, engine="ray", ray={"encoder_actors": 5})
    monkeypatch.setitem(sys.modules, "ray", None)  # as on an install without the ray extra
    with pytest.raises(MissingDependencyError, match=r"retrieval-forge\[ray\]"):
        ensure_ray()
