"""TSDAE training data: unlabelled sentences become (damaged, original) rows.

``DenoisingAutoEncoderDataset`` is sentence-transformers' class of the same name, readable by our
trainers: each access returns ``{"noisy": delete_words(sentence), "text": sentence}``, so every
epoch sees fresh noise. Deletion noise is the seed's: each word kept with probability
``1 - del_ratio`` (0.6 by default, the paper's best), at least one word always kept.

Words: sentence-transformers splits with nltk's ``word_tokenize`` and re-joins with its Treebank
detokenizer, and has no fallback (its dataset raises ImportError without nltk). This SDK does not
depend on nltk: words are whitespace-separated tokens re-joined with single spaces, so punctuation
stays attached to its word ("files," is deleted or kept whole). Pass ``split``/``join`` (e.g.
nltk's pair) to ``delete_words`` through ``noise_fn`` to get nltk's word boundaries instead.

``corpus_sentences`` turns a BEIR ``corpus.jsonl`` or a text file into training sentences.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from sdk.core.errors import InputError
from sdk.core.textfiles import read_texts

__all__ = ["DenoisingAutoEncoderDataset", "corpus_sentences", "delete_words", "split_sentences"]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])|\n+")


def delete_words(
    text: str,
    del_ratio: float = 0.6,
    rng: np.random.RandomState | None = None,
    split: Callable[[str], Sequence[str]] = str.split,
    join: Callable[[Sequence[str]], str] = " ".join,
) -> str:
    """Drop each word with probability ``del_ratio``; keep one at random if all would go.

    Draws exactly as sentence-transformers' ``DenoisingAutoEncoderDataset.delete`` does
    (``rand(n) > del_ratio``, then ``choice(n)``), from ``rng`` or numpy's global generator, so the
    same seed gives the same noise as theirs.
    """
    words = list(split(text))
    n = len(words)
    if n == 0:
        return text
    draw = rng if rng is not None else np.random
    keep = draw.rand(n) > del_ratio
    if not keep.any():
        keep[draw.choice(n)] = True
    return join([w for w, k in zip(words, keep, strict=True) if k])


class DenoisingAutoEncoderDataset(Dataset):
    """(damaged, original) rows for ``DenoisingAutoEncoderLoss``, noise drawn at each access.

    ``seed`` gives the dataset its own generator, so a run is repeatable (with
    ``dataloader_num_workers=0``; each worker process would draw from its own copy); without it the
    noise comes from numpy's global generator, as in sentence-transformers. ``noise_fn`` replaces
    deletion noise with any ``str -> str`` function.
    """

    column_names: tuple[str, str] = ("noisy", "text")

    def __init__(
        self,
        sentences: Sequence[str],
        noise_fn: Callable[[str], str] | None = None,
        del_ratio: float = 0.6,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= del_ratio < 1.0:
            raise InputError(f"del_ratio must be in [0, 1), got {del_ratio}")
        self.sentences = list(sentences)
        if not self.sentences:
            raise InputError("DenoisingAutoEncoderDataset needs at least one sentence")
        bad = [s for s in self.sentences if not isinstance(s, str)]
        if bad:
            raise InputError(f"sentences must be strings; got {type(bad[0]).__name__}")
        self.del_ratio = del_ratio
        self.rng = np.random.RandomState(seed) if seed is not None else None
        self.noise_fn = noise_fn or self.delete

    def delete(self, text: str) -> str:
        return delete_words(text, self.del_ratio, self.rng)

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, item: int | str) -> Any:
        if isinstance(item, str):  # a whole column, as datasets.Dataset gives it
            if item == "text":
                return list(self.sentences)
            if item == "noisy":
                return [self.noise_fn(s) for s in self.sentences]
            raise KeyError(item)
        sentence = self.sentences[item]
        return {"noisy": self.noise_fn(sentence), "text": sentence}


def split_sentences(text: str, min_words: int = 4) -> list[str]:
    """Split a document at sentence ends (., !, ? before a capital or digit) and line breaks;
    keep pieces of at least ``min_words`` words (shorter ones teach the decoder little)."""
    pieces = (" ".join(p.split()) for p in _SENTENCE_END.split(text))
    return [p for p in pieces if len(p.split()) >= min_words]


def corpus_sentences(
    source: str | Path | Iterable[str],
    max_sentences: int | None = None,
    min_words: int = 4,
    seed: int = 12,
    split: bool = True,
) -> list[str]:
    """Training sentences from a BEIR folder / ``corpus.jsonl`` (title + text of every document), a
    text file (one sentence per line, sentence-transformers' TSDAE format) or an iterable of texts.

    Documents are cut into sentences when ``split``; duplicates are dropped (package families share
    descriptions), and ``max_sentences`` keeps a seeded random sample in corpus order.
    """
    texts, per_line = _read_texts(source)
    out: dict[str, None] = {}
    for text in texts:
        pieces = [" ".join(text.split())] if per_line or not split else split_sentences(text, min_words)
        for piece in pieces:
            if len(piece.split()) >= min_words:
                out.setdefault(piece)
    sentences = list(out)
    if not sentences:
        raise InputError(f"no sentence of at least {min_words} words in {source}")
    if max_sentences is not None:
        if max_sentences < 1:
            raise InputError(f"max_sentences must be >= 1, got {max_sentences}")
        if max_sentences < len(sentences):
            keep = sorted(random.Random(seed).sample(range(len(sentences)), max_sentences))
            sentences = [sentences[i] for i in keep]
    return sentences


def _read_texts(source: str | Path | Iterable[str]) -> tuple[list[str], bool]:
    """The texts and whether they are already one sentence per line (a plain text file)."""
    if not isinstance(source, (str, Path)):
        return [t for t in source if isinstance(t, str)], False
    path = Path(source)
    if path.is_dir():
        path = path / "corpus.jsonl"
    if not path.is_file():
        raise InputError(f"{source} is neither a BEIR folder, a corpus.jsonl nor a text file; give one of those")
    return read_texts(path, title_separator=". "), path.suffix != ".jsonl"
