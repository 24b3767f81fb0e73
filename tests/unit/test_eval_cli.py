"""MAP@k, the retrieval and reranker evaluators, and ``sdk eval`` driven in process on a small subset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters import connect
from sdk.cli.main import main
from sdk.evaluation import (
    BeirDataset,
    RerankerEvaluator,
    RetrievalEvaluator,
    index_dataset,
    load_beir,
    map_at_k,
    score_run,
)
from sdk.retrieval import RetrievalPipeline
from tests.conftest import build_tiny_bert
from tests.encoder_fixtures import build_tiny_cross_encoder, build_tiny_mlm, mini_pyfaq
from tests.unit.retrieval_fakes import FakeDense, FakeReranker, FakeSparse

N_QUERIES = 6


def test_map_at_k_by_hand() -> None:
    qrels = {"q1": {"a": 1, "c": 1}, "q2": {"x": 1}, "q3": {"z": 0}}
    run = {"q1": ["a", "b", "c"], "q2": ["y", "x"], "q3": ["z"]}
    # q1: (1/1 + 2/3) / 2; q2: (1/2) / 1; q3 has no relevant document and does not count
    assert map_at_k(run, qrels, 10) == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2)
    assert map_at_k(run, qrels, 1) == pytest.approx((1.0 + 0.0) / 2)
    assert score_run(run, qrels)["map@100"] == pytest.approx(map_at_k(run, qrels, 100))


@pytest.fixture(scope="module")
def mini_beir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real BEIR folder: a few pyfaq test queries, their answers and 40 distractors."""
    return mini_pyfaq(tmp_path_factory.mktemp("mini-beir"), N_QUERIES, None, 300, distractors=40)


def test_retrieval_and_reranker_evaluators(mini_beir: Path) -> None:
    ds = load_beir(mini_beir)
    pipe = RetrievalPipeline(FakeDense(), FakeSparse(), store="memory://", collection="ev", limit=20)
    assert index_dataset(pipe, ds) == len(ds.corpus)
    result = RetrievalEvaluator(ds, limit=20)(pipe)
    assert result.queries == N_QUERIES and set(result.run) == set(ds.queries)
    assert result.metrics == score_run(result.run, ds.qrels)
    assert 0 <= result.latency["p50_ms"] <= result.latency["p95_ms"]
    assert set(result.as_dict()) >= {"ndcg@10", "recall@100", "map@100", "p50_ms", "p95_ms", "queries"}
    reranked = RerankerEvaluator(ds, result.run, top_n=10)(FakeReranker())
    assert reranked.baseline == pytest.approx(result.metrics)
    for qid, ids in reranked.run.items():  # only the head moves; the same documents come back
        assert sorted(ids[:10]) == sorted(result.run[qid][:10]) and ids[10:] == result.run[qid][10:]
    few = RetrievalEvaluator(ds, max_queries=2).evaluate(lambda qid, text: [])
    assert few.queries == 2 and few.metrics["ndcg@10"] == 0.0
    with pytest.raises(ValueError):
        RerankerEvaluator(BeirDataset({}, {}, {}), {"nope": []})


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval-models")
    return {"dense": build_tiny_bert(root / "dense"), "sparse": build_tiny_mlm(root / "sparse"),
            "ce": build_tiny_cross_encoder(root / "ce", 1)}


def _eval(capsys: pytest.CaptureFixture[str], mini_beir: Path, tiny_models: dict[str, Path], store: str,
          *extra: str) -> tuple[int, str, str]:
    argv = ["eval", "--dataset", str(mini_beir), "--store", store, "--dense-model", str(tiny_models["dense"]),
            "--sparse-model", str(tiny_models["sparse"]), *extra]
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_sdk_eval_json_and_drop(capsys: pytest.CaptureFixture[str], mini_beir: Path, tiny_models: dict[str, Path],
                                tmp_path: Path) -> None:
    store = f"qdrant+local:{tmp_path / 'q'}"
    rc, out, _ = _eval(capsys, mini_beir, tiny_models, store, "--mode", "hybrid", "--reranker", str(tiny_models["ce"]),
                    "--rerank-top", "5", "--json")
    assert rc == 0
    report = json.loads(out)
    assert report["legs"] == ["dense", "sparse"] and report["fusion"] == "native" and report["rerank_top"] == 5
    assert report["documents"] == 46 and report["queries"] == N_QUERIES and not report["kept"]
    for key in ("ndcg@10", "mrr@10", "recall@100", "map@100"):
        assert 0.0 <= report[key] <= 1.0
    assert report["recall@100"] == 1.0  # 46 documents: every relevant one is within 100 hits
    assert 0 < report["latency_p50_ms"] <= report["latency_p95_ms"]
    with connect(store) as adapter:
        assert not adapter.exists(report["collection"])


def test_sdk_eval_text_output_and_keep(capsys: pytest.CaptureFixture[str], mini_beir: Path,
                                       tiny_models: dict[str, Path], tmp_path: Path) -> None:
    store = f"qdrant+local:{tmp_path / 'q'}"
    rc, out, _ = _eval(capsys, mini_beir, tiny_models, store, "--mode", "sparse", "--keep", "--max-queries", "3")
    assert rc == 0
    assert "nDCG@10".lower() in out.lower() and "recall@100" in out and "p95" in out and "kept" in out
    name = next(w for w in out.split() if w.startswith("eval_sparse_"))
    with connect(store) as adapter:
        assert adapter.exists(name) and adapter.count(name) == 46
        assert [f.name for f in adapter.describe(name).sparse] == ["sparse"] and not adapter.describe(name).dense


def test_sdk_eval_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                      tiny_models: dict[str, Path]) -> None:
    rc, _, err = _eval(capsys, tmp_path, tiny_models, "memory://")
    assert rc == 1 and err.startswith("error: ") and "corpus.jsonl" in err and len(err.strip().splitlines()) == 1
