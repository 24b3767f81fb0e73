"""Reading real texts from the shared BEIR datasets for tests."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path


def real_texts(data: Path, n: int) -> list[str]:
    """``n`` real texts: pyfaq and debpkg queries and documents, mixed lengths, deterministic."""
    sources = [data / "pyfaq" / "queries.jsonl", data / "pyfaq" / "corpus.jsonl",
               data / "debpkg" / "queries.jsonl", data / "debpkg" / "corpus.jsonl"]
    pools = []
    for path in sources:
        with open(path, encoding="utf8") as fh:
            pools.append([json.loads(line)["text"] for line in islice(fh, n)])
    texts: list[str] = []
    for row in range(n):
        texts.extend(pool[row] for pool in pools if row < len(pool))
        if len(texts) >= n:
            break
    return texts[:n]
