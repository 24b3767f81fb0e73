"""Dense (bi-encoder) losses: loss values and every parameter gradient equal sentence-transformers'.

Each case runs one seeded batch through the same tiny BERT folder loaded twice (ours and
sentence-transformers', eval mode: no dropout), with feature dicts built the way each side's
collator builds them, and compares the losses and the gradients parameter by parameter.
The cached (GradCache) loss is also compared with the plain one, across mini-batch sizes, and in
train mode (dropout on) with sentence-transformers' cached loss under the same seed, which only
matches if the second forward pass replays the first one's dropout masks.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from sdk.core.errors import InputError
from sdk.encoders.dense import DenseEncoder
from sdk.training.losses import dense as ours_losses
from sdk.training.losses.dense_cached import CachedMultipleNegativesRankingLoss
from sdk.training.losses.matryoshka import MatryoshkaLoss
from sdk.util import dot_score

st = pytest.importorskip("sentence_transformers")
from sentence_transformers.sentence_transformer import losses as st_losses  # noqa: E402

BATCH = 6
DIM = 32  # the tiny BERT's embedding width
_WORDS = ("how do i install a python package list tuple debian database vector search query document "
          "sentence text model encode file data system user error set value table key run type").split()


def _columns(n_columns: int, seed: int = 0) -> list[list[str]]:
    """A short query column, then longer columns of varied length (so padding differs by row)."""
    rng = random.Random(seed)
    spans = [(2, 5)] + [(3, 12)] * (n_columns - 1)
    return [[" ".join(rng.choice(_WORDS) for _ in range(rng.randint(lo, hi))) for _ in range(BATCH)]
            for lo, hi in spans]


class Pair:
    """Our encoder and sentence-transformers' copy of the same folder."""

    def __init__(self, folder: Path) -> None:
        from sentence_transformers import SentenceTransformer

        self.ours = DenseEncoder(folder, device="cpu").eval()
        self.theirs = SentenceTransformer(str(folder), device="cpu").eval()
        mine, ref = list(self.ours.parameters()), list(self.theirs.parameters())
        assert len(mine) == len(ref)
        for a, b in zip(mine, ref, strict=True):  # same order and values: gradients compare one to one
            assert a.shape == b.shape and torch.equal(a.detach(), b.detach())

    def features(self, columns: list[list[str]]) -> tuple[list[dict], list[dict]]:
        ours = [dict(self.ours.transformer.tokenize(texts)) for texts in columns]
        theirs = [dict(self.theirs.preprocess(texts)) for texts in columns]
        return ours, theirs

    def zero_grad(self) -> None:
        self.ours.zero_grad(set_to_none=True)
        self.theirs.zero_grad(set_to_none=True)


@pytest.fixture(scope="module")
def pair(tiny_bert_dir: Path) -> Pair:
    return Pair(tiny_bert_dir)


def _grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


