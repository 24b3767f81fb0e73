"""Reading BEIR-format folders: corpus.jsonl, queries.jsonl and qrels/<split>.tsv."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from sdk.core.errors import InputError

__all__ = ["BeirDataset", "load_beir"]


@dataclass(frozen=True)
class BeirDataset:
    """Corpus texts by id, the split's queries by id, and their graded relevant documents."""

    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    @property
    def corpus_ids(self) -> list[str]:
        return list(self.corpus)


def load_beir(folder: str | Path, split: str = "test") -> BeirDataset:
    """Load a BEIR folder; documents are ``title + " " + text`` when a title exists.

    Only queries that have relevance judgements in ``split`` are kept.
    """
    root = Path(folder)
    qrels_path = root / "qrels" / f"{split}.tsv"
    for path in (root / "corpus.jsonl", root / "queries.jsonl", qrels_path):
        if not path.is_file():
            raise InputError(f"{path} is missing; a BEIR folder needs corpus.jsonl, queries.jsonl, qrels/{split}.tsv")
    corpus: dict[str, str] = {}
    with open(root / "corpus.jsonl", encoding="utf8") as fh:
        for line in fh:
            row = json.loads(line)
            title = (row.get("title") or "").strip()
            corpus[str(row["_id"])] = f"{title} {row.get('text', '')}".strip() if title else row.get("text", "")
    qrels: dict[str, dict[str, int]] = {}
    with open(qrels_path, encoding="utf8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        for row in reader:
            if not row or row[0] in ("query-id", "query_id"):
                continue
            qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
    queries: dict[str, str] = {}
    with open(root / "queries.jsonl", encoding="utf8") as fh:
        for line in fh:
            row = json.loads(line)
            if str(row["_id"]) in qrels:
                queries[str(row["_id"])] = row["text"]
    return BeirDataset(corpus=corpus, queries=queries, qrels={q: r for q, r in qrels.items() if q in queries})
