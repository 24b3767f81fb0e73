"""Hard-negative mining against sentence-transformers' ``util.mine_hard_negatives`` (ST 6.2).

Real MiniLM loaded once in ST and once as our DenseEncoder, on (query, relevant FAQ) pairs from
pyfaq. Both models' ``encode_query``/``encode_document`` are memoised per text list, so each
encodes the texts once and the many configurations below compare the mining logic itself.
Scores may differ in the last float bits (two implementations of the same network), so score
columns are compared within 1e-5 and text rows per anchor as multisets (a tie may reorder).
"""

from __future__ import annotations

import csv
import functools
import json
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset

from sdk.core.errors import InputError
from sdk.training.mining import mine_hard_negatives
from tests.encoder_fixtures import build_tiny_cross_encoder, build_tiny_mlm, data_root, read_jsonl

SEQ_LEN = 48  # both models truncate alike; keeps the encoding cheap on two cores
SCORE_COLUMNS = ("scores", "score")


def beir_pairs(folder: Path, n: int) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The first ``n`` (query text, relevant document text) pairs of a BEIR folder, and its corpus."""
    queries = {r["_id"]: r["text"] for r in read_jsonl(folder / "queries.jsonl")}
    corpus = {r["_id"]: r["text"] for r in read_jsonl(folder / "corpus.jsonl")}
    qrels = folder / "qrels" / "train.tsv"
    qrels = qrels if qrels.is_file() else folder / "qrels" / "test.tsv"
    with open(qrels, encoding="utf8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if int(r["score"]) > 0]
    return [(queries[r["query-id"]], corpus[r["corpus-id"]]) for r in rows[:n]], corpus


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    pairs, corpus = beir_pairs(data_root() / "pyfaq", 60)
    positives = {p for _, p in pairs}
    extra = [t for t in corpus.values() if t not in positives][:70]
    # anchors with several positives: the same query again with its neighbours' documents
    multi = [(pairs[i][0], pairs[i + 1][1]) for i in range(0, 10, 2)] + [(pairs[3][0], pairs[20][1])]
    rows = pairs + multi
    dataset = Dataset.from_dict({"query": [a for a, _ in rows], "answer": [p for _, p in rows]})
    return {"dataset": dataset, "extra": [*extra, pairs[5][1]]}  # one extra text equal to a positive


def _memoise(model: Any) -> Any:
    """Cache encode_query / encode_document per (texts, prompt, output kind) on this instance."""
    for name in ("encode_query", "encode_document"):
        fn = getattr(model, name)

        def cached(texts: Any, *args: Any, _fn: Any = fn, _cache: dict = {}, **kwargs: Any) -> Any:  # noqa: B006
            key = (tuple(texts), kwargs.get("prompt_name"), kwargs.get("prompt"), bool(kwargs.get("convert_to_tensor")))
            if key not in _cache:
                _cache[key] = _fn(texts, *args, **kwargs)
            return _cache[key]

        setattr(model, name, functools.wraps(fn)(cached))
    return model


@pytest.fixture(scope="module")
def st_model(minilm_path: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_path), device="cpu")
    model.max_seq_length = SEQ_LEN
    return _memoise(model)


@pytest.fixture(scope="module")
def our_model(minilm_path: Path) -> Any:
    from sdk.encoders.dense import DenseEncoder

    model = DenseEncoder(minilm_path, device="cpu")
    model.max_seq_length = SEQ_LEN
    return _memoise(model)


def st_mine(dataset: Dataset, model: Any, **kwargs: Any) -> Dataset:
    from sentence_transformers.util import mine_hard_negatives as reference

    return reference(dataset, model, verbose=False, **kwargs)


def assert_same(ours: Dataset, theirs: Dataset) -> None:
    """Same columns and rows; scores within 1e-5 row by row; texts equal per anchor up to tie order."""
    assert ours.column_names == theirs.column_names
    assert len(ours) == len(theirs)
    anchor = ours.column_names[0]
    mine, ref = ours.to_list(), theirs.to_list()
    assert [r[anchor] for r in mine] == [r[anchor] for r in ref]
    for col in ours.column_names:
        if col in SCORE_COLUMNS:  # labeled-list rows have their own lengths: compare row by row
            for a, b in zip(mine, ref, strict=True):
                torch.testing.assert_close(torch.tensor(a[col], dtype=torch.float64),
                                           torch.tensor(b[col], dtype=torch.float64), atol=1e-5, rtol=0)
        elif col in ("label", "labels"):
            assert [r[col] for r in mine] == [r[col] for r in ref]

    def texts(rows: list[dict]) -> dict[str, Counter]:
        out: dict[str, Counter] = defaultdict(Counter)
        for r in rows:
            out[r[anchor]].update(json.dumps(r[c]) for c in r if c not in SCORE_COLUMNS)
        return out

    assert texts(mine) == texts(ref)
    def strip(row: dict) -> dict:
        return {k: v for k, v in row.items() if k not in SCORE_COLUMNS}

    exact = sum(strip(a) == strip(b) for a, b in zip(mine, ref, strict=True))
    assert exact >= 0.9 * len(mine)  # ties may reorder a few rows, never many


def positives_of(dataset: Dataset) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for a, p in zip(dataset["query"], dataset["answer"], strict=True):
        out[a].add(p)
    return out


def negatives_in(row: dict[str, Any], fmt: str) -> list[str]:
    if fmt == "triplet":
        return [row["negative"]]
    if fmt == "n-tuple":
        return [v for k, v in row.items() if k.startswith("negative_")]
    if fmt == "labeled-list":
        return row["answer"][1:]  # the positive first, then the negatives
    return [row["answer"]] if row.get("label") == 0 else []  # with scores instead of labels: not told apart


CONFIGS = [
    {},
    {"output_scores": True},
    {"output_format": "n-tuple", "output_scores": True},
    {"output_format": "n-tuple", "num_negatives": 5},
    {"output_format": "labeled-pair"},
    {"output_format": "labeled-pair", "output_scores": True},
    {"output_format": "labeled-list"},
    {"output_format": "labeled-list", "output_scores": True},
    {"range_min": 3, "range_max": 12, "output_scores": True},
    {"absolute_margin": 0.1, "output_scores": True, "output_format": "labeled-list"},
    {"relative_margin": 0.05, "max_score": 0.75, "min_score": 0.3, "output_scores": True},
    {"include_positives": True, "output_scores": True},
    {"query_prompt": "question: ", "num_negatives": 2, "output_scores": True},
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_matches_sentence_transformers(config: dict, data: dict, st_model: Any, our_model: Any) -> None:
    theirs = st_mine(data["dataset"], st_model, corpus=data["extra"], **config)
    ours = mine_hard_negatives(data["dataset"], our_model, corpus=data["extra"], verbose=False, **config)
    assert len(ours) > 0
    assert_same(ours, theirs)
    if not config.get("include_positives"):
        fmt = config.get("output_format", "triplet")
        known = positives_of(data["dataset"])
        assert all(n not in known[r["query"]] for r in ours.to_list() for n in negatives_in(r, fmt))


def test_random_sampling_keeps_the_rules(data: dict, st_model: Any, our_model: Any) -> None:
    args = {"range_min": 2, "range_max": 15, "num_negatives": 4, "sampling_strategy": "random",
            "relative_margin": 0.02, "output_format": "labeled-list"}
    random.seed(7)
    theirs = st_mine(data["dataset"], st_model, corpus=data["extra"], **args)
    ours = mine_hard_negatives(data["dataset"], our_model, corpus=data["extra"], verbose=False, seed=7, **args)
    again = mine_hard_negatives(data["dataset"], our_model, corpus=data["extra"], verbose=False, seed=7, **args)
    assert ours.to_list() == again.to_list()  # a seed makes the draw reproducible
    # the pool random draws from: every valid candidate in the rank window, best first
    window = {k: v for k, v in args.items() if k != "sampling_strategy"} | {"num_negatives": 13}
    pool = mine_hard_negatives(data["dataset"], our_model, corpus=data["extra"], verbose=False, **window)
    allowed = {r["query"]: set(r["answer"][1:]) for r in pool.to_list()}
    assert [len(r["labels"]) for r in ours] == [len(r["labels"]) for r in theirs]  # same count per row
    for row in ours.to_list():
        assert set(row["answer"][1:]) <= allowed[row["query"]]
    # seeded like ST's global ``random``, the draw is ST's own (exact equality is a bonus, not the rule)
    assert_same(ours, theirs)


@pytest.fixture(scope="module")
def ce_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("mine-ce"), num_labels=1)


def test_cross_encoder_filter_matches(ce_dir: Path, data: dict, st_model: Any, our_model: Any) -> None:
    from sentence_transformers import CrossEncoder as STCrossEncoder

    from sdk.encoders.cross_encoder import CrossEncoder

    theirs_ce, ours_ce = STCrossEncoder(str(ce_dir), device="cpu"), CrossEncoder(ce_dir, device="cpu")
    theirs_ce.max_seq_length = ours_ce.max_seq_length = 32  # keep the tiny model cheap on long texts
    # every valid candidate comes back (num_negatives fills the window), so near-ties cannot swap the selection
    kwargs = {"corpus": data["extra"], "output_scores": True, "absolute_margin": 0.0, "min_score": 0.05,
              "max_score": 0.999, "range_max": 8, "num_negatives": 8, "output_format": "labeled-list"}
    theirs = st_mine(data["dataset"], st_model, cross_encoder=theirs_ce, **kwargs)
    ours = mine_hard_negatives(data["dataset"], our_model, cross_encoder=ours_ce, verbose=False, **kwargs)
    assert 0 < len(ours) and any(len(r["scores"]) < 9 for r in ours)  # the filters did drop candidates
    assert_same(ours, theirs)


@pytest.mark.parametrize("fmt", ["triplet", "n-tuple", "labeled-pair", "labeled-list"])
def test_never_returns_a_positive(fmt: str, our_model: Any) -> None:
    pairs, corpus = beir_pairs(data_root() / "pyfaq", 12)
    docs = [p for _, p in pairs]
    # one anchor asked four times (each row another positive), a positive repeated in another row,
    # and the extra corpus holding copies of the positives: none may come back as a negative
    anchor = pairs[0][0]
    rows = [(anchor, d) for d in docs[:4]] + [(anchor, docs[0])] + pairs[4:] + [(pairs[5][0], docs[1])]
    dataset = Dataset.from_dict({"query": [a for a, _ in rows], "answer": [p for _, p in rows]})
    extra = docs + list(corpus.values())[100:130]
    out = mine_hard_negatives(dataset, our_model, corpus=extra, num_negatives=6, output_format=fmt,
                              verbose=False)
    known = positives_of(dataset)
    negatives = [(r["query"], n) for r in out.to_list() for n in negatives_in(r, fmt)]
    assert negatives and all(n not in known[q] for q, n in negatives)
    # ...although they are the anchor's nearest documents: with include_positives they do come back
    raw = mine_hard_negatives(dataset, our_model, corpus=extra, num_negatives=6, include_positives=True,
                              verbose=False)
    assert any(n in known[r["query"]] for r in raw.to_list() for n in negatives_in(r, "n-tuple"))


def test_store_search_equals_exact_search(data: dict, our_model: Any) -> None:
    from adapters.memory import MemoryAdapter
    from sdk.core.registry import connect

    class Recording(MemoryAdapter):
        dropped: list[str] = []

        def drop(self, collection: str) -> bool:
            self.dropped.append(collection)
            return super().drop(collection)

    args = {"corpus": data["extra"], "range_min": 1, "range_max": 8, "relative_margin": 0.03,
            "output_format": "n-tuple", "num_negatives": 2, "output_scores": True, "verbose": False}
    exact = mine_hard_negatives(data["dataset"], our_model, **args)
    store = Recording()
    assert_same(mine_hard_negatives(data["dataset"], our_model, store=store, **args), exact)
    assert len(store.dropped) == 1 and not store.exists(store.dropped[0])  # the temporary collection is gone
    assert isinstance(connect("memory://"), MemoryAdapter)
    assert_same(mine_hard_negatives(data["dataset"], our_model, store="memory://", **args), exact)


def test_sparse_encoder_mines_its_own_nearest(tmp_path: Path) -> None:
    from sdk.encoders.sparse import SparseEncoder

    model = SparseEncoder(build_tiny_mlm(tmp_path / "mlm"), device="cpu")
    pairs, corpus = beir_pairs(data_root() / "pyfaq", 20)
    dataset = Dataset.from_dict({"query": [a for a, _ in pairs], "answer": [p for _, p in pairs]})
    extra = list(corpus.values())[200:260]
    out = mine_hard_negatives(dataset, model, corpus=extra, num_negatives=3, output_format="n-tuple",
                              output_scores=True, verbose=False)
    docs = list(dict.fromkeys(extra + list(dataset["answer"])))
    scores = model.similarity(model.encode_query(dataset["query"]), model.encode_document(docs))
    for row in out.to_list():  # the 3 best non-positive documents, by the model's own score
        ranked = scores[dataset["query"].index(row["query"])].clone()
        ranked[docs.index(row["answer"])] = -float("inf")
        best = ranked.topk(3).values
        torch.testing.assert_close(torch.tensor(row["scores"][1:]), best, atol=1e-4, rtol=1e-4)
    via_store = mine_hard_negatives(dataset, model, corpus=extra, num_negatives=3, output_format="n-tuple",
                                    output_scores=True, verbose=False, store="memory://")
    assert_same(via_store, out)


class _Unused:
    """A model the validation must reject before touching."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"model.{name} used before the arguments were checked")


