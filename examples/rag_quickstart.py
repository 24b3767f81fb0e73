"""RAG quickstart on the embedded store: index a small knowledge base, retrieve, build the LLM prompt.

    python examples/rag_quickstart.py

Nothing to start: Qdrant's local mode keeps the collection in a folder (here a temporary one; pass
``qdrant+local:./kb`` to keep it). Dense (all-MiniLM-L6-v2) and sparse (SPLADE-tiny) vectors are
fused by Qdrant's own hybrid query. The last step is where your LLM call goes.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from sdk import DenseEncoder, Document, RetrievalPipeline, SparseEncoder

SAMPLE = Path(__file__).resolve().parents[1] / "sdk" / "data" / "sample_corpus.jsonl"
QUESTION = "How can I make a Python script executable on Unix?"


def load_sample(limit: int = 70) -> list[Document]:
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf8").splitlines()[:limit]]
    return [Document(r["id"], r["text"], {"title": r["title"]}) for r in rows]


def build_prompt(question: str, passages: list[str]) -> str:
    context = "\n\n".join(f"[{i}] {p}" for i, p in enumerate(passages, start=1))
    return f"Answer the question from the numbered context and cite it.\n\nContext:\n{context}\n\nQuestion: {question}"


def main(store: str | None = None) -> list[str]:
    with tempfile.TemporaryDirectory() as folder:
        pipeline = RetrievalPipeline(DenseEncoder(), SparseEncoder(), store=store or f"qdrant+local:{folder}/kb",
                                     collection="faq", limit=3)
        try:
            pipeline.add_documents(load_sample())
            hits = pipeline.search(QUESTION)
            prompt = build_prompt(QUESTION, [h.text or "" for h in hits])
        finally:
            pipeline.close()
    print(prompt[:600])
    print("\nretrieved:", [h.id for h in hits])
    return [h.id for h in hits]


if __name__ == "__main__":
    main()
