"""Cross-encoder losses against sentence-transformers' on the same tiny reranker, plus their input checks.

Each parity test loads one tiny random reranker folder twice (ours and sentence-transformers'
CrossEncoder, both in eval mode), runs both losses on the same seeded batch and compares the
loss value and every parameter's gradient.
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
from sdk.encoders.cross_encoder import CrossEncoder
from sdk.training.losses.cross import (
    BinaryCrossEntropyLoss,
    CrossEntropyLoss,
    MarginMSELoss,
    MultipleNegativesRankingLoss,
)
from sdk.training.losses.cross_listwise import (
    LambdaLoss,
    LambdaRankScheme,
    ListNetLoss,
    NDCGLoss1Scheme,
    NDCGLoss2PPScheme,
    NDCGLoss2Scheme,
    NoWeightingScheme,
)
from tests.encoder_fixtures import build_tiny_cross_encoder

st_losses = pytest.importorskip("sentence_transformers.cross_encoder.losses")

ATOL, RTOL = 1e-5, 1e-4
WORDS = (
    "how do i install a python package list tuple debian database vector search query document "
    "sentence text model encode file data system user error set can be it this that from why pip"
).split()


def _text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def _column(seed: int, rows: int, low: int = 6, high: int = 14) -> list[str]:
    rng = random.Random(seed)
    return [_text(rng, low, high) for _ in range(rows)]


def _queries(rows: int) -> list[str]:
    return _column(0, rows, 2, 6)


# -- models ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ce1_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("ce1"), num_labels=1)


@pytest.fixture(scope="module")
def ce3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("ce3"), num_labels=3, seed=1)


def _load_pair(folder: Path) -> tuple[CrossEncoder, Any]:
    from sentence_transformers import CrossEncoder as STCrossEncoder

    ours, theirs = CrossEncoder(folder, device="cpu"), STCrossEncoder(str(folder), device="cpu")
    return ours.eval(), theirs.eval()


@pytest.fixture(scope="module")
def models1(ce1_dir: Path) -> tuple[CrossEncoder, Any]:
    return _load_pair(ce1_dir)


@pytest.fixture(scope="module")
def models3(ce3_dir: Path) -> tuple[CrossEncoder, Any]:
    return _load_pair(ce3_dir)


def _grads(model: nn.Module) -> dict[str, torch.Tensor | None]:
    """Gradients keyed by the name below the first module (ours says auto_model, theirs model)."""
    out = {}
    for name, param in model.named_parameters():
        out[name.split(".", 2)[2]] = param.grad
        param.grad = None
    return out


def assert_parity(
    models: tuple[CrossEncoder, Any],
    make_ours: Callable[[nn.Module], nn.Module],
    make_theirs: Callable[[nn.Module], nn.Module],
    inputs: list[Any],
    labels: Any,
    their_labels: Any = None,
    seed: int | None = None,
) -> float:
    """Same batch through both losses: equal loss and equal gradient for every parameter."""
    ours, theirs = models
    ours.zero_grad(set_to_none=True)
    theirs.zero_grad(set_to_none=True)
    if seed is not None:
        torch.manual_seed(seed)
    our_loss = make_ours(ours)(inputs, labels)
    if seed is not None:
        torch.manual_seed(seed)
    their_loss = make_theirs(theirs)(inputs, labels if their_labels is None else their_labels)
    our_loss.backward()
    their_loss.backward()
    torch.testing.assert_close(our_loss, their_loss, atol=ATOL, rtol=RTOL)
    a, b = _grads(ours), _grads(theirs)
    assert a.keys() == b.keys() and len(a) == 41
    assert sum(g is not None for g in a.values()) > 30
    for name in a:
        assert (a[name] is None) == (b[name] is None), name
        if a[name] is not None:
            torch.testing.assert_close(a[name], b[name], atol=ATOL, rtol=RTOL, msg=lambda m, n=name: f"{n}: {m}")
    # the tiny model's gradients are small, so also compare the whole gradient relative to its size
    flat_a = torch.cat([g.flatten() for g in a.values() if g is not None])
    flat_b = torch.cat([g.flatten() for g in b.values() if g is not None])
    assert float(flat_b.norm()) > 0
    assert float((flat_a - flat_b).norm() / flat_b.norm()) < 1e-4
    return float(our_loss.detach())


# -- pointwise and classification ------------------------------------------------------------


@pytest.mark.parametrize("variant", ["binary", "float", "pos_weight", "sigmoid"])
def test_binary_cross_entropy_parity(models1, variant: str) -> None:
    rows = 6
    inputs = [_queries(rows), _column(1, rows)]
    labels = torch.tensor([1, 0, 1, 1, 0, 0]) if variant != "float" else torch.rand(rows, generator=torch.Generator().manual_seed(3))
    kwargs: dict[str, Any] = {}
    if variant == "pos_weight":
        kwargs["pos_weight"] = torch.tensor(3.0)
    if variant == "sigmoid":
        kwargs["activation_fn"] = nn.Sigmoid()
    loss = assert_parity(
        models1,
        lambda m: BinaryCrossEntropyLoss(m, **kwargs),
        lambda m: st_losses.BinaryCrossEntropyLoss(m, **kwargs),
        inputs, labels,
    )
    assert loss > 0


@pytest.mark.parametrize("shape", ["flat", "column", "probabilities"])
def test_cross_entropy_parity(models3, shape: str) -> None:
    rows = 6
    inputs = [_column(4, rows), _column(5, rows)]
    labels = torch.tensor([0, 2, 1, 1, 0, 2])
    if shape == "column":
        labels = labels.view(-1, 1)
    if shape == "probabilities":
        labels = torch.softmax(torch.randn(rows, 3, generator=torch.Generator().manual_seed(1)), dim=1)
    assert_parity(models3, CrossEntropyLoss, st_losses.CrossEntropyLoss, inputs, labels)


# -- in-batch ranking --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("columns", "kwargs"),
    [
        (2, {}),  # 4 drawn negatives per query from 5 others
        (3, {}),  # 4 drawn from 10 others, plus the hard negative
        (3, {"num_negatives": None}),  # every other row's documents
        (2, {"num_negatives": 50, "scale": 1.0, "activation_fn": None}),  # more than there are: all
        (4, {"num_negatives": 2, "activation_fn": nn.Identity(), "scale": 0}),
    ],
    ids=["pairs", "triplets", "all", "too-many", "identity"],
)
def test_multiple_negatives_ranking_parity(models1, columns: int, kwargs: dict[str, Any]) -> None:
    rows = 6
    inputs = [_queries(rows)] + [_column(10 + c, rows) for c in range(columns - 1)]
    assert_parity(
        models1,
        lambda m: MultipleNegativesRankingLoss(m, **kwargs),
        lambda m: st_losses.MultipleNegativesRankingLoss(m, **kwargs),
        inputs, None, seed=123,
    )


def test_in_batch_draw_matches_and_skips_own_row(models1) -> None:
    """The draw is sentence-transformers' (same seed, same documents) and never the query's own row."""
    ours, theirs = models1
    rows = 5
    candidates = [[f"p{r}" for r in range(rows)], [f"n{r}" for r in range(rows)]]
    mine = MultipleNegativesRankingLoss(ours, num_negatives=3)
    reference = st_losses.MultipleNegativesRankingLoss(theirs, num_negatives=3)
    for seed in range(5):
        torch.manual_seed(seed)
        drawn = mine.sample_in_batch_negatives(rows, candidates)
        torch.manual_seed(seed)
        assert drawn == list(reference.get_in_batch_negatives(candidates[0], candidates))
        assert len(drawn) == 3
        for column in drawn:
            for row, doc in enumerate(column):
                assert doc[1:] != str(row)
        for row in range(rows):  # without replacement: a query never gets the same document twice
            picked = [column[row] for column in drawn]
            assert len(set(picked)) == len(picked)


def test_zero_in_batch_negatives_uses_only_the_given_ones(models1) -> None:
    """num_negatives=0 (sentence-transformers raises here) ranks the positive against the hard negatives."""
    ours, _ = models1
    rows = 4
    inputs = [_queries(rows), _column(20, rows), _column(21, rows)]
    loss = MultipleNegativesRankingLoss(ours, num_negatives=0)
    assert loss.sample_in_batch_negatives(rows, inputs[1:]) == []
    with torch.no_grad():
        value = loss(inputs, None)
        pos = ours.predict(list(zip(inputs[0], inputs[1], strict=True)), activation_fn=nn.Identity(), convert_to_tensor=True)
        neg = ours.predict(list(zip(inputs[0], inputs[2], strict=True)), activation_fn=nn.Identity(), convert_to_tensor=True)
        logits = torch.sigmoid(torch.stack([pos, neg], dim=1)) * 10.0
        expected = torch.nn.functional.cross_entropy(logits, torch.zeros(rows, dtype=torch.long))
    torch.testing.assert_close(value, expected, atol=ATOL, rtol=RTOL)


# -- distillation --------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["margin", "margins", "scores", "score-list"])
def test_margin_mse_parity(models1, layout: str) -> None:
    rows = 5
    gen = torch.Generator().manual_seed(7)
    n_neg = 1 if layout == "margin" else 2
    inputs = [_queries(rows)] + [_column(30 + c, rows) for c in range(n_neg + 1)]
    labels: Any = {
        "margin": lambda: torch.randn(rows, generator=gen),
        "margins": lambda: torch.randn(rows, n_neg, generator=gen),
        "scores": lambda: torch.randn(rows, n_neg + 1, generator=gen),
        "score-list": lambda: list(torch.randn(rows, n_neg + 1, generator=gen)),
    }[layout]()
    assert_parity(models1, MarginMSELoss, st_losses.MarginMSELoss, inputs, labels)


# -- list-wise -------------------------------------------------------------------------------------


def _list_batch(rows: int = 4, seed: int = 40) -> tuple[list[Any], list[torch.Tensor]]:
    """Queries with 2..5 documents each and graded labels 0..3 (with ties)."""
    rng = random.Random(seed)
    lengths = [rng.randint(2, 5) for _ in range(rows)]
    lengths[0] = 5
    docs = [[_text(rng, 4, 12) for _ in range(n)] for n in lengths]
    labels = [torch.tensor([rng.choice([0, 0, 1, 2, 3]) for _ in range(n)]) for n in lengths]
    labels[1][0] = 3  # at least one row with a clear best document
    return [_queries(rows), docs], labels


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"mini_batch_size": 3}, {"mini_batch_size": 0}, {"activation_fn": nn.Sigmoid()}],
    ids=["default", "mini-batch-3", "all-at-once", "sigmoid"],
)
def test_list_net_parity(models1, kwargs: dict[str, Any]) -> None:
    inputs, labels = _list_batch()
    assert_parity(
        models1, lambda m: ListNetLoss(m, **kwargs), lambda m: st_losses.ListNetLoss(m, **kwargs), inputs, labels
    )


SCHEMES = {
    "ndcg2pp": (NDCGLoss2PPScheme, "NDCGLoss2PPScheme"),
    "ndcg1": (NDCGLoss1Scheme, "NDCGLoss1Scheme"),
    "ndcg2": (NDCGLoss2Scheme, "NDCGLoss2Scheme"),
    "lambdarank": (LambdaRankScheme, "LambdaRankScheme"),
    "none": (NoWeightingScheme, "NoWeightingScheme"),
}


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_lambda_loss_parity_per_scheme(models1, scheme: str) -> None:
    inputs, labels = _list_batch()
    ours_cls, theirs_name = SCHEMES[scheme]
    assert_parity(
        models1,
        lambda m: LambdaLoss(m, weighting_scheme=ours_cls()),
        lambda m: st_losses.LambdaLoss(m, weighting_scheme=getattr(st_losses, theirs_name)()),
        inputs, labels,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"k": 2, "sigma": 0.5},
        {"reduction_log": "natural", "mini_batch_size": 2, "activation_fn": nn.Sigmoid()},
        {"weighting_scheme": None, "k": 3, "eps": 1e-6},
    ],
    ids=["top2-sigma", "natural-minibatch-sigmoid", "no-scheme-top3"],
)
def test_lambda_loss_parity_options(models1, kwargs: dict[str, Any]) -> None:
    inputs, labels = _list_batch(rows=5, seed=41)
    assert_parity(
        models1, lambda m: LambdaLoss(m, **kwargs), lambda m: st_losses.LambdaLoss(m, **kwargs), inputs, labels
    )


def test_list_labels_layouts_agree(models1) -> None:
    """A list of lists and a padded tensor give the same loss as the collator's list of tensors."""
    ours, _ = models1
    inputs, labels = _list_batch()
    width = max(len(row) for row in labels)
    as_lists = [row.tolist() for row in labels]
    as_padded = torch.stack([torch.cat([row, torch.full((width - len(row),), -1)]) for row in labels])
    for loss in (ListNetLoss(ours), LambdaLoss(ours)):
        with torch.no_grad():
            reference = loss(inputs, labels)
            torch.testing.assert_close(loss(inputs, as_lists), reference)
            torch.testing.assert_close(loss(inputs, as_padded), reference)