@pytest.mark.parametrize("kwargs, match", [
    ({"num_negatives": 0}, "num_negatives"),
    ({"range_min": 5, "range_max": 3}, "range_min"),
    ({"range_min": 4, "range_max": 4}, "range_min"),
    ({"range_min": -1}, "range_min"),
    ({"range_min": 0, "range_max": 2, "num_negatives": 3}, "cannot mine 3 negatives"),
    ({"anchor_column_name": "question"}, "question"),
    ({"positive_column_name": "passage"}, "passage"),
    ({"anchor_column_name": "query", "positive_column_name": "query"}, "both"),
    ({"output_format": "pairs"}, "output_format"),
    ({"sampling_strategy": "best"}, "sampling_strategy"),
    ({"batch_size": 0}, "batch_size"),
    ({"max_score": "high"}, "max_score"),
    ({"corpus": ["fine", 3]}, "corpus"),
])
def test_bad_arguments_raise_input_error(kwargs: dict, match: str) -> None:
    dataset = Dataset.from_dict({"query": ["a", "b"], "answer": ["x", "y"]})
    with pytest.raises(InputError, match=match):
        mine_hard_negatives(dataset, _Unused(), verbose=False, **kwargs)


def test_bad_datasets_raise_input_error() -> None:
    with pytest.raises(InputError, match="datasets.Dataset"):
        mine_hard_negatives([("a", "x")], _Unused())
    with pytest.raises(InputError, match="anchor and a positive"):
        mine_hard_negatives(Dataset.from_dict({"query": ["a"]}), _Unused())
    with pytest.raises(InputError, match="no rows"):
        mine_hard_negatives(Dataset.from_dict({"query": [], "answer": []}), _Unused())
    with pytest.raises(InputError, match="row 1"):
        mine_hard_negatives(Dataset.from_dict({"query": ["a", None], "answer": ["x", "y"]}), _Unused())