def _run(loss: nn.Module, features: list[dict], labels: torch.Tensor | None, model: nn.Module,
         ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    value = loss(features, labels)
    value.backward()
    return value.detach(), _grads(model)


def _assert_same(a: tuple[torch.Tensor, list[torch.Tensor]], b: tuple[torch.Tensor, list[torch.Tensor]]) -> None:
    torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=1e-4)
    assert any(g.abs().sum() > 0 for g in b[1]), "the reference loss produced no gradient"
    for got, want in zip(a[1], b[1], strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


# -- one case per loss (and per notable option) --------------------------------------------------

Factory = Callable[[nn.Module], nn.Module]
_gen = torch.Generator().manual_seed(7)
SCORES = torch.rand(BATCH, generator=_gen)
CLASSES = torch.tensor([0, 1, 0, 2, 1, 2])
TEACHER = torch.randn(BATCH, DIM, generator=_gen)
TEACHER_PER_COLUMN = torch.randn(BATCH, 2, DIM, generator=_gen)
MARGINS = torch.randn(BATCH, generator=_gen)
RAW_SCORES = torch.randn(BATCH, 3, generator=_gen)

# id: (our loss, their loss, number of text columns, labels)
CASES: dict[str, tuple[Factory, Factory, int, torch.Tensor | None]] = {
    "mnrl-pairs": (ours_losses.MultipleNegativesRankingLoss, st_losses.MultipleNegativesRankingLoss, 2, None),
    "mnrl-3-negatives": (ours_losses.MultipleNegativesRankingLoss, st_losses.MultipleNegativesRankingLoss, 5, None),
    "mnrl-dot-scale1": (lambda m: ours_losses.MultipleNegativesRankingLoss(m, scale=1.0, similarity_fct=dot_score),
                        lambda m: st_losses.MultipleNegativesRankingLoss(m, scale=1.0,
                                                                         similarity_fct=st.util.dot_score), 3, None),
    "mnrl-gte-joint": (
        lambda m: ours_losses.MultipleNegativesRankingLoss(m, directions=ours_losses.DIRECTIONS),
        lambda m: st_losses.MultipleNegativesRankingLoss(m, directions=ours_losses.DIRECTIONS), 3, None),
    "mnrl-symmetric": (
        lambda m: ours_losses.MultipleNegativesRankingLoss(
            m, directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction"),
        lambda m: st_losses.MultipleNegativesRankingLoss(
            m, directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction"), 3, None),
    "mnrl-hard-negatives": (
        lambda m: ours_losses.MultipleNegativesRankingLoss(m, hardness_mode="hard_negatives", hardness_strength=5),
        lambda m: st_losses.MultipleNegativesRankingLoss(m, hardness_mode="hard_negatives", hardness_strength=5),
        3, None),
    "mnrl-all-negatives": (
        lambda m: ours_losses.MultipleNegativesRankingLoss(m, hardness_mode="all_negatives", hardness_strength=9),
        lambda m: st_losses.MultipleNegativesRankingLoss(m, hardness_mode="all_negatives", hardness_strength=9),
        3, None),
    "mnrl-in-batch": (
        lambda m: ours_losses.MultipleNegativesRankingLoss(m, hardness_mode="in_batch_negatives",
                                                           hardness_strength=9),
        lambda m: st_losses.MultipleNegativesRankingLoss(m, hardness_mode="in_batch_negatives",
                                                         hardness_strength=9), 2, None),
    "mnrl-gather-single-process": (
        lambda m: ours_losses.MultipleNegativesRankingLoss(m, gather_across_devices=True),
        lambda m: st_losses.MultipleNegativesRankingLoss(m, gather_across_devices=True), 3, None),
    "cached-mnrl": (lambda m: CachedMultipleNegativesRankingLoss(m, mini_batch_size=2),
                    lambda m: st_losses.CachedMultipleNegativesRankingLoss(m, mini_batch_size=2), 3, None),
    "cached-mnrl-gte": (
        lambda m: CachedMultipleNegativesRankingLoss(m, mini_batch_size=4, directions=ours_losses.DIRECTIONS,
                                                     hardness_mode="all_negatives", hardness_strength=3),
        lambda m: st_losses.CachedMultipleNegativesRankingLoss(
            m, mini_batch_size=4, directions=ours_losses.DIRECTIONS, hardness_mode="all_negatives",
            hardness_strength=3), 3, None),
    "cached-mnrl-token-budget": (
        lambda m: CachedMultipleNegativesRankingLoss(m, mini_batch_num_tokens=20),
        lambda m: st_losses.CachedMultipleNegativesRankingLoss(m, mini_batch_num_tokens=20), 2, None),
    "cosent": (ours_losses.CoSENTLoss, st_losses.CoSENTLoss, 2, SCORES),
    "cosent-tied-int-labels": (ours_losses.CoSENTLoss, st_losses.CoSENTLoss, 2, torch.tensor([1, 0, 1, 2, 0, 1])),
    "angle": (ours_losses.AnglELoss, st_losses.AnglELoss, 2, SCORES),
    "angle-triplets-no-labels": (ours_losses.AnglELoss, st_losses.AnglELoss, 4, None),
    "cosine-similarity": (ours_losses.CosineSimilarityLoss, st_losses.CosineSimilarityLoss, 2, SCORES),
    "cosine-similarity-l1": (lambda m: ours_losses.CosineSimilarityLoss(m, loss_fct=nn.L1Loss()),
                             lambda m: st_losses.CosineSimilarityLoss(m, loss_fct=nn.L1Loss()), 2, SCORES),
    "triplet-euclidean": (ours_losses.TripletLoss, st_losses.TripletLoss, 3, None),
    "triplet-cosine": (lambda m: ours_losses.TripletLoss(m, ours_losses.TripletDistanceMetric.COSINE, 0.5),
                       lambda m: st_losses.TripletLoss(m, st_losses.TripletDistanceMetric.COSINE, 0.5), 3, None),
    "triplet-manhattan": (lambda m: ours_losses.TripletLoss(m, ours_losses.TripletDistanceMetric.MANHATTAN, 2),
                          lambda m: st_losses.TripletLoss(m, st_losses.TripletDistanceMetric.MANHATTAN, 2), 3, None),
    "batch-hard-euclidean": (lambda m: ours_losses.BatchHardTripletLoss(m, margin=0.3),
                             lambda m: st_losses.BatchHardTripletLoss(m, margin=0.3), 1, CLASSES),
    "batch-hard-cosine": (
        lambda m: ours_losses.BatchHardTripletLoss(
            m, ours_losses.BatchHardTripletLossDistanceFunction.cosine_distance, margin=0.5),
        lambda m: st_losses.BatchHardTripletLoss(
            m, st_losses.BatchHardTripletLossDistanceFunction.cosine_distance, margin=0.5), 1, CLASSES),
    "mse-shared-teacher": (ours_losses.MSELoss, st_losses.MSELoss, 2, TEACHER),
    "mse-teacher-per-column": (ours_losses.MSELoss, st_losses.MSELoss, 2, TEACHER_PER_COLUMN),
    "margin-mse-1-negative": (ours_losses.MarginMSELoss, st_losses.MarginMSELoss, 3, MARGINS),
    "margin-mse-raw-scores": (ours_losses.MarginMSELoss, st_losses.MarginMSELoss, 4, RAW_SCORES),
    "matryoshka-mnrl": (
        lambda m: MatryoshkaLoss(m, ours_losses.MultipleNegativesRankingLoss(m), [32, 16, 8]),
        lambda m: st_losses.MatryoshkaLoss(m, st_losses.MultipleNegativesRankingLoss(m), [32, 16, 8]), 3, None),
    "matryoshka-cosent-weighted": (
        lambda m: MatryoshkaLoss(m, ours_losses.CoSENTLoss(m), [8, 32, 16], [3, 1, 2]),
        lambda m: st_losses.MatryoshkaLoss(m, st_losses.CoSENTLoss(m), [8, 32, 16], [3, 1, 2]), 2, SCORES),
    "matryoshka-cached-mnrl": (
        lambda m: MatryoshkaLoss(m, CachedMultipleNegativesRankingLoss(m, mini_batch_size=2), [32, 16, 8]),
        lambda m: st_losses.MatryoshkaLoss(m, st_losses.CachedMultipleNegativesRankingLoss(m, mini_batch_size=2),
                                           [32, 16, 8]), 3, None),
    "matryoshka-mse-truncates-teacher": (
        lambda m: MatryoshkaLoss(m, ours_losses.MSELoss(m), [32, 16]),
        lambda m: st_losses.MatryoshkaLoss(m, st_losses.MSELoss(m), [32, 16]), 2, TEACHER),
}


@pytest.mark.parametrize("case", list(CASES))
def test_loss_and_gradients_match_sentence_transformers(pair: Pair, case: str) -> None:
    make_ours, make_theirs, n_columns, labels = CASES[case]
    ours_features, their_features = pair.features(_columns(n_columns))
    got = _run(make_ours(pair.ours), ours_features, labels, pair.ours)
    want = _run(make_theirs(pair.theirs), their_features, labels, pair.theirs)
    _assert_same(got, want)


def test_config_dicts_match_sentence_transformers(pair: Pair) -> None:
    for make_ours, make_theirs in [
        (ours_losses.MultipleNegativesRankingLoss, st_losses.MultipleNegativesRankingLoss),
        (ours_losses.CoSENTLoss, st_losses.CoSENTLoss),
        (ours_losses.TripletLoss, st_losses.TripletLoss),
        (ours_losses.BatchHardTripletLoss, st_losses.BatchHardTripletLoss),
        (ours_losses.MarginMSELoss, st_losses.MarginMSELoss),
        (ours_losses.MSELoss, st_losses.MSELoss),
        (lambda m: CachedMultipleNegativesRankingLoss(m, mini_batch_size=4),
         lambda m: st_losses.CachedMultipleNegativesRankingLoss(m, mini_batch_size=4)),
    ]:
        assert make_ours(pair.ours).get_config_dict() == make_theirs(pair.theirs).get_config_dict()
    assert ours_losses.BatchHardTripletLossDistanceFunction.eucledian_distance is (
        ours_losses.BatchHardTripletLossDistanceFunction.euclidean_distance)


# -- GradCache ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mini_batch_size", [1, 2, BATCH])
def test_cached_mnrl_equals_plain_mnrl(pair: Pair, mini_batch_size: int) -> None:
    features, _ = pair.features(_columns(3, seed=1))
    plain = _run(ours_losses.MultipleNegativesRankingLoss(pair.ours), features, None, pair.ours)
    cached = _run(CachedMultipleNegativesRankingLoss(pair.ours, mini_batch_size=mini_batch_size), features, None,
                  pair.ours)
    _assert_same(cached, plain)


def test_cached_mnrl_replays_dropout_like_sentence_transformers(pair: Pair) -> None:
    ours_features, their_features = pair.features(_columns(3, seed=2))
    results = []
    try:
        for model, features, loss in [
            (pair.ours, ours_features, CachedMultipleNegativesRankingLoss(pair.ours, mini_batch_size=2)),
            (pair.theirs, their_features, st_losses.CachedMultipleNegativesRankingLoss(pair.theirs,
                                                                                        mini_batch_size=2)),
        ]:
            model.train()
            torch.manual_seed(123)
            results.append(_run(loss, features, None, model))
    finally:
        pair.ours.eval()
        pair.theirs.eval()
    _assert_same(results[0], results[1])
    # dropout was really on: the eval-mode loss differs
    with torch.no_grad():
        eval_loss = CachedMultipleNegativesRankingLoss(pair.ours, mini_batch_size=2)(ours_features, None)
    assert abs(float(eval_loss) - float(results[0][0])) > 1e-4


def test_cached_backward_takes_the_outer_gradient_factor(pair: Pair) -> None:
    """transformers.Trainer divides by the accumulation steps (and scales for fp16) before backward."""
    features, _ = pair.features(_columns(2, seed=3))
    loss = CachedMultipleNegativesRankingLoss(pair.ours, mini_batch_size=2)
    full = _run(loss, features, None, pair.ours)
    pair.ours.zero_grad(set_to_none=True)
    (loss(features, None) / 4).backward()
    for got, want in zip(_grads(pair.ours), full[1], strict=True):
        torch.testing.assert_close(got, want / 4, atol=1e-6, rtol=1e-4)


def test_cached_evaluation_needs_no_backward(pair: Pair) -> None:
    features, _ = pair.features(_columns(2, seed=4))
    with torch.no_grad():
        cached = CachedMultipleNegativesRankingLoss(pair.ours, mini_batch_size=2)(features, None)
        plain = ours_losses.MultipleNegativesRankingLoss(pair.ours)(features, None)
    assert not cached.requires_grad
    torch.testing.assert_close(cached, plain, atol=1e-6, rtol=1e-5)


def test_matryoshka_leaves_the_inner_loss_unchanged(pair: Pair) -> None:
    features, _ = pair.features(_columns(2, seed=5))
    inner = ours_losses.MultipleNegativesRankingLoss(pair.ours)
    before = inner(features, None).item()
    MatryoshkaLoss(pair.ours, inner, [32, 8])(features, None)
    assert "embed" not in vars(inner)
    assert inner(features, None).item() == pytest.approx(before, abs=1e-6)


# -- input validation -------------------------------------------------------------------------------

BAD_INPUTS: dict[str, tuple[Callable[[nn.Module], nn.Module], int, Any]] = {
    "mnrl-one-column": (ours_losses.MultipleNegativesRankingLoss, 1, None),
    "cached-one-column": (CachedMultipleNegativesRankingLoss, 1, None),
    "cosent-three-columns": (ours_losses.CoSENTLoss, 3, SCORES),
    "cosent-no-labels": (ours_losses.CoSENTLoss, 2, None),
    "cosent-wrong-label-count": (ours_losses.CoSENTLoss, 2, SCORES[:4]),
    "angle-pairs-no-labels": (ours_losses.AnglELoss, 2, None),
    "cosine-no-labels": (ours_losses.CosineSimilarityLoss, 2, None),
    "triplet-two-columns": (ours_losses.TripletLoss, 2, None),
    "batch-hard-two-columns": (ours_losses.BatchHardTripletLoss, 2, CLASSES),
    "batch-hard-no-labels": (ours_losses.BatchHardTripletLoss, 1, None),
    "mse-no-labels": (ours_losses.MSELoss, 2, None),
    "mse-1d-labels": (ours_losses.MSELoss, 1, SCORES),
    "mse-label-columns": (ours_losses.MSELoss, 3, TEACHER_PER_COLUMN),
    "margin-mse-two-columns": (ours_losses.MarginMSELoss, 2, MARGINS),
    "margin-mse-no-labels": (ours_losses.MarginMSELoss, 3, None),
    "margin-mse-label-shape": (ours_losses.MarginMSELoss, 3, RAW_SCORES),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_wrong_columns_or_labels_raise_input_error(pair: Pair, case: str) -> None:
    make, n_columns, labels = BAD_INPUTS[case]
    features, _ = pair.features(_columns(n_columns))
    with pytest.raises(InputError):
        make(pair.ours)(features, labels)


@pytest.mark.parametrize("kwargs", [
    {"matryoshka_dims": [64, 32]},
    {"matryoshka_dims": []},
    {"matryoshka_dims": [32, 0]},
    {"matryoshka_dims": [32, 16], "matryoshka_weights": [1]},
])
def test_matryoshka_rejects_bad_dimensions(pair: Pair, kwargs: dict) -> None:
    with pytest.raises(InputError):
        MatryoshkaLoss(pair.ours, ours_losses.CoSENTLoss(pair.ours), **kwargs)


@pytest.mark.parametrize("kwargs", [
    {"scale": 0},
    {"directions": ("doc_to_query",)},
    {"directions": ("query_to_doc", "query_to_query"), "partition_mode": "per_direction"},
    {"hardness_mode": "hardest"},
    {"hardness_strength": -1.0},
])
def test_mnrl_rejects_bad_options(pair: Pair, kwargs: dict) -> None:
    with pytest.raises(InputError):
        ours_losses.MultipleNegativesRankingLoss(pair.ours, **kwargs)
    with pytest.raises(InputError):
        CachedMultipleNegativesRankingLoss(pair.ours, **kwargs)
