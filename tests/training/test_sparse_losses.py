"""Sparse (SPLADE) losses: loss values, every loss part and every parameter gradient equal sentence-transformers'.

Each case runs one seeded batch through the same tiny SPLADE model loaded twice (ours and
sentence-transformers', eval mode) and compares our loss with theirs. sentence-transformers'
main sparse losses refuse to run alone, so alone they are compared through their
``compute_loss_from_embeddings`` on embeddings from their own column embedding. A Router model
(inference-free: static query weights, MLM documents) checks that column 0 takes the query
route and the other columns the document route.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from sdk import util
from sdk.core.errors import InputError
from sdk.encoders.modules import MLMTransformer, Router, SparseStaticEmbedding, SpladePooling
from sdk.encoders.sparse import SparseEncoder
from sdk.training.losses.sparse import (
    FlopsLoss,
    SparseCoSENTLoss,
    SparseDistillKLDivLoss,
    SparseMarginMSELoss,
    SparseMSELoss,
    SparseMultipleNegativesRankingLoss,
    SparseTripletLoss,
    SpladeLoss,
    TripletDistanceMetric,
    embed_columns,
)
from tests.encoder_fixtures import build_tiny_mlm, splade_tiny_dir

st = pytest.importorskip("sentence_transformers")
from sentence_transformers.sentence_transformer.losses import TripletDistanceMetric as STTripletDistanceMetric  # noqa: E402
from sentence_transformers.sparse_encoder import losses as st_losses  # noqa: E402

BATCH = 6
_WORDS = ("how do i install a python package list tuple debian database vector search query document "
          "sentence text model encode file data system user error set value table key pip run type").split()


def _texts(rng: random.Random, n: int, lo: int, hi: int) -> list[str]:
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(lo, hi))) for _ in range(n)]


def _columns(n_columns: int, seed: int = 0) -> list[list[str]]:
    """A short query column, then longer document columns (different widths, so merging pads)."""
    rng = random.Random(seed)
    return [_texts(rng, BATCH, 2, 5)] + [_texts(rng, BATCH, 4, 14) for _ in range(n_columns - 1)]


def _fresh(features: list[dict]) -> list[dict]:
    """Copies of their feature dicts: their model writes its outputs into the dicts it gets (a stale
    ``sentence_embedding`` would then be multiplied into the static query module's output)."""
    return [dict(f) for f in features]


class Pair:
    """Our model and sentence-transformers' copy of it, with feature builders for each."""

    def __init__(self, ours: SparseEncoder, theirs: Any, routed: bool) -> None:
        self.ours, self.theirs, self.routed = ours.eval(), theirs.eval(), routed
        for module in theirs.modules():  # their pooling works in place in eval mode, breaking backward;
            if type(module).__name__ == "SpladePooling":  # it has no dropout, so train mode changes nothing else
                module.train()
        mine, ref = list(self.ours.parameters()), list(self.theirs.parameters())
        assert len(mine) == len(ref)
        for a, b in zip(mine, ref, strict=True):  # same order, same values: gradients compare one to one
            assert a.shape == b.shape and torch.equal(a.detach(), b.detach())

    def task(self, column: int) -> str | None:
        return ("query" if column == 0 else "document") if self.routed else None

    def features(self, columns: list[list[str]]) -> tuple[list[dict], list[dict]]:
        """Ours as our collator builds them; theirs as their collator with a router mapping does."""
        ours, theirs = [], []
        for i, texts in enumerate(columns):
            task = self.task(i)
            first = self.ours[0]
            mine = dict(first.tokenize(texts, task=task) if isinstance(first, Router) else first.tokenize(texts))
            ref = dict(self.theirs.preprocess(texts, task=task) if task else self.theirs.preprocess(texts))
            if task:
                mine["task"] = ref["task"] = task
            ours.append(mine)
            theirs.append(ref)
        return ours, theirs


def _routed_pair(mlm_dir: Path, folder: Path) -> Pair:
    from sentence_transformers import SparseEncoder as STSparseEncoder

    mlm = MLMTransformer.load(mlm_dir)
    weight = torch.rand(len(mlm.tokenizer.get_vocab()), generator=torch.Generator().manual_seed(1)) + 0.5
    router = Router.for_query_document([SparseStaticEmbedding(mlm.tokenizer, weight)], [mlm, SpladePooling("max")])
    ours = SparseEncoder(modules=[router], device="cpu")
    ours.save(folder)
    return Pair(ours, STSparseEncoder(str(folder), device="cpu"), routed=True)


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_mlm(tmp_path_factory.mktemp("tiny-mlm"))


@pytest.fixture(scope="module")
def plain(mlm_dir: Path) -> Pair:
    from sentence_transformers import SparseEncoder as STSparseEncoder

    return Pair(SparseEncoder(mlm_dir, device="cpu"), STSparseEncoder(str(mlm_dir), device="cpu"), routed=False)


@pytest.fixture(scope="module")
def routed(mlm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    return _routed_pair(mlm_dir, tmp_path_factory.mktemp("routed"))


@pytest.fixture(scope="module", params=["plain", "routed"])
def pair(request: pytest.FixtureRequest) -> Pair:
    return request.getfixturevalue(request.param)


# -- running a loss on both sides and comparing -----------------------------------------------


def _run(model: torch.nn.Module, compute: Callable[[], Any]) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    out = compute()
    parts = out if isinstance(out, dict) else {"loss": out}
    sum(parts.values()).backward()
    grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return {k: v.detach() for k, v in parts.items()}, grads


def _assert_same(pair: Pair, ours: Callable[[], Any], theirs: Callable[[], Any]) -> dict[str, torch.Tensor]:
    mine, my_grads = _run(pair.ours, ours)
    ref, ref_grads = _run(pair.theirs, theirs)
    assert mine.keys() == ref.keys()
    for key in ref:
        assert torch.isfinite(ref[key])
        torch.testing.assert_close(mine[key], ref[key], atol=1e-5, rtol=1e-4, msg=f"loss part {key}")
    assert any(g.abs().sum() > 0 for g in ref_grads)
    for i, (a, b) in enumerate(zip(my_grads, ref_grads, strict=True)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=f"gradient of parameter {i}")
    return mine


def _labels(kind: str, n_columns: int) -> torch.Tensor | None:
    gen = torch.Generator().manual_seed(7)
    if kind == "margin":
        return torch.randn(BATCH, generator=gen) * 3
    if kind == "scores":  # raw teacher scores, one per candidate column
        return torch.randn(BATCH, n_columns - 1, generator=gen) * 4
    if kind == "similarity":
        return torch.tensor([0.9, 0.1, 0.5, 0.5, 0.0, 1.0])
    return None


# (id, our main loss, their main loss, columns, labels)
MAIN_LOSSES = [
    ("mnrl-pairs", lambda m: SparseMultipleNegativesRankingLoss(m),
     lambda m: st_losses.SparseMultipleNegativesRankingLoss(m), 2, None),
    ("mnrl-hard-negatives", lambda m: SparseMultipleNegativesRankingLoss(m),
     lambda m: st_losses.SparseMultipleNegativesRankingLoss(m), 4, None),
    ("mnrl-cosine-all-directions",
     lambda m: SparseMultipleNegativesRankingLoss(m, scale=20.0, similarity_fct=util.cos_sim,
                                                  directions=("query_to_doc", "query_to_query", "doc_to_query",
                                                              "doc_to_doc")),
     lambda m: st_losses.SparseMultipleNegativesRankingLoss(
         m, scale=20.0, similarity_fct=st.util.cos_sim,
         directions=("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")), 3, None),
    ("mnrl-per-direction",
     lambda m: SparseMultipleNegativesRankingLoss(m, scale=0.5, directions=("query_to_doc", "doc_to_query"),
                                                  partition_mode="per_direction"),
     lambda m: st_losses.SparseMultipleNegativesRankingLoss(m, scale=0.5, directions=("query_to_doc", "doc_to_query"),
                                                            partition_mode="per_direction"), 3, None),
    *[(f"mnrl-hardness-{mode}",
       lambda m, mode=mode: SparseMultipleNegativesRankingLoss(m, hardness_mode=mode, hardness_strength=0.3),
       lambda m, mode=mode: st_losses.SparseMultipleNegativesRankingLoss(m, hardness_mode=mode, hardness_strength=0.3),
       3, None) for mode in ("in_batch_negatives", "hard_negatives", "all_negatives")],
    ("margin-mse", lambda m: SparseMarginMSELoss(m), lambda m: st_losses.SparseMarginMSELoss(m), 3, "margin"),
    ("margin-mse-raw-scores", lambda m: SparseMarginMSELoss(m), lambda m: st_losses.SparseMarginMSELoss(m), 4,
     "scores"),
    ("distill-kl", lambda m: SparseDistillKLDivLoss(m), lambda m: st_losses.SparseDistillKLDivLoss(m), 4, "scores"),
    ("distill-kl-temperatures", lambda m: SparseDistillKLDivLoss(m, temperature=1.0, teacher_temperature=3.0),
     lambda m: st_losses.SparseDistillKLDivLoss(m, temperature=1.0, teacher_temperature=3.0), 3, "scores"),
    ("cosent", lambda m: SparseCoSENTLoss(m), lambda m: st_losses.SparseCoSENTLoss(m), 2, "similarity"),
    ("triplet", lambda m: SparseTripletLoss(m), lambda m: st_losses.SparseTripletLoss(m), 3, None),
    ("triplet-cosine", lambda m: SparseTripletLoss(m, distance_metric=TripletDistanceMetric.COSINE, triplet_margin=0.3),
     lambda m: st_losses.SparseTripletLoss(m, distance_metric=STTripletDistanceMetric.COSINE,
                                           triplet_margin=0.3), 3, None),
]


@pytest.mark.parametrize(("ours_main", "theirs_main", "n_columns", "label_kind"),
                         [case[1:] for case in MAIN_LOSSES], ids=[case[0] for case in MAIN_LOSSES])
def test_splade_loss_matches(pair: Pair, ours_main: Callable, theirs_main: Callable, n_columns: int,
                             label_kind: str | None) -> None:
    """SpladeLoss around each main loss: every part and every gradient (large weights, so FLOPS counts)."""
    mine, ref = pair.features(_columns(n_columns))
    labels = _labels(label_kind, n_columns)
    ours = SpladeLoss(pair.ours, ours_main(pair.ours), document_regularizer_weight=0.3, query_regularizer_weight=0.2)
    theirs = st_losses.SpladeLoss(pair.theirs, theirs_main(pair.theirs), document_regularizer_weight=0.3,
                                  query_regularizer_weight=0.2)
    parts = _assert_same(pair, lambda: ours(mine, labels), lambda: theirs(_fresh(ref), labels))
    assert set(parts) == {"base_loss", "document_regularizer_loss", "query_regularizer_loss"}


ALONE = [case for case in MAIN_LOSSES
         if case[0] in ("mnrl-hard-negatives", "margin-mse-raw-scores", "distill-kl", "cosent", "triplet")]


@pytest.mark.parametrize(("ours_main", "theirs_main", "n_columns", "label_kind"),
                         [case[1:] for case in ALONE], ids=[case[0] for case in ALONE])
def test_main_loss_alone_matches(plain: Pair, ours_main: Callable, theirs_main: Callable, n_columns: int,
                                 label_kind: str | None) -> None:
    from sentence_transformers.base.losses.merged_forward import embed_columns as st_embed_columns

    mine, ref = plain.features(_columns(n_columns, seed=3))
    labels = _labels(label_kind, n_columns)
    ours, theirs = ours_main(plain.ours), theirs_main(plain.theirs)
    _assert_same(plain, lambda: ours(mine, labels),
                 lambda: theirs.compute_loss_from_embeddings(st_embed_columns(plain.theirs, _fresh(ref)), labels))


def test_flops_thresholds_and_document_only(pair: Pair) -> None:
    mine, ref = pair.features(_columns(3, seed=5))
    with torch.no_grad():
        active = torch.cat(embed_columns(lambda f: pair.ours(dict(f))["sentence_embedding"], mine)).ne(0).sum(1)
    threshold = int(active.float().median())  # some rows are kept, some masked out
    assert (active > threshold).any() and (active <= threshold).any()
    kwargs = dict(document_regularizer_weight=0.5, query_regularizer_weight=0.4,
                  document_regularizer_threshold=threshold, query_regularizer_threshold=threshold // 2)
    ours = SpladeLoss(pair.ours, SparseMultipleNegativesRankingLoss(pair.ours), **kwargs)
    theirs = st_losses.SpladeLoss(pair.theirs, st_losses.SparseMultipleNegativesRankingLoss(pair.theirs), **kwargs)
    _assert_same(pair, lambda: ours(mine, None), lambda: theirs(_fresh(ref), None))
    assert ours.get_config_dict()["document_regularizer_threshold"] == threshold

    ours = SpladeLoss(pair.ours, SparseMultipleNegativesRankingLoss(pair.ours), document_regularizer_weight=0.5,
                      use_document_regularizer_only=True)
    theirs = st_losses.SpladeLoss(pair.theirs, st_losses.SparseMultipleNegativesRankingLoss(pair.theirs),
                                  document_regularizer_weight=0.5, use_document_regularizer_only=True)
    parts = _assert_same(pair, lambda: ours(mine, None), lambda: theirs(_fresh(ref), None))
    assert set(parts) == {"base_loss", "document_regularizer_loss"}


def test_flops_and_mse_alone(plain: Pair) -> None:
    from sentence_transformers.base.losses.merged_forward import embed_columns as st_embed_columns

    mine, ref = plain.features(_columns(2, seed=9))
    flops_ours, flops_theirs = FlopsLoss(plain.ours, threshold=3), st_losses.FlopsLoss(plain.theirs, threshold=3)
    _assert_same(plain, lambda: flops_ours(mine, None), lambda: flops_theirs.compute_loss_from_embeddings(
        torch.cat(st_embed_columns(plain.theirs, _fresh(ref), separate_first=False))))
    with torch.no_grad():
        teacher = torch.relu(torch.randn(BATCH, 2, plain.ours.get_embedding_dimension(),
                                         generator=torch.Generator().manual_seed(2)))
    mse_ours, mse_theirs = SparseMSELoss(plain.ours), st_losses.SparseMSELoss(plain.theirs)
    _assert_same(plain, lambda: mse_ours(mine, teacher), lambda: mse_theirs(_fresh(ref), teacher))
    _assert_same(plain, lambda: mse_ours(mine, teacher[:, 0]), lambda: mse_theirs(_fresh(ref), teacher[:, 0]))


def test_cosent_sets_cosine_and_configs(plain: Pair) -> None:
    before = plain.ours.similarity_fn_name
    try:
        SparseCoSENTLoss(plain.ours)
        assert plain.ours.similarity_fn_name.value == "cosine"
    finally:
        plain.ours.similarity_fn_name = before
    main = SparseMultipleNegativesRankingLoss(plain.ours)
    assert main.get_config_dict()["similarity_fct"] == "dot_score"
    assert SparseTripletLoss(plain.ours).get_config_dict() == {"distance_metric": "TripletDistanceMetric.EUCLIDEAN",
                                                               "triplet_margin": 5}
    assert SparseDistillKLDivLoss(plain.ours).get_config_dict() == {"similarity_fct": "pairwise_dot_score",
                                                                    "temperature": 2.0}
    config = SpladeLoss(plain.ours, main, document_regularizer_weight=3e-5, query_regularizer_weight=5e-5).get_config_dict()
    assert config["loss"].startswith("SparseMultipleNegativesRankingLoss(scale=1.0")
    assert config["document_regularizer_weight"] == 3e-5 and config["query_regularizer_weight"] == 5e-5
    assert SparseTripletLoss(plain.ours, distance_metric="manhattan").distance_metric is TripletDistanceMetric.MANHATTAN


def test_column_merging_runs_documents_once(plain: Pair) -> None:
    """Columns of one kind share a forward pass; the values equal one pass per column."""
    mine, _ = plain.features(_columns(4, seed=11))
    calls: list[int] = []

    def embed(features: dict) -> torch.Tensor:
        calls.append(features["input_ids"].shape[0])
        return plain.ours(dict(features))["sentence_embedding"]

    with torch.no_grad():
        merged = embed_columns(embed, mine)
        assert calls == [BATCH, 3 * BATCH]
        for a, f in zip(merged, mine, strict=True):
            torch.testing.assert_close(a, embed(f), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_real_splade_tiny(tmp_path: Path) -> None:
    """The packaged SPLADE-tiny (30k vocabulary): plain, and as the document route of an inference-free Router."""
    from sentence_transformers import SparseEncoder as STSparseEncoder

    folder = splade_tiny_dir()
    if folder is None:
        pytest.skip("SPLADE-tiny (package cognition) is not installed")
    plain_pair = Pair(SparseEncoder(folder, device="cpu"), STSparseEncoder(str(folder), device="cpu"), routed=False)
    _check_real(plain_pair, SparseMultipleNegativesRankingLoss, st_losses.SparseMultipleNegativesRankingLoss)
    _check_real(_routed_pair(folder, tmp_path / "routed"), SparseMarginMSELoss, st_losses.SparseMarginMSELoss)


def _check_real(pair: Pair, ours_main: Callable, theirs_main: Callable) -> None:
    mine, ref = pair.features(_columns(3, seed=13))
    labels = _labels("margin", 3)
    ours = SpladeLoss(pair.ours, ours_main(pair.ours), document_regularizer_weight=0.01, query_regularizer_weight=0.02)
    theirs = st_losses.SpladeLoss(pair.theirs, theirs_main(pair.theirs), document_regularizer_weight=0.01,
                                  query_regularizer_weight=0.02)
    _assert_same(pair, lambda: ours(mine, labels), lambda: theirs(_fresh(ref), labels))


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "message"), [
    (lambda m: SparseMultipleNegativesRankingLoss(m, scale=0), "scale"),
    (lambda m: SparseMultipleNegativesRankingLoss(m, directions=("doc_to_query",)), "query_to_doc"),
    (lambda m: SparseMultipleNegativesRankingLoss(m, directions=("query_to_doc", "sideways")), "directions"),
    (lambda m: SparseMultipleNegativesRankingLoss(m, partition_mode="both"), "partition_mode"),
    (lambda m: SparseMultipleNegativesRankingLoss(m, directions=("query_to_doc", "doc_to_doc"),
                                                  partition_mode="per_direction"), "joint"),
    (lambda m: SparseMultipleNegativesRankingLoss(m, hardness_mode="hardest"), "hardness_mode"),
    (lambda m: SparseMultipleNegativesRankingLoss(m, hardness_strength=-1.0), "hardness_strength"),
    (lambda m: SparseMultipleNegativesRankingLoss(m, similarity_fct=42), "similarity_fct"),
    (lambda m: SparseDistillKLDivLoss(m, temperature=0), "temperature"),
    (lambda m: SparseDistillKLDivLoss(m, teacher_temperature=float("inf")), "teacher_temperature"),
    (lambda m: SparseTripletLoss(m, distance_metric="hamming"), "distance_metric"),
    (lambda m: FlopsLoss(m, threshold=-1), "threshold"),
    (lambda m: SpladeLoss(m, torch.nn.MSELoss(), document_regularizer_weight=1e-3), "compute_loss_from_embeddings"),
    (lambda m: SpladeLoss(m, FlopsLoss(m), document_regularizer_weight=1e-3), "main loss"),
    (lambda m: SpladeLoss(m, SparseMarginMSELoss(m), document_regularizer_weight=None), "document_regularizer_weight"),
    (lambda m: SpladeLoss(m, SparseMarginMSELoss(m), 1e-3, query_regularizer_weight=-1.0), "query_regularizer_weight"),
])
def test_bad_settings_raise(plain: Pair, make: Callable, message: str) -> None:
    with pytest.raises(InputError, match=message):
        make(plain.ours)


def test_bad_batches_raise(plain: Pair) -> None:
    model = plain.ours
    two, _ = plain.features(_columns(2))
    three, _ = plain.features(_columns(3))
    cases = [
        (SparseMultipleNegativesRankingLoss(model), two[:1], None, "2 or more"),
        (SparseMarginMSELoss(model), two, torch.zeros(BATCH), "3 or more"),
        (SparseMarginMSELoss(model), three, None, "label column"),
        (SparseMarginMSELoss(model), three, torch.zeros(BATCH, 5), "labels have shape"),
        (SparseMarginMSELoss(model), three, [torch.zeros(2)] * BATCH, "one tensor"),
        (SparseDistillKLDivLoss(model), two, torch.zeros(BATCH, 1), "3 or more"),
        (SparseDistillKLDivLoss(model), three, torch.zeros(BATCH, 3), "shape"),
        (SparseDistillKLDivLoss(model), three, torch.full((BATCH, 2), float("nan")), "NaN"),
        (SparseCoSENTLoss(model), three, torch.zeros(BATCH), "2 \\(text1, text2\\)"),
        (SparseCoSENTLoss(model), two, torch.zeros(BATCH + 1), "one label per pair"),
        (SparseTripletLoss(model), two, None, "3 \\(anchor"),
        (SparseMSELoss(model), two, None, "label column"),
        (SparseMSELoss(model), two, torch.zeros(BATCH, 3, 7), "teacher embeddings"),
        (SparseMSELoss(model), two, torch.zeros(BATCH, 7), "same vocabulary"),
        (SpladeLoss(model, SparseMultipleNegativesRankingLoss(model), 1e-3, 1e-3), two[:1], None, "use_document"),
    ]
    try:
        for loss, features, labels, message in cases:
            with pytest.raises(InputError, match=message):
                loss(features, labels)
    finally:
        model.similarity_fn_name = "dot"  # SparseCoSENTLoss switched the shared model to cosine
