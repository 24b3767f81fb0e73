"""The thread settings a single search runs under (issue 18), each where it is decided:

- a small CPU batch (a search query) runs on one torch intra-op thread, in the calling thread only,
  and gives the same vectors; bigger batches keep torch's setting;
- the in-process stores score with one BLAS thread while they search, and the previous setting
  comes back when the last concurrent search ends;
- PostgreSQL's statement deadlines share one watchdog thread instead of starting a timer thread per
  transaction, and still cut a stalled connection.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import numpy as np
import pytest
import torch

from sdk.encoders.base import SMALL_BATCH_TOKENS, intra_op_threads


@pytest.fixture
def two_threads() -> Any:
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def _forward_threads(encoder: Any) -> list[int]:
    seen: list[int] = []
    encoder[0].register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    return seen


def test_a_query_runs_on_one_intra_op_thread_with_the_same_vectors(tiny_bert_dir: Any, two_threads: None) -> None:
    from sdk.encoders.dense import DenseEncoder

    encoder = DenseEncoder(tiny_bert_dir, device="cpu")
    seen = _forward_threads(encoder)
    one = encoder.encode("how do i install a python package")
    batch = encoder.encode(["how do i install a python package"] + ["a much longer text " * 8] * 7)
    assert seen == [1, 2]  # the query alone: one thread; 8 texts of ~30 tokens are over SMALL_BATCH_TOKENS
    assert torch.get_num_threads() == 2  # restored
    encoder.small_batch_threads = None
    np.testing.assert_allclose(encoder.encode("how do i install a python package"), one, atol=1e-6)  # other sums
    assert seen[-1] == 2
    np.testing.assert_allclose(batch[0], one, atol=1e-5)


def test_the_thread_setting_is_the_calling_threads_own(two_threads: None) -> None:
    inside = threading.Event()
    leave = threading.Event()
    other: list[int] = []

    def elsewhere() -> None:
        torch.get_num_threads()  # this thread's setting is made before the block below starts
        inside.wait()
        other.append(torch.get_num_threads())
        leave.set()

    worker = threading.Thread(target=elsewhere)
    worker.start()
    time.sleep(0.05)
    with intra_op_threads(1):
        assert torch.get_num_threads() == 1
        inside.set()
        leave.wait(5)
    worker.join()
    assert other == [2] and torch.get_num_threads() == 2
    with intra_op_threads(None):
        assert torch.get_num_threads() == 2
    assert SMALL_BATCH_TOKENS >= 16  # a short query fits


def test_in_process_search_uses_one_blas_thread_until_the_last_one_ends() -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from adapters.blas import _lookup, one_blas_thread

    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["internal_api"] == "openblas"]

    if not _lookup():
        pytest.skip("numpy runs on no OpenBLAS with a thread setting to hold")
    before = blas_threads()
    entered, release = threading.Event(), threading.Event()
    seen: dict[str, list[int]] = {}

    def search() -> None:
        with one_blas_thread():
            entered.set()
            release.wait(5)

    worker = threading.Thread(target=search)
    worker.start()
    assert entered.wait(5)
    with one_blas_thread():
        seen["both"] = blas_threads()
    seen["one left"] = blas_threads()  # the other search still runs: the limit stays
    release.set()
    worker.join()
    seen["none"] = blas_threads()
    assert seen == {"both": [1] * len(before), "one left": [1] * len(before), "none": before}


def test_statement_deadlines_share_one_thread_and_still_fire() -> None:
    pytest.importorskip("psycopg")
    from adapters.pgvector._deadline import StatementDeadline

    class Conn:
        def __init__(self, sock: socket.socket) -> None:
            self.sock, self.closed = sock, False

        def fileno(self) -> int:
            return self.sock.fileno()

        def close(self) -> None:
            self.closed = True

    ours, peer = socket.socketpair()
    try:
        conn = Conn(ours)
        for _ in range(3):  # the watchdog thread may start on first use
            with StatementDeadline(conn, 30.0):
                pass
        threads = threading.active_count()
        for _ in range(200):
            with StatementDeadline(conn, 30.0):
                pass
        assert threading.active_count() == threads and not conn.closed
        ours.settimeout(5)
        with StatementDeadline(conn, 0.05) as deadline:
            assert ours.recv(1) == b""  # a stalled read: the deadline shuts the socket down
        assert deadline.fired and conn.closed
        with StatementDeadline(conn, 0.05) as finished:
            pass
        time.sleep(0.2)
        assert not finished.fired  # ended in time: never fires
    finally:
        ours.close()
        peer.close()