# -- input checks ------------------------------------------------------------------------------


def test_wrong_num_labels_is_refused(models1, models3) -> None:
    one, three = models1[0], models3[0]
    for cls in (BinaryCrossEntropyLoss, MultipleNegativesRankingLoss, MarginMSELoss, ListNetLoss, LambdaLoss):
        with pytest.raises(InputError, match="1 output label"):
            cls(three)
    with pytest.raises(InputError, match="num_labels > 1"):
        CrossEntropyLoss(one)
    with pytest.raises(InputError, match="CrossEncoder"):
        BinaryCrossEntropyLoss(nn.Linear(2, 1))


def test_wrong_column_count_is_refused(models1, models3) -> None:
    one, three = models1[0], models3[0]
    q, d = _queries(3), _column(50, 3)
    cases = [
        (BinaryCrossEntropyLoss(one), [q, d, d], torch.ones(3)),
        (CrossEntropyLoss(three), [q], torch.zeros(3, dtype=torch.long)),
        (MultipleNegativesRankingLoss(one), [q], None),
        (MarginMSELoss(one), [q, d], torch.ones(3)),
        (ListNetLoss(one), [q, [[x] for x in d], d], [[1.0]] * 3),
        (LambdaLoss(one), [q], [[1.0]] * 3),
    ]
    for loss, inputs, labels in cases:
        with pytest.raises(InputError, match="text columns"):
            loss(inputs, labels)
    with pytest.raises(InputError, match="different lengths"):
        BinaryCrossEntropyLoss(one)([q, d[:2]], torch.ones(3))


