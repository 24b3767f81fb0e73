"""sdk.util against plain numpy reference computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdk import util
from sdk.core.errors import InputError

rng = np.random.default_rng(1)
A = rng.normal(size=(7, 16)).astype(np.float32)
B = rng.normal(size=(9, 16)).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_matrix_similarities() -> None:
    np.testing.assert_allclose(util.cos_sim(A, B).numpy(), _unit(A) @ _unit(B).T, atol=1e-5)
    np.testing.assert_allclose(util.dot_score(A, B).numpy(), A @ B.T, atol=1e-4)
    np.testing.assert_allclose(util.euclidean_sim(A, B).numpy(), -np.linalg.norm(A[:, None] - B[None], axis=-1), atol=1e-4)
    np.testing.assert_allclose(util.manhattan_sim(A, B).numpy(), -np.abs(A[:, None] - B[None]).sum(-1), atol=1e-4)
    assert util.cos_sim(A[0], B).shape == (1, 9)
    assert util.cos_sim(torch.from_numpy(A), list(torch.from_numpy(B))).shape == (7, 9)


def test_pairwise_similarities() -> None:
    C = B[:7]
    np.testing.assert_allclose(util.pairwise_cos_sim(A, C).numpy(), (_unit(A) * _unit(C)).sum(1), atol=1e-5)
    np.testing.assert_allclose(util.pairwise_dot_score(A, C).numpy(), (A * C).sum(1), atol=1e-4)
    np.testing.assert_allclose(util.pairwise_euclidean_sim(A, C).numpy(), -np.linalg.norm(A - C, axis=1), atol=1e-4)
    np.testing.assert_allclose(util.pairwise_manhattan_sim(A, C).numpy(), -np.abs(A - C).sum(1), atol=1e-4)
    with pytest.raises(InputError, match="equal shapes"):
        util.pairwise_cos_sim(A, B)


def test_semantic_search_matches_brute_force_across_chunks() -> None:
    corpus = rng.normal(size=(250, 16)).astype(np.float32)
    hits = util.semantic_search(A, corpus, query_chunk_size=3, corpus_chunk_size=40, top_k=5)
    scores = _unit(A) @ _unit(corpus).T
    for q, row in enumerate(hits):
        assert [h["corpus_id"] for h in row] == list(np.argsort(-scores[q])[:5])
        assert row[0]["score"] == pytest.approx(float(scores[q].max()), abs=1e-5)
    dot_hits = util.semantic_search(A, corpus, top_k=3, score_function=util.dot_score)
    assert [h["corpus_id"] for h in dot_hits[0]] == list(np.argsort(-(A @ corpus.T)[0])[:3])


def test_paraphrase_mining_finds_duplicates() -> None:
    base = rng.normal(size=(20, 16)).astype(np.float32)
    emb = np.concatenate([base, base[:3] + 1e-3])
    pairs = util.paraphrase_mining_embeddings(emb, top_k=5, max_pairs=3, query_chunk_size=7, corpus_chunk_size=11)
    assert sorted((i, j) for _, i, j in pairs) == [(0, 20), (1, 21), (2, 22)]
    assert all(s > 0.99 for s, _, _ in pairs)


def test_paraphrase_mining_with_a_model(tiny_bert) -> None:
    texts = ["debian package", "debian package", "python list tuple", "vector search"]
    pairs = util.paraphrase_mining(tiny_bert, texts, top_k=3)
    assert pairs[0][1:] == [0, 1] and pairs[0][0] == pytest.approx(1.0, abs=1e-5)


def test_community_detection_groups_clusters() -> None:
    centres = rng.normal(size=(3, 16)).astype(np.float32) * 5
    members = [centres[c] + 0.1 * rng.normal(size=(n, 16)) for c, n in enumerate((12, 8, 2))]
    emb = np.concatenate(members).astype(np.float32)
    communities = util.community_detection(emb, threshold=0.9, min_community_size=5)
    assert [len(c) for c in communities] == [12, 8]
    assert communities[0] == list(range(12)) and communities[1] == list(range(12, 20))


def test_similarity_function_lookup() -> None:
    assert util.similarity_function("cos_sim") is util.cos_sim
    assert util.similarity_function("dot", pairwise=True) is util.pairwise_dot_score
    with pytest.raises(InputError, match="unknown similarity"):
        util.similarity_function("cosine-ish")
    with pytest.raises(InputError, match="not defined for float"):
        util.similarity_function("hamming")
