"""Graph backends (ONNX Runtime, OpenVINO) size their thread pool per call, as the torch path does:
a query-sized batch runs on a single-threaded session of its own, with the same numbers."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from sdk.encoders.backends import transformers_in
from sdk.encoders.backends.graph import GraphModel
from sdk.encoders.dense import DenseEncoder
from tests.encoder_fixtures import BACKEND_TEXTS


def _graph(encoder: DenseEncoder) -> GraphModel:
    (model,) = [t.auto_model for t in transformers_in(list(encoder)) if isinstance(t.auto_model, GraphModel)]
    return model


@pytest.fixture()
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_a_query_runs_on_a_single_thread_session_with_equal_vectors(backend: str, tiny_bert_dir: Path,
                                                                   tmp_path: Path, two_threads: None) -> None:
    if backend == "openvino":
        pytest.importorskip("openvino", reason="the openvino extra is part of .[all]")
    folder = Path(shutil.copytree(tiny_bert_dir, tmp_path / "model"))
    encoder = DenseEncoder(folder, device="cpu", backend=backend)
    model = _graph(encoder)
    batch = encoder.encode(BACKEND_TEXTS, batch_size=len(BACKEND_TEXTS))  # a big batch: the main session
    assert model._narrow == {}
    query = encoder.encode(BACKEND_TEXTS[0])  # query-sized: one thread
    assert list(model._narrow) == [1]
    assert np.abs(query - batch[0]).max() <= 1e-5
    assert torch.get_num_threads() == 2  # the caller's setting is back

    encoder.small_batch_threads = None  # opted out: the main session for every batch
    fresh = DenseEncoder(folder, device="cpu", backend=backend)
    fresh.small_batch_threads = None
    fresh.encode(BACKEND_TEXTS[0])
    assert _graph(fresh)._narrow == {}


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_batches_run_side_by_side_with_the_same_vectors(backend: str, tiny_bert_dir: Path, tmp_path: Path,
                                                        two_threads: None) -> None:
    """Several batches: one worker thread per CPU thread, each on the concurrent session, order kept."""
    folder = Path(shutil.copytree(tiny_bert_dir, tmp_path / "model"))
    texts = [f"{t} {i}" for i in range(7) for t in BACKEND_TEXTS]
    together = DenseEncoder(folder, device="cpu", backend=backend)
    alone = DenseEncoder(folder, device="cpu", backend=backend)
    alone._concurrent_sessions = lambda: None
    model = _graph(together)
    calls: list[tuple[str, bool]] = []
    run = model._run

    def spy(session, feed):
        calls.append((threading.current_thread().name, session is model._streams))
        return run(session, feed)

    model._run = spy
    out = together.encode(texts, batch_size=4)
    assert model.concurrent_session() is not None and calls
    assert all(name.startswith("sdk-graph") and pinned for name, pinned in calls)  # workers, concurrent session
    assert np.abs(out - alone.encode(texts, batch_size=4)).max() <= 1e-5
    calls.clear()
    assert np.abs(together.encode(texts[:3], batch_size=4) - out[:3]).max() <= 1e-5
    assert calls == [("MainThread", False)]  # one batch: in the caller's thread, on the main session


def test_a_worker_error_reaches_the_caller(tiny_bert_dir: Path, tmp_path: Path, two_threads: None) -> None:
    folder = Path(shutil.copytree(tiny_bert_dir, tmp_path / "model"))
    encoder = DenseEncoder(folder, device="cpu", backend="onnx")
    model = _graph(encoder)

    def broken(session, feed):
        raise RuntimeError("graph failed")

    model._run = broken
    with pytest.raises(RuntimeError, match="graph failed"):
        encoder.encode(BACKEND_TEXTS * 4, batch_size=2)


def test_one_thread_in_all_runs_batches_in_turn(tiny_bert_dir: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_bert_dir, tmp_path / "model"))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        encoder = DenseEncoder(folder, device="cpu", backend="onnx")
        encoder.encode(BACKEND_TEXTS * 3, batch_size=2)
        assert _graph(encoder).concurrent_session() is None
    finally:
        torch.set_num_threads(previous)
