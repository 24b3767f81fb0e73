"""backend="auto": every candidate measured once per machine and model, the fastest exact-enough one kept, cached."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sdk.core.errors import CapabilityError, InputError
from sdk.encoders.backends import _on_cpu, backend_of
from sdk.encoders.backends import auto as auto_module
from sdk.encoders.backends.auto import CHOICE_FILE, MARGIN, _pick
from sdk.encoders.cross_encoder import CrossEncoder
from sdk.encoders.dense import DenseEncoder
from sdk.encoders.sparse import SparseEncoder
from tests.encoder_fixtures import build_tiny_cross_encoder, build_tiny_mlm

TEXTS = ["how do i install a python package", "a", "what is a tuple", "error: value not set"] * 4


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SDK_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / CHOICE_FILE


@pytest.fixture()
def bert_dir(tiny_bert_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bert_dir, tmp_path / "model"))


def _choice(encoder: DenseEncoder | SparseEncoder | CrossEncoder) -> dict:
    return encoder[0].__dict__["backend_choice"]


def test_measures_every_candidate_keeps_the_fastest_and_caches(bert_dir: Path, cache: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    ref = DenseEncoder(bert_dir, device="cpu").encode(TEXTS, normalize_embeddings=True)
    enc = DenseEncoder(bert_dir, device="cpu", backend="auto")
    decision = _choice(enc)
    assert decision["cached"] is False and set(decision["measured"]) == set(
        label for label, _ in [(f"{b} {'int8' if q else 'fp32'}", 0) for b, q in auto_module.candidates(False)])
    chosen = decision["measured"][decision["choice"]]
    assert chosen["passes"] and chosen["texts_per_s"] > 0
    assert backend_of(enc) == decision["choice"].split()[0]
    assert float((enc.encode(TEXTS, normalize_embeddings=True) * ref).sum(1).mean()) >= 0.99
    stored = json.loads(cache.read_text())
    assert [v["choice"] for v in stored.values()] == [decision["choice"]] and stored[next(iter(stored))]["flags"] is not None

    def no_measuring(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached choice must not be measured again")

    monkeypatch.setattr(auto_module, "_measure", no_measuring)
    again = DenseEncoder(bert_dir, device="cpu", backend="auto")
    assert _choice(again)["cached"] is True and _choice(again)["choice"] == decision["choice"]
    assert np.abs(again.encode(TEXTS) - enc.encode(TEXTS)).max() <= 1e-5


def test_new_weights_are_measured_again(bert_dir: Path, cache: Path) -> None:
    DenseEncoder(bert_dir, device="cpu", backend="auto")
    tuned = DenseEncoder(bert_dir, device="cpu")
    tuned.transformer.auto_model.embeddings.word_embeddings.weight.data.mul_(1.5)
    tuned.save(bert_dir)
    assert _choice(DenseEncoder(bert_dir, device="cpu", backend="auto"))["cached"] is False
    assert len(json.loads(cache.read_text())) == 2


def test_pick_keeps_torch_unless_clearly_faster_and_never_a_failed_bar() -> None:
    rows = {"torch fp32": {"texts_per_s": 100.0, "passes": True},
            "onnx fp32": {"texts_per_s": 100.0 * MARGIN - 1, "passes": True},
            "onnx int8": {"texts_per_s": 900.0, "passes": False, "mean_cosine": 0.9}}
    assert _pick(rows) == "torch fp32"
    rows["openvino int8"] = {"texts_per_s": 300.0, "passes": True}
    assert _pick(rows) == "openvino int8"
    assert _pick({"onnx fp32": {"texts_per_s": 5.0, "passes": True}}) == "onnx fp32"  # a graph-only folder
    with pytest.raises(CapabilityError, match="no backend"):
        _pick({"torch fp32": {"skipped": "broken"}})


def test_sparse_and_one_label_cross_encoder(tmp_path: Path, cache: Path) -> None:
    mlm = build_tiny_mlm(tmp_path / "mlm")
    ref = SparseEncoder(mlm, device="cpu").encode(TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False)
    sparse = SparseEncoder(mlm, device="cpu", backend="auto")
    assert _choice(sparse)["measured"]["onnx fp32"]["mean_cosine"] >= 0.9999  # SPLADE's view of the logits
    out = sparse.encode(TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False)
    assert out.shape == ref.shape
    folder = build_tiny_cross_encoder(tmp_path / "ce", num_labels=1)
    cross = CrossEncoder(folder, device="cpu", backend="auto")
    measured = _choice(cross)["measured"]
    assert "no cosine" in measured["onnx int8"]["skipped"] and not _choice(cross)["choice"].endswith("int8")
    pairs = [(TEXTS[i], TEXTS[-1 - i]) for i in range(len(TEXTS))]
    assert np.abs(cross.predict(pairs) - CrossEncoder(folder, device="cpu").predict(pairs)).max() <= 1e-4


def test_accelerators_stay_on_torch_and_options_are_checked(bert_dir: Path) -> None:
    assert _on_cpu("cpu") and not _on_cpu("cuda") and not _on_cpu("cuda:1") and not _on_cpu("mps")
    with pytest.raises(InputError, match="do not apply to backend='auto'"):
        DenseEncoder(bert_dir, device="cpu", backend="auto", model_kwargs={"quantize": "int8"})
