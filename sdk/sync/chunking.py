"""Cut documents into chunks that fit the encoder, so no text is silently truncated by the model.

Chunks are windows of at most ``chunk_tokens`` tokens of the encoder's own tokenizer, cut at word
boundaries where possible, consecutive windows sharing ``overlap`` tokens. A chunk's text is an
exact slice of the document's text (offsets from the Rust tokenizer), so nothing is lost or
rewritten: without overlap the chunk texts concatenate back to the document, and whitespace
between two chunks belongs to the later one. Windows are laid greedily from the start, so an edit
near the end of a long document changes only the last chunk(s) and their ``content_hash``, which
is what lets sync re-embed only what changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sdk.core.errors import InputError
from sdk.core.types import Document
from sdk.encoders.fingerprint import tokenizer_digest
from sdk.sync.sources import ImageDocument

__all__ = ["MIN_CHUNK_TOKENS", "Chunk", "TokenChunker", "content_hash"]

#: Smallest window accepted: below this, chunks carry too little text to embed meaningfully.
MIN_CHUNK_TOKENS = 8
#: Bumped whenever the windowing rule changes (part of ``TokenChunker.settings``).
_RULE_VERSION = 1
_BATCH = 256


def content_hash(text: str) -> str:
    """First 32 hex chars of the sha256 of ``text`` (UTF-8; lone surrogates passed through)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True)
class Chunk:
    """One piece of a document, as sync embeds and stores it.

    ``id`` is ``f"{document_id}#{position}"``; ``metadata`` is the document's metadata plus
    "document_id", "chunk" (the position) and "content_hash". ``start`` / ``end`` are the chunk's
    character offsets in the document text (not stored in metadata: they shift on every edit
    above the chunk, while the chunk itself may be unchanged). ``image`` is the file an image
    document's only chunk is encoded from (``text`` is then its relative path, ``content_hash``
    the hash of the file's bytes); None for text.
    """

    id: str
    document_id: str
    position: int
    text: str
    metadata: Mapping[str, Any]
    content_hash: str
    start: int | None = None
    end: int | None = None
    image: str | None = None


def _check_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be an integer, got {type(value).__name__} ({value!r})")
    return value


