"""The multi-process pool when things go wrong: an interrupted job, two threads sharing one pool,
a killed worker, a worker exception, an interpreter that exits without stopping its pool, and the
default worker count on a machine whose CPUs are limited by affinity or a cgroup quota.

One two-worker pool serves most tests (spawning workers is slow); the tests that break a pool
start their own one-worker pool.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sdk.core.errors import InputError, SDKError
from sdk.encoders import pool as pool_module
from sdk.encoders.dense import DenseEncoder

REPO = Path(__file__).resolve().parents[2]
WORDS = "the a of to python package install list tuple debian database vector search query text model".split()


def _texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 30)))) for _ in range(n)]


@pytest.fixture(scope="module")
def encoder(tiny_bert_dir: Path) -> DenseEncoder:
    return DenseEncoder(tiny_bert_dir, device="cpu")


@pytest.fixture(scope="module")
def pool(encoder: DenseEncoder):
    pool = encoder.start_multi_process_pool(["cpu", "cpu"])
    yield pool
    encoder.stop_multi_process_pool(pool)


def _same_as_local(encoder: DenseEncoder, texts: list[str], out: np.ndarray) -> None:
    expected = encoder.encode(texts, batch_size=8)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_the_pool_gives_the_single_process_vectors(encoder: DenseEncoder, pool: dict) -> None:
    texts = _texts(60, seed=1)
    _same_as_local(encoder, texts, encoder.encode(texts, batch_size=8, pool=pool, chunk_size=7))


def test_a_call_after_an_interrupted_one_gets_its_own_vectors(
    encoder: DenseEncoder, pool: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while results come in leaves chunks and results of that job in flight; the next
    call must neither wait for them nor take them for its own."""
    unpack = pool_module._unpack

    def ctrl_c(payload: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(pool_module, "_unpack", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        encoder.encode(_texts(80, seed=2), pool=pool, chunk_size=2)
    monkeypatch.setattr(pool_module, "_unpack", unpack)
    texts = _texts(40, seed=3)
    _same_as_local(encoder, texts, encoder.encode(texts, pool=pool, chunk_size=2))


def test_two_threads_sharing_a_pool_each_get_their_own_vectors(encoder: DenseEncoder, pool: dict) -> None:
    texts = {"a": _texts(50, seed=4), "b": _texts(50, seed=5)}
    out: dict[str, np.ndarray] = {}
    failures: list[BaseException] = []
    start = threading.Barrier(len(texts))

    def run(name: str) -> None:
        start.wait()
        try:
            out[name] = encoder.encode(texts[name], pool=pool, chunk_size=3)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(name,), daemon=True) for name in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread still waits for results the other one took"
    assert not failures, failures
    for name, own in texts.items():
        _same_as_local(encoder, own, out[name])


def test_a_worker_exception_reaches_the_caller_with_the_worker_traceback(encoder: DenseEncoder, pool: dict) -> None:
    with pytest.raises(InputError, match="pool worker failed: InputError: unknown precision") as caught:
        encoder.encode_multi_process(_texts(10, seed=6), pool, precision="int4")  # checked in the worker only
    message = str(caught.value)
    assert "worker traceback" in message and "Traceback (most recent call last)" in message
    assert "in check_precision" in message  # the frame that raised, inside the worker
    texts = _texts(12, seed=7)  # the pool still serves
    _same_as_local(encoder, texts, encoder.encode(texts, pool=pool))


def test_a_killed_worker_fails_the_call_with_the_fix_and_stop_still_works(encoder: DenseEncoder) -> None:
    pool = encoder.start_multi_process_pool(["cpu"])
    texts = _texts(20, seed=8)
    try:
        encoder.encode(texts[:2], pool=pool)  # the worker is up
        pid = pool["processes"][0].pid
        os.kill(pid, signal.SIGSTOP)  # it cannot finish the job before it is killed
        killer = threading.Timer(1.0, os.kill, args=(pid, signal.SIGKILL))
        killer.start()
        began = time.monotonic()
        with pytest.raises(SDKError, match=r"died \(signal SIGKILL\).*stop_multi_process_pool\(pool\).*start_multi_process_pool"):
            encoder.encode(texts, pool=pool, chunk_size=2)
        assert time.monotonic() - began < 15
        killer.join()
        with pytest.raises(SDKError, match="cannot be used any more"):  # at once, without sending anything
            encoder.encode(texts, pool=pool)
    finally:
        began = time.monotonic()
        encoder.stop_multi_process_pool(pool)
        encoder.stop_multi_process_pool(pool)  # a second stop is a no-op
        assert time.monotonic() - began < 15
    with pytest.raises(SDKError, match="pool was stopped"):
        encoder.encode(texts, pool=pool)


def test_exiting_without_stopping_the_pool_does_not_hang(tiny_bert_dir: Path) -> None:
    """Chunks of an interrupted job still queued when the interpreter exits: the queue's feeder
    thread used to block exit forever, writing to a pipe nobody reads any more."""
    script = textwrap.dedent(f"""
        from sdk.encoders import pool as pool_module
        from sdk.encoders.dense import DenseEncoder

        encoder = DenseEncoder({str(tiny_bert_dir)!r}, device="cpu")
        pool = encoder.start_multi_process_pool(["cpu"])
        encoder.encode(["warm up"], pool=pool)

        def ctrl_c(payload):
            raise KeyboardInterrupt

        pool_module._unpack = ctrl_c
        try:
            encoder.encode(["python package install " * 100 + str(i) for i in range(300)], pool=pool, chunk_size=1)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    guard = threading.Timer(240, process.kill)  # a child stuck before printing fails the test, not the run
    guard.start()
    try:
        assert process.stdout is not None
        lines = []
        while not lines or lines[-1].strip() != "interrupted":
            lines.append(process.stdout.readline())  # slow: spawn
            assert lines[-1], "".join(lines)
        began = time.monotonic()
        process.wait(timeout=30)
        assert time.monotonic() - began < 30 and process.returncode == 0, process.stdout.read()
    finally:
        guard.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_default_worker_count_follows_affinity_and_cgroup_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pool_module._default_devices() == ["cpu"] * pool_module.available_cpus()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    monkeypatch.setattr(pool_module, "cgroup_cpu_limit", lambda: None)
    assert pool_module._default_devices() == ["cpu"] * 6
    monkeypatch.setattr(pool_module, "cgroup_cpu_limit", lambda: 3)
    assert pool_module._default_devices() == ["cpu"] * 3


def test_the_cgroup_quota_is_read_from_v2_and_v1_files(tmp_path: Path) -> None:
    membership = tmp_path / "cgroup"
    fs = tmp_path / "fs"
    (fs / "job").mkdir(parents=True)
    membership.write_text("0::/job\n")
    assert pool_module.cgroup_cpu_limit(fs, membership) is None
    (fs / "job" / "cpu.max").write_text("150000 100000\n")
    assert pool_module.cgroup_cpu_limit(fs, membership) == 2  # 1.5 CPUs, rounded up
    (fs / "cpu.max").write_text("100000 100000\n")  # the parent's quota is tighter
    assert pool_module.cgroup_cpu_limit(fs, membership) == 1
    (fs / "cpu.max").write_text("max 100000\n")
    assert pool_module.cgroup_cpu_limit(fs, membership) == 2

    membership.write_text("4:cpu,cpuacct:/\n1:memory:/x\n")
    v1 = fs / "cpu,cpuacct"
    v1.mkdir()
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert pool_module.cgroup_cpu_limit(fs, membership) is None
    (v1 / "cpu.cfs_quota_us").write_text("250000\n")
    assert pool_module.cgroup_cpu_limit(fs, membership) == 3
    assert pool_module.cgroup_cpu_limit(fs, tmp_path / "missing") is None