def test_wrong_labels_are_refused(models1, models3) -> None:
    one, three = models1[0], models3[0]
    q, d, n = _queries(3), _column(50, 3), _column(51, 3)
    with pytest.raises(InputError, match="one label per row"):
        BinaryCrossEntropyLoss(one)([q, d], torch.ones(4))
    with pytest.raises(InputError, match="label column"):
        BinaryCrossEntropyLoss(one)([q, d], None)
    with pytest.raises(InputError, match="one class index per row"):
        CrossEntropyLoss(three)([q, d], torch.zeros(2, dtype=torch.long))
    with pytest.raises(InputError, match="outside the model's classes"):
        CrossEntropyLoss(three)([q, d], torch.tensor([0, 1, 3]))
    with pytest.raises(InputError, match="expected"):
        MarginMSELoss(one)([q, d, n], torch.ones(3, 4))
    docs = [[x, x] for x in d]
    for cls in (ListNetLoss, LambdaLoss):
        with pytest.raises(InputError, match="do not match labels"):
            cls(one)([q, docs], [[1, 0], [1, 0], [1]])
        with pytest.raises(InputError, match="one relevance list per query"):
            cls(one)([q, docs], torch.ones(3))
        with pytest.raises(InputError, match="not a list of documents"):
            cls(one)([q, d], [[1.0]] * 3)
        with pytest.raises(InputError, match="empty document list"):
            cls(one)([q, [["a"], [], ["b"]]], [[1.0], [], [0.0]])


