"""Training data from BEIR folders: (query, positive) pairs, triplets, labelled pairs, parallel sentences.

Columns follow sentence-transformers' conventions so every loss reads them in the right order:
``anchor, positive[, negative]`` for contrastive losses, ``query, passage, label`` for
cross-encoders, ``sentence1, sentence2, score`` for similarity regression.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from sdk.core.errors import InputError
from sdk.evaluation.beir import load_beir

__all__ = ["beir_pairs", "parallel_sentences"]

Format = Literal["pairs", "triplets", "labeled-pairs"]


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - the train extra installs it
        raise InputError("training data needs the 'datasets' package: pip install 'retrieval-forge[train]'") from exc
    return datasets


def beir_pairs(
    folder: str | Path,
    split: str = "train",
    format: Format = "pairs",
    min_relevance: int = 1,
    max_queries: int | None = None,
    seed: int = 12,
) -> Any:
    """A ``datasets.Dataset`` from a BEIR split: one row per (query, relevant document).

    - ``"pairs"``: columns ``anchor, positive`` (for MNRL; add hard negatives with
      ``mine_hard_negatives``).
    - ``"triplets"``: ``anchor, positive, negative`` with one random non-relevant document per row
      (cheap; mined negatives are better).
    - ``"labeled-pairs"``: ``query, passage, label``: each positive (label 1) and one random
      non-relevant document (label 0), for BinaryCrossEntropyLoss.
    Rows keep the qrels order; queries are subsampled with ``seed`` when ``max_queries`` is set.
    """
    if format not in ("pairs", "triplets", "labeled-pairs"):
        raise InputError(f"format must be 'pairs', 'triplets' or 'labeled-pairs', got {format!r}")
    data = load_beir(folder, split)
    qids = list(data.queries)
    rng = random.Random(seed)
    if max_queries is not None:
        if max_queries < 1:
            raise InputError(f"max_queries must be >= 1, got {max_queries}")
        qids = sorted(rng.sample(qids, min(max_queries, len(qids))), key=qids.index)
    doc_ids = data.corpus_ids
    rows: dict[str, list[Any]] = {}
    for qid in qids:
        relevant = {d for d, rel in data.qrels[qid].items() if rel >= min_relevance and d in data.corpus}
        for did in (d for d in data.qrels[qid] if d in relevant):
            query, positive = data.queries[qid], data.corpus[did]
            if format == "pairs":
                _add(rows, anchor=query, positive=positive)
                continue
            negative = data.corpus[_random_other(doc_ids, relevant, rng)]
            if format == "triplets":
                _add(rows, anchor=query, positive=positive, negative=negative)
            else:
                _add(rows, query=query, passage=positive, label=1)
                _add(rows, query=query, passage=negative, label=0)
    if not rows:
        raise InputError(f"{folder} split {split!r} has no (query, relevant document) pairs with relevance >= {min_relevance}")
    return _datasets().Dataset.from_dict(rows)


def _add(rows: dict[str, list[Any]], **values: Any) -> None:
    for key, value in values.items():
        rows.setdefault(key, []).append(value)


def _random_other(doc_ids: Sequence[str], exclude: set[str], rng: random.Random) -> str:
    if len(exclude) >= len(doc_ids):
        raise InputError("every corpus document is relevant to a query; no negative can be drawn")
    while True:
        candidate = doc_ids[rng.randrange(len(doc_ids))]
        if candidate not in exclude:
            return candidate


def parallel_sentences(
    source: Sequence[str], targets: Sequence[str] | Sequence[Sequence[str]], teacher: Any, batch_size: int = 64,
) -> Any:
    """Multilingual distillation data: the student must map a sentence and its translations to the
    teacher's embedding of the source sentence (train with ``MSELoss``).

    Returns columns ``english, non_english, label`` (label = teacher embedding of ``english``);
    ``targets`` holds one translation per source, or a list of translations per source.
    """
    if len(source) != len(targets):
        raise InputError(f"source has {len(source)} sentences but targets has {len(targets)}; they must align")
    embeddings = teacher.encode(list(source), batch_size=batch_size, convert_to_numpy=True)
    rows: dict[str, list[Any]] = {}
    for text, translated, vector in zip(source, targets, embeddings, strict=True):
        for other in [translated] if isinstance(translated, str) else translated:
            _add(rows, english=text, non_english=other, label=vector.tolist())
    return _datasets().Dataset.from_dict(rows)
