"""TokenChunker: exact slices, token budgets, overlap, stable hashes, and the encoder-derived budget."""

from __future__ import annotations

import hashlib
import json
from itertools import islice
from typing import Any

import pytest

from sdk.core.errors import InputError
from sdk.core.types import Document
from sdk.sync.chunking import MIN_CHUNK_TOKENS, Chunk, TokenChunker, content_hash
from tests.conftest import data_dir


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """The real all-MiniLM-L6-v2 WordPiece tokenizer (packaged, no download)."""
    from transformers import AutoTokenizer

    from sdk.encoders.loading import default_dense_model

    return AutoTokenizer.from_pretrained(default_dense_model())


@pytest.fixture(scope="module")
def corpus() -> list[Document]:
    """The pyfaq corpus (docs up to 400 words), as the sync source yields it."""
    from sdk.sync.sources import JsonlSource

    path = data_dir() / "pyfaq" / "corpus.jsonl"
    if not path.is_file():
        pytest.fail(f"BEIR data not found at {path}; set SDK_DATA_DIR to the folder holding pyfaq/")
    return list(JsonlSource(path))


@pytest.fixture(scope="module")
def long_doc(corpus: list[Document]) -> Document:
    return max(corpus, key=lambda d: len(d.text))


def _count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _rebuild(chunks: list[Chunk]) -> str:
    """The document text from its chunks, each chunk's overlap with the previous one removed."""
    text, end = "", 0
    for chunk in chunks:
        assert chunk.start is not None and chunk.end is not None
        assert chunk.start <= end or not text, "chunks leave a gap"
        text += chunk.text[end - chunk.start:]
        end = chunk.end
    return text


def test_short_text_is_one_chunk_equal_to_the_text(tokenizer: Any) -> None:
    chunker = TokenChunker(tokenizer, 32)
    text = "  How do I install a package?\n\n"
    doc = Document("faq/1", text, {"lang": "en", "chunk": "overridden"})
    [chunk] = chunker.chunk(doc)
    assert chunk == Chunk("faq/1#0", "faq/1", 0, text, chunk.metadata, content_hash(text), 0, len(text))
    assert chunk.content_hash == hashlib.sha256(text.encode()).hexdigest()[:32]
    assert dict(chunk.metadata) == {"lang": "en", "chunk": 0, "document_id": "faq/1", "content_hash": chunk.content_hash}
    json.dumps(dict(chunk.metadata))  # stored as payload: must be JSON-able


def test_empty_and_whitespace_texts_have_no_chunks(tokenizer: Any) -> None:
    chunker = TokenChunker(tokenizer, 32)
    assert chunker.chunk(Document("a", "")) == []
    assert chunker.chunk(Document("b", " \n\t\u3000 ")) == []
    assert chunker.chunk_batch([Document("a", ""), Document("c", "text")])[0] == []


@pytest.mark.parametrize(("size", "overlap"), [(64, 0), (40, 10), (MIN_CHUNK_TOKENS, 3)])
def test_long_document_is_covered_exactly_within_the_budget(tokenizer: Any, long_doc: Document, size: int,
                                                            overlap: int) -> None:
    chunks = TokenChunker(tokenizer, size, overlap).chunk(long_doc)
    assert len(chunks) > 3
    assert _rebuild(chunks) == long_doc.text
    if overlap == 0:
        assert "".join(c.text for c in chunks) == long_doc.text
    for position, chunk in enumerate(chunks):
        assert chunk.position == position and chunk.id == f"{long_doc.id}#{position}"
        assert chunk.document_id == long_doc.id and chunk.metadata["document_id"] == long_doc.id
        assert chunk.metadata["chunk"] == position and chunk.metadata["content_hash"] == chunk.content_hash
        assert chunk.metadata["title"] == long_doc.metadata["title"]
        assert chunk.text == long_doc.text[chunk.start:chunk.end]
        assert chunk.content_hash == content_hash(chunk.text)
        assert 0 < _count(tokenizer, chunk.text) <= size
    assert len({c.id for c in chunks}) == len(chunks)


def test_consecutive_chunks_share_the_overlap(tokenizer: Any, long_doc: Document) -> None:
    chunks = TokenChunker(tokenizer, 48, 12).chunk(long_doc)
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start < before.end
        shared = long_doc.text[after.start:before.end]
        assert before.text.endswith(shared) and after.text.startswith(shared)
        assert 12 <= _count(tokenizer, shared) < 48  # word boundaries may add a little, never drop any
    plain = TokenChunker(tokenizer, 48).chunk(long_doc)
    assert len(chunks) > len(plain)
    assert all(a.end == b.start for a, b in zip(plain, plain[1:], strict=False))


def test_every_chunk_of_a_corpus_fits_and_rebuilds(tokenizer: Any, corpus: list[Document]) -> None:
    chunker = TokenChunker(tokenizer, 50, 5)
    docs = corpus[:400]
    for doc, chunks in chunker.chunk_many(docs, batch_size=64):
        assert _rebuild(chunks) == doc.text
        assert all(_count(tokenizer, c.text) <= 50 for c in chunks), doc.id


def test_chunks_end_at_word_boundaries(tokenizer: Any) -> None:
    text = " ".join(["internationalization"] * 40)  # several word pieces per word
    chunks = TokenChunker(tokenizer, 16).chunk(Document("d", text))
    assert all(c.text.strip().split(" ") == ["internationalization"] * len(c.text.split()) for c in chunks)
    assert "".join(c.text for c in chunks) == text


def test_a_word_longer_than_the_window_is_cut_inside(tokenizer: Any) -> None:
    text = "start " + "y" * 90 + " tail words here"  # one word of 90 word pieces
    chunks = TokenChunker(tokenizer, 10, 2).chunk(Document("d", text))
    assert len(chunks) > 9 and _rebuild(chunks) == text
    assert chunks[0].text == "start"  # the long word starts a new window