def test_bad_settings_are_refused(models1) -> None:
    one = models1[0]
    with pytest.raises(InputError, match="num_negatives"):
        MultipleNegativesRankingLoss(one, num_negatives=-1)
    with pytest.raises(InputError, match="reduction_log"):
        LambdaLoss(one, reduction_log="log10")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="k must be"):
        LambdaLoss(one, k=0)
    with pytest.raises(InputError, match="pos_weight"):
        BinaryCrossEntropyLoss(one, pos_weight="4")  # type: ignore[arg-type]


def test_config_dicts_match_sentence_transformers(models1, models3) -> None:
    (one, st_one), three = models1, models3[0]
    pairs = [
        (BinaryCrossEntropyLoss(one, pos_weight=torch.tensor(2.0)),
         st_losses.BinaryCrossEntropyLoss(st_one, pos_weight=torch.tensor(2.0))),
        (CrossEntropyLoss(three), None),
        (MultipleNegativesRankingLoss(one), st_losses.MultipleNegativesRankingLoss(st_one)),
        (MarginMSELoss(one), st_losses.MarginMSELoss(st_one)),
        (ListNetLoss(one, mini_batch_size=8), st_losses.ListNetLoss(st_one, mini_batch_size=8)),
        (LambdaLoss(one, k=5), st_losses.LambdaLoss(st_one, k=5)),
    ]
    for ours, theirs in pairs:
        config = ours.get_config_dict()
        if theirs is None:
            assert config == {"activation_fn": "torch.nn.modules.linear.Identity"}
            continue
        expected = theirs.get_config_dict()
        assert config.keys() == expected.keys()
        for key, value in expected.items():
            if key == "weighting_scheme":
                assert config[key].rsplit(".", 1)[1] == value.rsplit(".", 1)[1]
            else:
                assert config[key] == value, key
    assert "LambdaLoss" in LambdaLoss(one).citation
