"""The default recipe per encoder kind, shared by ``sdk train`` and ``bench/train.py``.

- dense: MultipleNegativesRankingLoss with in-batch negatives (plus mined hard negatives when
  asked), optionally inside MatryoshkaLoss;
- cross: a fresh 1-label head on the base transformer, BinaryCrossEntropyLoss on mined hard
  negatives with ``pos_weight`` = negatives per positive;
- sparse: SpladeLoss (FLOPS on queries and documents) around SparseMultipleNegativesRankingLoss;
- tsdae: a dense model trained on unlabelled text (a BEIR corpus cut into sentences, or a text file
  of one sentence per line) with DenoisingAutoEncoderLoss, the paper's settings (learning rate
  3e-5, constant schedule, no weight decay, batch 8).
Dev evaluation before and after training uses the same evaluator, so the summary's two
numbers are comparable.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from sdk.core.errors import InputError

__all__ = ["Recipe", "load_base", "train_recipe"]

Kind = Literal["dense", "cross", "sparse", "tsdae"]
logger = logging.getLogger(__name__)

DENSE_LOSSES = ("mnrl", "cached-mnrl", "triplet")
CROSS_LOSSES = ("bce", "mnrl", "lambda", "listnet")
SPARSE_LOSSES = ("splade",)
TSDAE_LOSSES = ("denoising",)


@dataclass
class Recipe:
    """Everything ``sdk train`` takes; defaults are the sensible recipe for each kind."""

    kind: Kind
    dataset: str
    base: str
    output: str
    split: str = "train"
    dev_split: str | None = None
    loss: str | None = None
    hard_negatives: int = 0
    epochs: float = 1.0
    max_steps: int = -1
    #: None: 32, or 8 for tsdae (the paper's)
    batch_size: int | None = None
    learning_rate: float | None = None
    matryoshka_dims: list[int] = field(default_factory=list)
    max_queries: int | None = None
    #: tsdae: train on a seeded sample of this many corpus sentences (default: all)
    max_sentences: int | None = None
    dev_max_queries: int | None = 500
    dev_corpus: int | None = None
    miner: str | None = None
    rerank_top: int = 50
    seed: int = 12
    device: str | None = None
    fp16: bool = False
    bf16: bool = False
    progress: bool = True


def load_base(kind: Kind, base: str | Path, device: str | None = None) -> Any:
    """The model to train: a sentence-transformers folder, a plain transformers folder or a hub id.

    For ``cross`` the base transformer gets a new 1-label classification head, so a bi-encoder's
    weights can start a reranker.
    """
    if kind in ("dense", "tsdae"):
        from sdk.encoders.dense import DenseEncoder

        return DenseEncoder(base, device=device)
    if kind == "sparse":
        from sdk.encoders.sparse import SparseEncoder

        return SparseEncoder(base, device=device)
    if kind == "cross":
        from sdk.encoders.cross_encoder import CrossEncoder
        from sdk.encoders.loading import resolve_model_path
        from sdk.encoders.modules.heads import ClassificationTransformer

        folder = resolve_model_path(base)
        try:
            return CrossEncoder(folder, num_labels=1, device=device)
        except Exception:  # noqa: BLE001 - not a reranker folder: put a fresh head on its transformer
            head = ClassificationTransformer.load(folder, config_kwargs={"num_labels": 1})
            model = CrossEncoder(modules=[head], device=device)
            model.model_path = str(folder)
            return model
    raise InputError(f"kind must be 'dense', 'cross', 'sparse' or 'tsdae', got {kind!r}")


def _miner(recipe: Recipe, model: Any) -> Any:
    """The retriever that mines negatives (and, for cross, the dev candidates)."""
    if recipe.miner:
        from sdk.encoders.dense import DenseEncoder

        return DenseEncoder(recipe.miner, device=recipe.device)
    if recipe.kind in ("dense", "sparse"):
        return model
    from sdk.encoders.dense import DenseEncoder

    return DenseEncoder(device=recipe.device)  # the packaged all-MiniLM-L6-v2


def _loss(recipe: Recipe, model: Any, negatives: int) -> Any:
    name = (recipe.loss or {"dense": "mnrl", "cross": "bce", "sparse": "splade", "tsdae": "denoising"}[recipe.kind]).lower()
    if recipe.kind == "tsdae":
        from sdk.training.losses.denoising import DenoisingAutoEncoderLoss

        if name not in TSDAE_LOSSES:
            raise InputError(f"tsdae --loss must be one of {', '.join(TSDAE_LOSSES)}; got {name!r}")
        return DenoisingAutoEncoderLoss(model, tie_encoder_decoder=True)
    if recipe.kind == "dense":
        from sdk.training import losses

        if name not in DENSE_LOSSES:
            raise InputError(f"dense --loss must be one of {', '.join(DENSE_LOSSES)}; got {name!r}")
        inner = {"mnrl": losses.MultipleNegativesRankingLoss, "triplet": losses.TripletLoss,
                 "cached-mnrl": losses.CachedMultipleNegativesRankingLoss}[name](model)
        if recipe.matryoshka_dims:
            return losses.MatryoshkaLoss(model, inner, matryoshka_dims=recipe.matryoshka_dims)
        return inner
    if recipe.kind == "cross":
        from sdk.training.losses import cross as losses

        if name != "bce":
            raise InputError(f"sdk train cross supports --loss bce (labelled pairs from mined negatives); got {name!r}")
        return losses.BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(max(negatives, 1))))
    from sdk.training.losses import sparse as losses

    if name not in SPARSE_LOSSES:
        raise InputError(f"sparse --loss must be one of {', '.join(SPARSE_LOSSES)}; got {name!r}")
    return losses.SpladeLoss(model, losses.SparseMultipleNegativesRankingLoss(model),
                             query_regularizer_weight=5e-5, document_regularizer_weight=3e-5)


def _train_data(recipe: Recipe, model: Any) -> tuple[Any, int]:
    if recipe.kind == "tsdae":
        from sdk.training.denoising import DenoisingAutoEncoderDataset, corpus_sentences

        sentences = corpus_sentences(recipe.dataset, max_sentences=recipe.max_sentences, seed=recipe.seed)
        return DenoisingAutoEncoderDataset(sentences, seed=recipe.seed), 0
    from sdk.training.data import beir_pairs
    from sdk.training.mining import mine_hard_negatives

    pairs = beir_pairs(recipe.dataset, recipe.split, "pairs", max_queries=recipe.max_queries, seed=recipe.seed)
    negatives = recipe.hard_negatives
    if recipe.kind == "cross" and negatives == 0:
        negatives = 5  # a reranker learns nothing from positives alone
    if recipe.kind == "dense" and (recipe.loss or "mnrl") == "triplet" and negatives == 0:
        negatives = 1
    if negatives == 0:
        return pairs, 0
    from sdk.evaluation.beir import load_beir

    corpus = list(load_beir(recipe.dataset, recipe.split).corpus.values())
    fmt = "labeled-pair" if recipe.kind == "cross" else ("triplet" if negatives == 1 else "n-tuple")
    mined = mine_hard_negatives(
        pairs, _miner(recipe, model), corpus=corpus, num_negatives=negatives, range_min=10, range_max=100,
        relative_margin=0.05 if recipe.kind != "cross" else None, sampling_strategy="top" if recipe.kind != "cross"
        else "random", output_format=fmt, batch_size=64, verbose=recipe.progress, seed=recipe.seed,
    )
    return mined, negatives


def _dev_evaluator(recipe: Recipe, model: Any) -> Any:
    if not recipe.dev_split:
        return None
    from sdk.evaluation import dev_evaluator

    if recipe.kind == "tsdae" and not Path(recipe.dataset).is_dir():
        raise InputError(f"--dev-split needs --dataset to be a BEIR folder (with qrels/{recipe.dev_split}.tsv); "
                         f"{recipe.dataset} is a file: drop --dev-split or give the folder")
    kind = "dense" if recipe.kind == "tsdae" else recipe.kind
    return dev_evaluator(kind, recipe.dataset, recipe.dev_split, max_queries=recipe.dev_max_queries,
                         max_corpus=recipe.dev_corpus, retriever=_miner(recipe, model) if recipe.kind == "cross"
                         else None, top_k=recipe.rerank_top, name="dev", seed=recipe.seed)


def train_recipe(recipe: Recipe) -> dict[str, Any]:
    """Train one model by ``recipe``, save it to ``recipe.output``, return the JSON summary."""
    from sdk.training.args import BatchSamplers, EncoderTrainingArguments
    from sdk.training.trainer import CrossEncoderTrainer, DenseTrainer, SparseEncoderTrainer

    started = time.perf_counter()
    model = load_base(recipe.kind, recipe.base, recipe.device)
    train_dataset, negatives = _train_data(recipe, model)
    evaluator = _dev_evaluator(recipe, model)
    base_metrics = evaluator(model) if evaluator is not None else {}
    loss = _loss(recipe, model, negatives)
    trainer_cls = {"dense": DenseTrainer, "cross": CrossEncoderTrainer, "sparse": SparseEncoderTrainer,
                   "tsdae": DenseTrainer}[recipe.kind]
    default_lr = {"dense": 2e-5, "cross": 2e-5, "sparse": 2e-5, "tsdae": 3e-5}[recipe.kind]
    tsdae = recipe.kind == "tsdae"
    schedule: dict[str, Any] = ({"lr_scheduler_type": "constant", "weight_decay": 0.0} if tsdae else
                                {"warmup_ratio": 0.1})
    args = trainer_cls.args_class(
        output_dir=str(Path(recipe.output) / "checkpoints"), num_train_epochs=recipe.epochs,
        max_steps=recipe.max_steps, per_device_train_batch_size=recipe.batch_size or (8 if tsdae else 32),
        learning_rate=recipe.learning_rate or default_lr, seed=recipe.seed, **schedule,
        fp16=recipe.fp16, bf16=recipe.bf16, save_strategy="no", eval_strategy="no", logging_steps=50,
        report_to=[], disable_tqdm=not recipe.progress,
        batch_sampler=BatchSamplers.BATCH_SAMPLER if recipe.kind in ("cross", "tsdae") else BatchSamplers.NO_DUPLICATES,
    )
    if not isinstance(args, EncoderTrainingArguments):  # pragma: no cover - class attribute typo guard
        raise InputError("internal: wrong training arguments class")
    trainer = trainer_cls(model=model, args=args, train_dataset=train_dataset, loss=loss)
    train_started = time.perf_counter()
    output = trainer.train()
    train_s = time.perf_counter() - train_started
    trainer.save_model(recipe.output)
    trained_metrics = evaluator(model) if evaluator is not None else {}
    summary = {
        "kind": recipe.kind, "base": str(recipe.base), "output": str(recipe.output), "dataset": str(recipe.dataset),
        "split": recipe.split, "dev_split": recipe.dev_split, "loss": type(loss).__name__,
        "train_rows": len(train_dataset), "hard_negatives": negatives, "steps": output.global_step,
        "epochs": round(float(trainer.state.epoch or 0), 3), "train_loss": round(float(output.training_loss), 6),
        "samples_per_s": round(float(output.metrics.get("train_samples_per_second", 0.0)), 2),
        "train_minutes": round(train_s / 60, 2), "total_minutes": round((time.perf_counter() - started) / 60, 2),
        "base_metrics": base_metrics, "trained_metrics": trained_metrics,
    }
    if evaluator is not None and getattr(evaluator, "primary_metric", None):
        key = evaluator.primary_metric
        summary["primary_metric"] = key
        summary["base"] = str(recipe.base)
        summary["improvement"] = round(trained_metrics.get(key, 0.0) - base_metrics.get(key, 0.0), 6)
    return summary
