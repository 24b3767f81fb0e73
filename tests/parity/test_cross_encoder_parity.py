"""Parity with sentence-transformers' CrossEncoder on tiny random rerankers, in the same process.

No reranker with real weights ships in any package here, so the check is on random 1- and
3-label models over real query/document pairs: same scores, same ranking, and folders that
load on both sides.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from sdk.encoders.cross_encoder import CrossEncoder
from tests.encoder_fixtures import build_tiny_cross_encoder, data_root, read_jsonl

ATOL = 1e-5


@pytest.fixture(scope="session")
def pairs() -> list[tuple[str, str]]:
    """Real pyfaq queries with their answer and two random documents each."""
    root = data_root() / "pyfaq"
    if not (root / "corpus.jsonl").is_file():
        pytest.fail(f"pyfaq not found under {root.parent}; set SDK_DATA_DIR to the folder holding pyfaq/")
    queries = read_jsonl(root / "queries.jsonl", 15)
    docs = [d["text"][:400] for d in read_jsonl(root / "corpus.jsonl", 400)]
    rng = random.Random(0)
    out = []
    for i, q in enumerate(queries):
        out += [(q["text"], docs[i]), (q["text"], rng.choice(docs)), (q["text"], rng.choice(docs)[:80])]
    return out


@pytest.fixture(scope="session", params=[1, 3], ids=["1-label", "3-labels"])
def tiny_ce_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp(f"ce{request.param}"), request.param, seed=request.param)


def _st(folder: Path, **kwargs):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    return STCrossEncoder(str(folder), device="cpu", **kwargs)


def test_predict_matches(tiny_ce_dir: Path, pairs: list[tuple[str, str]]) -> None:
    ours, theirs = CrossEncoder(tiny_ce_dir, device="cpu"), _st(tiny_ce_dir)
    assert ours.num_labels == theirs.num_labels and ours.max_length == theirs.max_seq_length
    assert type(ours.activation_fn) is type(theirs.activation_fn)
    a, b = ours.predict(pairs), theirs.predict(pairs)
    assert a.shape == b.shape
    diff = float(np.abs(a - b).max())
    print(f"\ncross-encoder {ours.num_labels} label(s), {len(pairs)} pairs: predict max abs diff {diff:.2e}")
    assert diff <= ATOL
    if ours.num_labels > 1:
        np.testing.assert_allclose(ours.predict(pairs, apply_softmax=True),
                                   theirs.predict(pairs, apply_softmax=True), atol=ATOL)
    np.testing.assert_allclose(ours.predict(pairs[0]), theirs.predict(pairs[0]), atol=ATOL)
    identity = torch.nn.Identity()
    np.testing.assert_allclose(ours.predict(pairs, activation_fn=identity),
                               theirs.predict(pairs, activation_fn=identity), atol=ATOL)


def test_rank_order_matches(tiny_ce_dir: Path, pairs: list[tuple[str, str]]) -> None:
    ours, theirs = CrossEncoder(tiny_ce_dir, device="cpu"), _st(tiny_ce_dir)
    query = pairs[0][0]
    if ours.num_labels != 1:  # rank() is defined for 1-label models only: both libraries refuse
        with pytest.raises(ValueError, match="1-label"):
            ours.rank(query, ["a", "b"])
        with pytest.raises(ValueError, match="num_labels=1"):
            theirs.rank(query, ["a", "b"])
        return
    docs = [d for _, d in pairs]
    a = ours.rank(query, docs, return_documents=True)
    b = theirs.rank(query, docs, return_documents=True)
    assert [r["corpus_id"] for r in a] == [r["corpus_id"] for r in b]
    np.testing.assert_allclose([r["score"] for r in a], [r["score"] for r in b], atol=ATOL)
    assert [r["text"] for r in a] == [r["text"] for r in b]
    top_a, top_b = ours.rank(query, docs, top_k=5), theirs.rank(query, docs, top_k=5)
    assert [r["corpus_id"] for r in top_a] == [r["corpus_id"] for r in top_b] and "text" not in top_a[0]


def test_our_folder_loads_in_sentence_transformers(tiny_ce_dir: Path, pairs: list[tuple[str, str]],
                                                   tmp_path: Path) -> None:
    ours = CrossEncoder(tiny_ce_dir, device="cpu", max_length=48)
    ours.save(tmp_path)
    theirs = _st(tmp_path)
    assert theirs.num_labels == ours.num_labels and theirs.max_seq_length == 48
    assert type(theirs.activation_fn) is type(ours.activation_fn)
    np.testing.assert_allclose(theirs.predict(pairs), ours.predict(pairs), atol=ATOL)


def test_their_folder_loads_here(tiny_ce_dir: Path, pairs: list[tuple[str, str]], tmp_path: Path) -> None:
    theirs = _st(tiny_ce_dir, activation_fn=torch.nn.Tanh())
    theirs.save(str(tmp_path))
    ours = CrossEncoder(tmp_path, device="cpu")
    assert isinstance(ours.activation_fn, torch.nn.Tanh)
    np.testing.assert_allclose(ours.predict(pairs), theirs.predict(pairs), atol=ATOL)
