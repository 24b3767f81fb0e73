"""Deterministic stand-ins for encoders and rerankers (like LangChain's fake embeddings).

They make pipeline tests exact and fast: vectors depend only on a text's words, so batching,
threads and call order cannot change a result.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import Any

import numpy as np

from sdk.core.types import SparseVector

DIM = 48


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _bucket(word: str, size: int) -> int:
    return int.from_bytes(hashlib.sha1(word.encode()).digest()[:4], "big") % size


class FakeDense:
    """Hashed bag of words, L2-normalised; cosine similarity."""

    similarity_fn_name = "cosine"
    model_path = None

    def get_sentence_embedding_dimension(self) -> int:
        return DIM

    def _one(self, text: str) -> np.ndarray:
        v = np.full(DIM, 1e-3, dtype=np.float32)
        for w in _words(text):
            v[_bucket(w, DIM)] += 1.0
        return v / np.linalg.norm(v)

    def encode_document(self, texts: Any, **_: Any) -> np.ndarray:
        return self.encode_query(texts)

    def encode_query(self, texts: Any, **_: Any) -> np.ndarray:
        if isinstance(texts, str):
            return self._one(texts)
        return np.stack([self._one(t) for t in texts])


class FakeSparse:
    """Word counts on hashed indices (log-scaled), like a tiny lexical SPLADE."""

    model_path = None

    def _one(self, text: str) -> SparseVector:
        counts = Counter(_bucket(w, 30_000) for w in _words(text))
        idx = sorted(counts)
        return SparseVector(tuple(idx), tuple(float(np.log1p(counts[i])) for i in idx))

    def encode_document(self, texts: Any, **_: Any) -> Any:
        return self.encode_query(texts)

    def encode_query(self, texts: Any, **_: Any) -> Any:
        return self._one(texts) if isinstance(texts, str) else [self._one(t) for t in texts]


class FakeReranker:
    """Scores a pair by the share of query words in the document, minus a length penalty."""

    num_labels = 1

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, pairs: list[tuple[str, str]], **_: Any) -> np.ndarray:
        self.calls += 1
        out = []
        for q, d in pairs:
            qw, dw = set(_words(q)), _words(d)
            out.append(len(qw.intersection(dw)) / max(len(qw), 1) - 0.001 * len(dw))
        return np.asarray(out, dtype=np.float32)


TOPICS = ["python list tuple", "debian package install", "vector database search", "error handling exceptions",
          "unicode strings encoding", "threads and processes"]


def fake_documents(n: int = 60) -> list[Any]:
    from sdk.core.types import Document

    return [Document(f"d{i:03d}", f"{TOPICS[i % len(TOPICS)]} note {i} " + " ".join(TOPICS[(i * 7) % len(TOPICS)]
                                                                                   .split()[: 1 + i % 3]),
                     {"kind": "even" if i % 2 == 0 else "odd", "n": i}) for i in range(n)]
