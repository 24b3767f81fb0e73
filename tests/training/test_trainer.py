"""The trainers on tiny models: loss goes down, the saved folder loads in sentence-transformers with
identical outputs, batch samplers, several datasets, resume from a checkpoint, evaluators, errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import build_tiny_bert
from tests.encoder_fixtures import build_tiny_cross_encoder, build_tiny_mlm

datasets = pytest.importorskip("datasets")

WORDS = ("python package install use list tuple debian database vector search query document sentence "
         "text model encode file data system user error set table key value type").split()


def _texts(n: int, seed: int, k: int = 5) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=k)) for _ in range(n)]


def _pairs(n: int = 48, seed: int = 0):
    anchors = _texts(n, seed)
    return datasets.Dataset.from_dict({"anchor": anchors, "positive": [a + " data" for a in anchors]})


def _args(tmp_path: Path, **kw):
    from sdk.training import DenseTrainingArguments

    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, learning_rate=1e-3,
                max_steps=6, logging_steps=1, report_to=[], disable_tqdm=True, save_strategy="no", seed=3)
    base.update(kw)
    return DenseTrainingArguments(**base)


@pytest.fixture()
def dense_dir(tmp_path: Path) -> Path:
    return build_tiny_bert(tmp_path / "tiny-dense")


def _dense(folder: Path):
    from sdk.encoders.dense import DenseEncoder

    return DenseEncoder(folder, device="cpu")


def test_dense_training_lowers_the_loss_and_saves_a_folder_sentence_transformers_loads(tmp_path, dense_dir):
    from sentence_transformers import SentenceTransformer

    from sdk.training import DenseTrainer
    from sdk.training.losses.dense import MultipleNegativesRankingLoss

    model = _dense(dense_dir)
    data = _pairs()
    trainer = DenseTrainer(model=model, args=_args(tmp_path, max_steps=12), train_dataset=data,
                           eval_dataset=data, loss=MultipleNegativesRankingLoss(model))
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    assert after < before
    assert not model.training  # encode() after train() runs without dropout
    out = tmp_path / "trained"
    trainer.save_model(str(out))
    card = (out / "README.md").read_text()
    assert "MultipleNegativesRankingLoss" in card and str(dense_dir) in card
    texts = _texts(5, 9)
    ours = model.encode(texts)
    theirs = SentenceTransformer(str(out), device="cpu").encode(texts)
    np.testing.assert_allclose(_dense(out).encode(texts), ours, atol=1e-6)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)


def test_cross_encoder_training_saves_a_reranker_sentence_transformers_loads(tmp_path):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    from sdk.encoders.cross_encoder import CrossEncoder
    from sdk.training import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sdk.training.losses.cross import BinaryCrossEntropyLoss

    model = CrossEncoder(build_tiny_cross_encoder(tmp_path / "ce", num_labels=1), device="cpu")
    queries = _texts(24, 1)
    rows = {"query": queries * 2, "passage": [q + " data" for q in queries] + _texts(24, 2),
            "label": [1] * 24 + [0] * 24}
    data = datasets.Dataset.from_dict(rows)
    args = CrossEncoderTrainingArguments(output_dir=str(tmp_path / "o"), max_steps=10, per_device_train_batch_size=8,
                                         learning_rate=5e-4, report_to=[], disable_tqdm=True, save_strategy="no")
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=data, eval_dataset=data,
                                  loss=BinaryCrossEntropyLoss(model))
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    assert trainer.evaluate()["eval_loss"] < before
    out = tmp_path / "ce-trained"
    trainer.save_model(str(out))
    pairs = list(zip(queries[:4], _texts(4, 5), strict=True))
    np.testing.assert_allclose(STCrossEncoder(str(out), device="cpu").predict(pairs), model.predict(pairs), atol=1e-5)
    np.testing.assert_allclose(CrossEncoder(out, device="cpu").predict(pairs), model.predict(pairs), atol=1e-6)


def test_sparse_training_with_splade_loss_saves_a_folder_sentence_transformers_loads(tmp_path):
    from sentence_transformers import SparseEncoder as STSparseEncoder

    from sdk.encoders.sparse import SparseEncoder
    from sdk.training import SparseEncoderTrainer, SparseEncoderTrainingArguments

    model = SparseEncoder(build_tiny_mlm(tmp_path / "mlm"), device="cpu")
    args = SparseEncoderTrainingArguments(output_dir=str(tmp_path / "o"), max_steps=6, per_device_train_batch_size=8,
                                          learning_rate=1e-3, report_to=[], disable_tqdm=True, save_strategy="no",
                                          logging_steps=2)
    trainer = SparseEncoderTrainer(model=model, args=args, train_dataset=_pairs())  # default: SpladeLoss
    assert type(trainer.loss).__name__ == "SpladeLoss"
    trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert logged and any(k.endswith("_reg") or "regularizer" in k or k == "base_loss" for k in logged[0])
    out = tmp_path / "splade-trained"
    trainer.save_model(str(out))
    texts = _texts(4, 3)
    ours = model.encode(texts, convert_to_tensor=True).to_dense()
    theirs = STSparseEncoder(str(out), device="cpu").encode(texts, convert_to_tensor=True).to_dense()
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)


def test_several_datasets_each_with_its_own_loss(tmp_path, dense_dir):
    from sdk.training import DenseTrainer
    from sdk.training.losses.dense import CoSENTLoss, MultipleNegativesRankingLoss

    model = _dense(dense_dir)
    sts = datasets.Dataset.from_dict({"sentence1": _texts(32, 4), "sentence2": _texts(32, 5),
                                      "score": [random.Random(i).random() for i in range(32)]})
    calls: dict[str, int] = {"pairs": 0, "sts": 0}

    def counted(loss, name):
        original = loss.forward

        def forward(features, labels):
            calls[name] += 1
            return original(features, labels)
        loss.forward = forward
        return loss

    losses = {"pairs": counted(MultipleNegativesRankingLoss(model), "pairs"), "sts": counted(CoSENTLoss(model), "sts")}
    for sampler in ("round_robin", "proportional"):
        calls.update(pairs=0, sts=0)
        trainer = DenseTrainer(model=model, args=_args(tmp_path, max_steps=8, multi_dataset_batch_sampler=sampler),
                               train_dataset={"pairs": _pairs(), "sts": sts}, loss=losses)
        trainer.train()
        assert calls["pairs"] > 0 and calls["sts"] > 0 and calls["pairs"] + calls["sts"] == 8
    from sdk.core.errors import InputError

    with pytest.raises(InputError, match="no loss for train datasets"):
        DenseTrainer(model=model, args=_args(tmp_path), train_dataset={"pairs": _pairs(), "sts": sts},
                     loss={"pairs": losses["pairs"]})


def test_no_duplicates_sampler_never_repeats_a_text_in_a_batch():
    from sdk.training.samplers import NoDuplicatesBatchSampler

    rng = random.Random(0)
    anchors = [rng.choice(WORDS[:6]) for _ in range(200)]  # heavy repetition
    rows = [[a, f"p{i}"] for i, a in enumerate(anchors)]
    sampler = NoDuplicatesBatchSampler(rows, batch_size=4, seed=1)
    seen: list[int] = []
    for batch in sampler:
        assert len({anchors[i] for i in batch}) == len(batch)
        seen.extend(batch)
    assert sorted(seen) == list(range(200))  # every row exactly once per epoch
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first  # reshuffled per epoch, reproducibly
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_no_duplicates_batches_in_training(tmp_path, dense_dir):
    from sdk.training import BatchSamplers, DenseTrainer

    model = _dense(dense_dir)
    anchors = [WORDS[i % 5] for i in range(40)]
    data = datasets.Dataset.from_dict({"anchor": anchors, "positive": [f"{a} {i}" for i, a in enumerate(anchors)]})
    trainer = DenseTrainer(model=model, args=_args(tmp_path, batch_sampler=BatchSamplers.NO_DUPLICATES),
                           train_dataset=data)
    for batch in trainer.get_train_dataloader():
        ids = batch["features"][0]["input_ids"]
        assert len({tuple(row.tolist()) for row in ids}) == ids.shape[0]


def test_group_by_label_sampler_gives_every_label_twice():
    from sdk.training.samplers import GroupByLabelBatchSampler

    labels = [i % 7 for i in range(70)] + [99]  # 99 occurs once and is dropped
    for batch in GroupByLabelBatchSampler(labels, batch_size=8, seed=0):
        counts = {labels[i]: sum(labels[j] == labels[i] for j in batch) for i in batch}
        assert min(counts.values()) >= 2 and 99 not in counts


def test_resume_from_a_checkpoint_continues_exactly(tmp_path, dense_dir):
    from sdk.training import DenseTrainer

    data = _pairs(64)
    common = dict(max_steps=8, save_strategy="steps", save_steps=4, dataloader_drop_last=True)
    straight = _dense(dense_dir)
    DenseTrainer(model=straight, args=_args(tmp_path / "a", **common), train_dataset=data).train()
    first = _dense(dense_dir)
    interrupted = DenseTrainer(model=first, args=_args(tmp_path / "b", **{**common, "max_steps": 8}), train_dataset=data)
    interrupted.train()
    checkpoint = tmp_path / "b" / "out" / "checkpoint-4"
    assert (checkpoint / "modules.json").is_file() and (checkpoint / "optimizer.pt").is_file()
    resumed = _dense(dense_dir)
    DenseTrainer(model=resumed, args=_args(tmp_path / "b", **common), train_dataset=data).train(
        resume_from_checkpoint=str(checkpoint))
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


def test_evaluator_runs_during_training_and_reports_eval_metrics(tmp_path, dense_dir):
    from sdk.evaluation import InformationRetrievalEvaluator
    from sdk.training import DenseTrainer

    model = _dense(dense_dir)
    data = _pairs(32)
    queries = {str(i): a for i, a in enumerate(data["anchor"][:8])}
    corpus = {str(i): p for i, p in enumerate(data["positive"])}
    evaluator = InformationRetrievalEvaluator(queries, corpus, {q: {q} for q in queries}, name="dev")
    trainer = DenseTrainer(model=model, args=_args(tmp_path, eval_strategy="steps", eval_steps=3),
                           train_dataset=data, evaluator=evaluator)
    trainer.train()
    evals = [h for h in trainer.state.log_history if any(k.startswith("eval_dev_") for k in h)]
    assert len(evals) == 2
    assert any("ndcg@10" in k for k in evals[0])


def test_learning_rate_mapping_gives_parameter_groups(tmp_path, dense_dir):
    from sdk.training import DenseTrainer

    model = _dense(dense_dir)
    trainer = DenseTrainer(model=model, args=_args(tmp_path, learning_rate_mapping={r"embeddings": 1e-2}),
                           train_dataset=_pairs())
    optimizer = trainer.create_optimizer()
    rates = {group["lr"] for group in optimizer.param_groups}
    assert rates == {1e-2, 1e-3}


def test_bad_training_input_gives_clear_errors(tmp_path, dense_dir):
    from sdk.core.errors import InputError
    from sdk.encoders.cross_encoder import CrossEncoder
    from sdk.training import CrossEncoderTrainer, DenseTrainer, DenseTrainingArguments

    model = _dense(dense_dir)
    with pytest.raises(InputError, match="trains a CrossEncoder"):
        CrossEncoderTrainer(model=model, args=_args(tmp_path), train_dataset=_pairs())
    with pytest.raises(InputError, match="reserved column"):
        DenseTrainer(model=model, args=_args(tmp_path),
                     train_dataset=_pairs().add_column("dataset_name", ["x"] * 48))
    with pytest.raises(InputError, match="datasets.Dataset"):
        DenseTrainer(model=model, args=_args(tmp_path), train_dataset=[{"anchor": "a", "positive": "b"}])
    with pytest.raises(InputError, match="batch_sampler must be one of"):
        DenseTrainingArguments(output_dir=str(tmp_path), batch_sampler="fancy")
    assert CrossEncoder is not None


def _tiny_beir(folder: Path, n: int = 40) -> Path:
    docs = _texts(n, 11, k=6)
    folder.mkdir(parents=True)
    (folder / "qrels").mkdir()
    with open(folder / "corpus.jsonl", "w") as fh:
        for i, d in enumerate(docs):
            fh.write(json.dumps({"_id": f"d{i}", "title": "", "text": d}) + "\n")
    with open(folder / "queries.jsonl", "w") as fh:
        for i, d in enumerate(docs):
            fh.write(json.dumps({"_id": f"q{i}", "text": " ".join(d.split()[:3])}) + "\n")
    for split, ids in (("train", range(0, 30)), ("dev", range(30, 40))):
        with open(folder / "qrels" / f"{split}.tsv", "w") as fh:
            fh.write("query-id\tcorpus-id\tscore\n")
            for i in ids:
                fh.write(f"q{i}\td{i}\t1\n")
    return folder


def test_beir_pairs_give_pairs_triplets_and_labelled_pairs(tmp_path):
    from sdk.training import beir_pairs

    folder = _tiny_beir(tmp_path / "beir")
    pairs = beir_pairs(folder, "train")
    assert pairs.column_names == ["anchor", "positive"] and len(pairs) == 30
    triplets = beir_pairs(folder, "train", "triplets")
    assert triplets.column_names == ["anchor", "positive", "negative"]
    assert all(p != n for p, n in zip(triplets["positive"], triplets["negative"], strict=True))
    labelled = beir_pairs(folder, "train", "labeled-pairs")
    assert labelled.column_names == ["query", "passage", "label"] and sorted(set(labelled["label"])) == [0, 1]


def test_sdk_train_dense_cli_prints_a_json_summary_and_saves_a_loadable_model(tmp_path, dense_dir, capsys):
    from sdk.cli.main import main

    folder = _tiny_beir(tmp_path / "beir")
    out = tmp_path / "model"
    code = main(["train", "dense", "--dataset", str(folder), "--split", "train", "--dev-split", "dev",
                 "--base", str(dense_dir), "--output", str(out), "--max-steps", "4", "--batch-size", "8",
                 "--learning-rate", "1e-3", "--hard-negatives", "1", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 4 and summary["loss"] == "MultipleNegativesRankingLoss"
    assert summary["hard_negatives"] == 1 and summary["train_rows"] > 0
    assert summary["primary_metric"] in summary["base_metrics"] and summary["primary_metric"] in summary["trained_metrics"]
    assert (out / "modules.json").is_file() and (out / "README.md").is_file()
    _dense(out).encode(["it loads"])


def test_sdk_train_cross_cli_puts_a_new_head_on_a_bi_encoder(tmp_path, dense_dir, capsys):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    from sdk.cli.main import main
    from sdk.encoders.cross_encoder import CrossEncoder

    folder = _tiny_beir(tmp_path / "beir")
    out = tmp_path / "reranker"
    code = main(["train", "cross", "--dataset", str(folder), "--base", str(dense_dir), "--output", str(out),
                 "--max-steps", "3", "--batch-size", "8", "--hard-negatives", "2", "--miner", str(dense_dir),
                 "--dev-split", "dev", "--rerank-top", "10", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["loss"] == "BinaryCrossEntropyLoss" and summary["hard_negatives"] == 2
    pairs = [("python package", "install python package"), ("debian", "vector search")]
    np.testing.assert_allclose(STCrossEncoder(str(out), device="cpu").predict(pairs),
                               CrossEncoder(out, device="cpu").predict(pairs), atol=1e-5)


def test_sdk_train_rejects_bad_options(tmp_path, capsys):
    from sdk.cli.main import main

    assert main(["train", "dense", "--dataset", str(tmp_path), "--base", "x", "--output", str(tmp_path / "o"),
                 "--batch-size", "0"]) == 1
    assert "--batch-size must be >= 1" in capsys.readouterr().err
    assert main(["train", "dense", "--dataset", str(tmp_path), "--base", "x", "--output", str(tmp_path / "o"),
                 "--matryoshka-dims", "a,b"]) == 1
    assert "comma-separated integers" in capsys.readouterr().err


def test_inference_free_splade_trains_its_query_route_with_its_own_learning_rate(tmp_path):
    """A Router model: column 0 goes down the "query" route (static weights), the rest "document"."""
    from sentence_transformers import SparseEncoder as STSparseEncoder

    from sdk.encoders.modules import MLMTransformer, Router, SparseStaticEmbedding, SpladePooling
    from sdk.encoders.sparse import SparseEncoder
    from sdk.training import SparseEncoderTrainer, SparseEncoderTrainingArguments
    from sdk.training.losses import SparseMultipleNegativesRankingLoss, SpladeLoss

    mlm = MLMTransformer.load(build_tiny_mlm(tmp_path / "mlm"))
    static = SparseStaticEmbedding(mlm.tokenizer, torch.rand(len(mlm.tokenizer.get_vocab())) + 0.5)
    model = SparseEncoder(modules=[Router.for_query_document([static], [mlm, SpladePooling("max")])], device="cpu")
    before = static.weight.detach().clone()
    data = datasets.Dataset.from_dict({"question": _texts(32, 1), "answer": _texts(32, 2)})
    args = SparseEncoderTrainingArguments(
        output_dir=str(tmp_path / "o"), max_steps=4, per_device_train_batch_size=8, learning_rate=1e-4,
        report_to=[], disable_tqdm=True, save_strategy="no",
        router_mapping={"question": "query", "answer": "document"},
        learning_rate_mapping={r"SparseStaticEmbedding\.weight|weight$": 1e-2})
    loss = SpladeLoss(model, SparseMultipleNegativesRankingLoss(model), query_regularizer_weight=0,
                      document_regularizer_weight=3e-4)
    trainer = SparseEncoderTrainer(model=model, args=args, train_dataset=data, loss=loss)
    batch = next(iter(trainer.get_train_dataloader()))
    assert [f["task"] for f in batch["features"]] == ["query", "document"]
    trainer.train()
    assert not torch.equal(before, static.weight.detach())  # the query route learned
    out = tmp_path / "ifs"
    trainer.save_model(str(out))
    queries = _texts(3, 4)
    ours = model.encode_query(queries, convert_to_tensor=True).to_dense()
    theirs = STSparseEncoder(str(out), device="cpu").encode_query(queries, convert_to_tensor=True).to_dense()
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)


def test_listwise_cross_encoder_training_with_lambda_loss(tmp_path):
    from sdk.encoders.cross_encoder import CrossEncoder
    from sdk.training import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sdk.training.losses.cross import ListNetLoss  # noqa: F401 - both list-wise losses import
    from sdk.training.losses.cross_listwise import LambdaLoss, NDCGLoss2PPScheme

    model = CrossEncoder(build_tiny_cross_encoder(tmp_path / "ce", num_labels=1), device="cpu")
    queries = _texts(16, 3)
    rng = random.Random(0)
    docs = [[q + " data"] + _texts(rng.randint(2, 4), i) for i, q in enumerate(queries)]  # ragged lists
    labels = [[1.0] + [0.0] * (len(d) - 1) for d in docs]
    data = datasets.Dataset.from_dict({"query": queries, "docs": docs, "labels": labels})
    args = CrossEncoderTrainingArguments(output_dir=str(tmp_path / "o"), max_steps=6, per_device_train_batch_size=4,
                                         learning_rate=5e-4, report_to=[], disable_tqdm=True, save_strategy="no")
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=data, eval_dataset=data,
                                  loss=LambdaLoss(model, weighting_scheme=NDCGLoss2PPScheme()))
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    assert trainer.evaluate()["eval_loss"] < before