def test_unicode_text_is_sliced_exactly(tokenizer: Any) -> None:
    text = ("Café naïve résumé — 東京タワー is tall 🚀🚀 and ﬁne. " * 30).strip()
    chunks = TokenChunker(tokenizer, 20, 4).chunk(Document("u", text))
    assert len(chunks) > 3 and _rebuild(chunks) == text


def test_deterministic_and_batch_equals_one_by_one(tokenizer: Any, corpus: list[Document]) -> None:
    docs = corpus[:50] + [Document("empty", "  ")]
    chunker = TokenChunker(tokenizer, 64, 8)
    one_by_one = [chunker.chunk(d) for d in docs]
    assert chunker.chunk_batch(docs) == one_by_one
    assert [c for _, c in chunker.chunk_many(iter(docs), batch_size=7)] == one_by_one
    assert [d for d, _ in chunker.chunk_many(docs, batch_size=7)] == docs
    assert TokenChunker(tokenizer, 64, 8).chunk_batch(docs) == one_by_one


def test_the_shared_tokenizer_state_does_not_leak_in(tokenizer: Any, long_doc: Document) -> None:
    chunker = TokenChunker(tokenizer, 64)
    before, settings = chunker.chunk(long_doc), chunker.settings
    tokenizer(["some text"] * 2, truncation=True, max_length=10, padding="max_length")  # what an encoder does
    assert chunker.chunk(long_doc) == before and chunker.settings == settings
    assert TokenChunker(tokenizer, 64).settings == settings


def test_editing_the_last_sentence_changes_only_the_last_chunks(tokenizer: Any, long_doc: Document) -> None:
    chunker = TokenChunker(tokenizer, 64, 8)
    edited = Document(long_doc.id, long_doc.text.rstrip() + " One more sentence was added here.",
                      dict(long_doc.metadata))
    old, new = chunker.chunk(long_doc), chunker.chunk(edited)
    same = [a.content_hash == b.content_hash for a, b in zip(old, new, strict=False)]
    changed = len(old) - sum(same)
    assert 1 <= changed <= 2 and all(same[:-2])
    assert [c.id for c in new[: len(old) - 2]] == [c.id for c in old[: len(old) - 2]]
    assert new[-1].text.endswith("One more sentence was added here.")


def test_settings_change_with_anything_that_moves_boundaries(tokenizer: Any, tiny_bert: Any) -> None:
    base = TokenChunker(tokenizer, 64, 8).settings
    json.dumps(base)
    assert base["kind"] == "tokens" and base["chunk_tokens"] == 64 and base["overlap"] == 8
    assert TokenChunker(tokenizer, 64, 8).settings == base
    assert TokenChunker(tokenizer, 65, 8).settings != base
    assert TokenChunker(tokenizer, 64, 9).settings != base
    assert TokenChunker(tiny_bert.tokenizer, 64, 8).settings["tokenizer"] != base["tokenizer"]


@pytest.mark.parametrize(("size", "overlap", "message"), [
    (MIN_CHUNK_TOKENS - 1, 0, "chunk_tokens must be at least"),
    (64, 64, "overlap must be >= 0 and smaller than chunk_tokens"),
    (64, -1, "overlap must be >= 0"),
    (64.0, 0, "chunk_tokens must be an integer"),
    (True, 0, "chunk_tokens must be an integer"),
    (64, None, "overlap must be an integer"),
])
def test_bad_window_settings(tokenizer: Any, size: Any, overlap: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        TokenChunker(tokenizer, size, overlap)


def test_slow_tokenizers_and_non_documents_are_refused(tokenizer: Any) -> None:
    class SlowTokenizer:  # a Python-only tokenizer: no Rust backend, no offsets
        def __call__(self, text: str, **kwargs: Any) -> dict[str, list[int]]:
            return {"input_ids": [1] * len(text.split())}

    with pytest.raises(InputError, match="fast .*tokenizer.*got SlowTokenizer.*use_fast=True"):
        TokenChunker(SlowTokenizer(), 32)
    with pytest.raises(InputError, match=r"docs\[0\] is a str, not a Document"):
        TokenChunker(tokenizer, 32).chunk("just a string")  # type: ignore[arg-type]


def test_from_encoder_budget_is_what_the_model_reads(minilm: Any) -> None:
    chunker = TokenChunker.from_encoder(minilm)
    assert chunker.chunk_tokens == minilm.max_seq_length - 2  # [CLS] and [SEP]
    assert chunker.tokenizer is minilm.tokenizer
    assert TokenChunker.from_encoder(minilm, 100, 10).chunk_tokens == 100
    with pytest.raises(InputError, match="more than the encoder reads.*chunk_tokens <= 254"):
        TokenChunker.from_encoder(minilm, 300)


def test_from_encoder_counts_the_document_prompt(tiny_bert: Any, corpus: list[Document]) -> None:
    prompt = tiny_bert.prompts["document"]
    chunker = TokenChunker.from_encoder(tiny_bert)
    prompt_tokens = len(tiny_bert.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert prompt_tokens > 0
    assert chunker.chunk_tokens == tiny_bert.max_seq_length - 2 - prompt_tokens
    for doc in islice(corpus, 20):
        for chunk in chunker.chunk(doc):  # what encode_document feeds the model: never truncated
            assert len(tiny_bert.tokenizer(prompt + chunk.text)["input_ids"]) <= tiny_bert.max_seq_length
    with pytest.raises(InputError, match="document prompt"):
        TokenChunker.from_encoder(tiny_bert, tiny_bert.max_seq_length)
    with pytest.raises(InputError, match="no tokenizer"):
        TokenChunker.from_encoder(object())
