"""Local transformer encoders and vector-database retrieval, from one SDK.

Heavy modules (torch, transformers, drivers) load lazily on first attribute access so
``import sdk`` stays cheap for the CLI and for code that only needs the value types.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "CrossEncoder": "sdk.encoders.cross_encoder",
    "DenseEncoder": "sdk.encoders.dense",
    "SparseEncoder": "sdk.encoders.sparse",
    "SparseVector": "sdk.types",
    "Document": "sdk.types",
    "Hit": "sdk.types",
    "HybridQuery": "sdk.types",
    "Fusion": "sdk.types",
    "Similarity": "sdk.metrics",
    "RetrievalPipeline": "sdk.retrieval.pipeline",
    "Retriever": "sdk.retrieval.retriever",
}

__all__ = sorted([*_LAZY, "__version__"])

if TYPE_CHECKING:  # pragma: no cover - for type checkers only; runtime access goes through __getattr__
    from sdk.encoders.cross_encoder import CrossEncoder as CrossEncoder
    from sdk.encoders.dense import DenseEncoder as DenseEncoder
    from sdk.encoders.sparse import SparseEncoder as SparseEncoder
    from sdk.metrics import Similarity as Similarity
    from sdk.retrieval.pipeline import RetrievalPipeline as RetrievalPipeline
    from sdk.retrieval.retriever import Retriever as Retriever
    from sdk.types import Document as Document
    from sdk.types import Fusion as Fusion
    from sdk.types import Hit as Hit
    from sdk.types import HybridQuery as HybridQuery
    from sdk.types import SparseVector as SparseVector


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
