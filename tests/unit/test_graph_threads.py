"""Graph backends (ONNX Runtime, OpenVINO) size their thread pool per call, as the torch path does:
a query-sized batch runs on a single-threaded session of its own, with the same numbers."""

from __future__ import annotations

import shutil
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
