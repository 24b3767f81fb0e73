"""Encode a few documents, search them in float32 and with int8 storage + float rescoring.

    python examples/encode_and_search.py
"""

from __future__ import annotations

from sdk.encoders.dense import DenseEncoder
from sdk.quantization import quantize_embeddings, search_quantized
from sdk.util import semantic_search

DOCS = [
    "Use pip inside an activated virtual environment to install packages for one project.",
    "Tuples are immutable sequences; lists can be changed after creation.",
    "apt-get update refreshes the package index from the configured Debian sources.",
    "pgvector adds vector similarity search to PostgreSQL.",
]
QUERY = "how do I refresh the list of Debian packages?"


def main() -> list[str]:
    encoder = DenseEncoder()
    docs = encoder.encode(DOCS, normalize_embeddings=True)
    query = encoder.encode(QUERY, normalize_embeddings=True)
    float_hits = semantic_search(query, docs, top_k=2)[0]
    calibration = encoder.calibrate(DOCS, normalize_embeddings=True)
    codes = quantize_embeddings(docs, "int8", ranges=calibration)
    int8_hits = search_quantized(query, codes, "int8", ranges=calibration, top_k=2, oversampling=2)[0]
    lines = [f"query: {QUERY}"]
    for name, hits in (("float32", float_hits), ("int8+rescore", int8_hits)):
        for hit in hits:
            lines.append(f"  {name:13} {hit['score']:.3f}  {DOCS[hit['corpus_id']]}")
    print("\n".join(lines))
    return [DOCS[h["corpus_id"]] for h in int8_hits]


if __name__ == "__main__":
    main()
