"""Training data from feedback labels, and fine-tuning a candidate model on it.

Rows come from the ``train`` split only (the gate scores on ``eval``). Positives repeat by their
feedback weight (``min(round(weight), max_repeat)``, at least once), which is how the inverse
propensity weights of clicks reach losses that take no per-row weight. Negatives are the labels'
own (thumbs-down, skipped above a chosen hit); a query without one borrows up to
``shown_negatives`` documents that were shown for it and not chosen. Document texts are read back
from the store, so training sees exactly what was indexed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdk.core.errors import InputError
from sdk.feedback.labels import QueryLabels

__all__ = ["document_texts", "reranker_rows", "train_candidate", "triplet_rows"]


def document_texts(adapter: Any, collection: str, groups: Sequence[QueryLabels], batch: int = 256) -> dict[str, str]:
    """The stored text of every document the groups mention (missing or deleted ones are left out)."""
    ids = sorted({j.doc_id for g in groups for j in (*g.positives, *g.negatives)} | {d for g in groups for d in g.shown})
    texts: dict[str, str] = {}
    for start in range(0, len(ids), batch):
        for record in adapter.get(collection, ids[start:start + batch]):
            if record.text:
                texts[record.id] = record.text
    return texts


def _negatives(group: QueryLabels, texts: dict[str, str], shown_negatives: int) -> list[str]:
    negs = [j.doc_id for j in group.negatives if j.doc_id in texts]
    if not negs:
        chosen = {j.doc_id for j in group.positives}
        negs = [d for d in group.shown if d not in chosen and d in texts][:shown_negatives]
    return negs


def _repeat(weight: float, max_repeat: int) -> int:
    return max(1, min(int(round(weight)), max_repeat))


def reranker_rows(groups: Sequence[QueryLabels], texts: dict[str, str], *, max_repeat: int = 3,
                  shown_negatives: int = 3) -> dict[str, list[Any]]:
    """(query, passage, label) rows for a cross-encoder: 1 for positives, 0 for negatives."""
    rows: dict[str, list[Any]] = {"query": [], "passage": [], "label": []}
    for g in groups:
        if g.query is None:
            continue
        for j in g.positives:
            if j.doc_id in texts:
                for _ in range(_repeat(j.weight, max_repeat)):
                    rows["query"].append(g.query)
                    rows["passage"].append(texts[j.doc_id])
                    rows["label"].append(1.0)
        for d in _negatives(g, texts, shown_negatives):
            rows["query"].append(g.query)
            rows["passage"].append(texts[d])
            rows["label"].append(0.0)
    return rows


def triplet_rows(groups: Sequence[QueryLabels], texts: dict[str, str], *, max_repeat: int = 3,
                 shown_negatives: int = 3) -> dict[str, list[str]]:
    """(anchor, positive, negative) rows for a bi-encoder; each positive is paired with each negative in turn."""
    rows: dict[str, list[str]] = {"anchor": [], "positive": [], "negative": []}
    for g in groups:
        if g.query is None:
            continue
        negs = _negatives(g, texts, shown_negatives)
        if not negs:
            continue
        n = 0
        for j in g.positives:
            if j.doc_id not in texts:
                continue
            for _ in range(_repeat(j.weight, max_repeat)):
                rows["anchor"].append(g.query)
                rows["positive"].append(texts[j.doc_id])
                rows["negative"].append(texts[negs[n % len(negs)]])
                n += 1
    return rows


def train_candidate(kind: str, base: str | os.PathLike[str], rows: dict[str, list[Any]], output: str | Path, *,
                    epochs: float = 1.0, batch_size: int = 16, learning_rate: float = 2e-5, seed: int = 12,
                    max_steps: int = -1, device: str | None = None) -> Path:
    """Fine-tune a copy of the model at ``base`` on ``rows`` and save it to ``output`` (returned)."""
    from datasets import Dataset

    from sdk.training import (
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
        DenseTrainer,
        DenseTrainingArguments,
        SparseEncoderTrainer,
        SparseEncoderTrainingArguments,
    )
    from sdk.training.recipes import load_base

    n = len(next(iter(rows.values()), []))
    if n == 0:
        raise InputError(f"no {kind} training rows: the labels' train split has no query with a stored positive "
                         "document (and, for encoders, a negative); collect more feedback")
    trainer_cls, args_cls = {"cross": (CrossEncoderTrainer, CrossEncoderTrainingArguments),
                             "dense": (DenseTrainer, DenseTrainingArguments),
                             "sparse": (SparseEncoderTrainer, SparseEncoderTrainingArguments)}[kind]
    model = load_base(kind, str(base), device=device)
    out = Path(output)
    args = args_cls(output_dir=str(out / "checkpoints"), num_train_epochs=epochs, per_device_train_batch_size=batch_size,
                    learning_rate=learning_rate, warmup_steps=0.1, seed=seed, save_strategy="no", eval_strategy="no",
                    logging_steps=50, report_to=[], disable_tqdm=True, max_steps=max_steps,
                    batch_sampler="batch_sampler" if kind == "cross" else "no_duplicates")
    trainer = trainer_cls(model=model, args=args, train_dataset=Dataset.from_dict(rows))
    trainer.train()
    model.save(str(out))
    return out