class TokenChunker:
    """Splits texts into windows of at most ``chunk_tokens`` tokens (special tokens not counted).

    ``tokenizer`` is a transformers *fast* tokenizer (the offsets come from its Rust backend);
    use ``from_encoder`` to take an encoder's tokenizer and a budget the model never truncates.
    """

    def __init__(self, tokenizer: Any, chunk_tokens: int, overlap: int = 0) -> None:
        chunk_tokens = _check_int(chunk_tokens, "chunk_tokens")
        overlap = _check_int(overlap, "overlap")
        if chunk_tokens < MIN_CHUNK_TOKENS:
            raise InputError(f"chunk_tokens must be at least {MIN_CHUNK_TOKENS}, got {chunk_tokens}; "
                             "use a larger window (the model's max_seq_length is a good upper bound)")
        if not 0 <= overlap < chunk_tokens:
            raise InputError(f"overlap must be >= 0 and smaller than chunk_tokens ({chunk_tokens}), got {overlap}; "
                             "a typical overlap is 10-20% of chunk_tokens")
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None or not callable(getattr(backend, "to_str", None)):
            raise InputError(
                f"TokenChunker needs a fast (Rust) tokenizer for character offsets, got {type(tokenizer).__name__}; "
                "load it with AutoTokenizer.from_pretrained(..., use_fast=True)"
            )
        from tokenizers import Tokenizer

        # A private copy: transformers re-configures its shared backend (truncation!) on every call.
        own = Tokenizer.from_str(backend.to_str())
        own.no_padding()
        own.no_truncation()
        own.encode_special_tokens = bool(getattr(tokenizer, "split_special_tokens", False))
        self.tokenizer = tokenizer
        self.chunk_tokens = chunk_tokens
        self.overlap = overlap
        self._backend = own
        self._settings: dict[str, Any] | None = None

    @classmethod
    def from_encoder(cls, encoder: Any, chunk_tokens: int | None = None, overlap: int = 0) -> TokenChunker:
        """A chunker with ``encoder``'s tokenizer whose chunks the encoder reads whole.

        The budget is the encoder's ``max_seq_length`` minus the special tokens its tokenizer adds
        to one text, minus the tokens of the document prompt ``encode_document`` prepends (if any).
        ``chunk_tokens`` defaults to that budget; a larger value is refused.
        """
        tokenizer = getattr(encoder, "tokenizer", None)
        limit = getattr(encoder, "max_seq_length", None)
        if tokenizer is None or not isinstance(limit, int):
            raise InputError(f"{type(encoder).__name__} has no tokenizer / max_seq_length; pass a DenseEncoder or "
                             "SparseEncoder, or build TokenChunker(tokenizer, chunk_tokens) directly")
        specials = int(tokenizer.num_special_tokens_to_add(pair=False))
        prompt = _document_prompt(encoder)
        prompt_tokens = len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) if prompt else 0
        budget = limit - specials - prompt_tokens
        spent = f"max_seq_length {limit} - {specials} special tokens" + (
            f" - {prompt_tokens} tokens of the document prompt {prompt!r}" if prompt_tokens else "")
        if chunk_tokens is None:
            if budget < MIN_CHUNK_TOKENS:
                raise InputError(f"this encoder reads only {budget} tokens of text per chunk ({spent}); "
                                 f"raise encoder.max_seq_length to at least {limit + MIN_CHUNK_TOKENS - budget}")
            chunk_tokens = budget
        elif _check_int(chunk_tokens, "chunk_tokens") > budget:
            raise InputError(f"chunk_tokens={chunk_tokens} is more than the encoder reads ({spent} = {budget}), so "
                             f"chunks would be truncated; pass chunk_tokens <= {budget} or leave it unset")
        return cls(tokenizer, chunk_tokens, overlap)

    @property
    def settings(self) -> dict[str, Any]:
        """JSON-able; differs whenever chunk boundaries could differ (window, overlap, tokenizer, rule)."""
        if self._settings is None:
            self._settings = {"kind": "tokens", "version": _RULE_VERSION, "chunk_tokens": self.chunk_tokens,
                              "overlap": self.overlap, "tokenizer": tokenizer_digest(self.tokenizer)[:16]}
        return dict(self._settings)

    def __repr__(self) -> str:
        return f"TokenChunker(chunk_tokens={self.chunk_tokens}, overlap={self.overlap})"

    # -- chunking ----------------------------------------------------------------------------

    def chunk(self, doc: Document) -> list[Chunk]:
        """The chunks of one document (none for empty or whitespace-only text; one for an image)."""
        return self.chunk_batch([doc])[0]

    def chunk_batch(self, docs: Sequence[Document]) -> list[list[Chunk]]:
        """The chunks of each document, in order; tokenizes the whole batch in one Rust call."""
        docs = list(docs)
        for i, doc in enumerate(docs):
            if not isinstance(doc, Document):
                raise InputError(f"docs[{i}] is a {type(doc).__name__}, not a Document; wrap texts as Document(id, text)")
        out: list[list[Chunk]] = [[] for _ in docs]
        for i, doc in enumerate(docs):
            if isinstance(doc, ImageDocument):  # one image, one vector: nothing to cut
                metadata = {**doc.metadata, "document_id": doc.id, "chunk": 0, "content_hash": doc.digest}
                out[i] = [Chunk(f"{doc.id}#0", doc.id, 0, doc.text, metadata, doc.digest, image=doc.file)]
        todo = [i for i, doc in enumerate(docs) if not isinstance(doc, ImageDocument) and doc.text.strip()]
        if not todo:
            return out
        encodings = self._encode([docs[i] for i in todo])
        for i, encoding in zip(todo, encodings, strict=True):
            out[i] = self._chunks(docs[i], encoding)
        return out

    def chunk_many(self, docs: Iterable[Document], batch_size: int = _BATCH) -> Iterator[tuple[Document, list[Chunk]]]:
        """``(document, its chunks)`` for each document of a (lazy) iterable, tokenized in batches."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        batch: list[Document] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) >= batch_size:
                yield from zip(batch, self.chunk_batch(batch), strict=True)
                batch = []
        if batch:
            yield from zip(batch, self.chunk_batch(batch), strict=True)

    def windows(self, text: str) -> list[tuple[int, int]]:
        """The ``(start, end)`` character spans the chunks of ``text`` would cover."""
        if not text.strip():
            return []
        return self._spans(text, self._encode([Document("text", text)])[0])

    def _encode(self, docs: list[Document]) -> list[Any]:
        texts = [doc.text for doc in docs]
        try:
            return self._backend.encode_batch(texts, add_special_tokens=False)
        except Exception:  # the Rust tokenizer refuses some strings (lone surrogates); find which document
            for doc in docs:
                try:
                    self._backend.encode(doc.text, add_special_tokens=False)
                except Exception as exc:
                    raise InputError(f"document {doc.id!r} cannot be tokenized ({type(exc).__name__}: {exc}); "
                                     "clean its text (e.g. remove unpaired surrogate characters)") from exc
            raise

    def _chunks(self, doc: Document, encoding: Any) -> list[Chunk]:
        chunks = []
        for position, (start, end) in enumerate(self._spans(doc.text, encoding)):
            text = doc.text[start:end]
            digest = content_hash(text)
            metadata = {**doc.metadata, "document_id": doc.id, "chunk": position, "content_hash": digest}
            chunks.append(Chunk(f"{doc.id}#{position}", doc.id, position, text, metadata, digest, start, end))
        return chunks

    def _spans(self, text: str, encoding: Any) -> list[tuple[int, int]]:
        """Character spans of the windows; together (overlaps removed) they cover ``text`` exactly."""
        n = len(encoding)
        if n <= self.chunk_tokens:
            return [(0, len(text))]
        offsets = encoding.offsets
        words = encoding.word_ids
        # boundary[i]: token i starts a new word (or follows a gap), so a window may begin or end before it
        boundary = [True] * (n + 1)
        for i in range(1, n):
            boundary[i] = words[i] is None or words[i] != words[i - 1] or offsets[i][0] > offsets[i - 1][1]

        def cut(i: int) -> int:
            """Where the text is split before token ``i``: right after token ``i - 1``."""
            if i <= 0:
                return 0
            if i >= n:
                return len(text)
            return min(offsets[i - 1][1], offsets[i][0])

        return [(cut(s), cut(e)) for s, e in self._token_windows(n, boundary)]

    def _token_windows(self, n: int, boundary: list[bool]) -> list[tuple[int, int]]:
        """``[start, end)`` token windows: at most ``chunk_tokens`` long, ending (and starting) at a word
        boundary unless one word is longer than a window, overlapping by at least ``overlap``."""
        size, overlap = self.chunk_tokens, self.overlap
        windows: list[tuple[int, int]] = []
        start, prev_end = 0, 0
        while True:
            if start + size >= n:
                windows.append((start, n))
                return windows
            floor = max(start, prev_end)  # each window must reach past the previous one
            end = start + size
            while end > floor and not boundary[end]:
                end -= 1
            if end <= floor:
                end = start + size  # a single word longer than the window: cut inside it
            windows.append((start, end))
            prev_end = end
            nxt = max(end - overlap, start + 1)
            back = nxt
            while back > start and not boundary[back]:
                back -= 1
            if back > start:
                nxt = back  # start at the word's beginning (a little more overlap)
            else:
                while nxt < end and not boundary[nxt]:
                    nxt += 1
            start = nxt


def _document_prompt(encoder: Any) -> str | None:
    """The prompt ``encode_document`` prepends: the first document-role prompt, else the default one."""
    prompts = getattr(encoder, "prompts", None)
    if not isinstance(prompts, Mapping) or not prompts:
        return None
    from sdk.encoders.base import ROLE_PROMPTS

    for name in ROLE_PROMPTS["document"]:
        if name in prompts:
            return prompts[name] or None
    default = getattr(encoder, "default_prompt_name", None)
    return (prompts.get(default) or None) if default else None
