"""Local transformer encoders and vector-database retrieval, from one SDK.

Heavy modules (torch, transformers, drivers) load lazily on first attribute access so
``import sdk`` stays cheap for the CLI and for code that only needs the value types.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sdk.core.version import __version__ as __version__

_ERRORS = ("AdapterError", "CapabilityError", "CollectionNotFoundError", "ConfigError", "DimensionMismatchError",
           "InputError", "MissingDependencyError", "ModelLoadError", "SDKError", "SchemaMismatchError",
           "SimilarityMismatchError", "SourceError", "SyncError", "TransientAdapterError")
_VALUES = ("And", "Document", "EncodedBatch", "Eq", "Filter", "Fusion", "FusionMethod", "Hit", "HybridQuery", "In",
           "Not", "Or", "Range", "Record", "SparseVector")

_LAZY: dict[str, str] = {
    "CrossEncoder": "sdk.encoders.cross_encoder",
    "DenseEncoder": "sdk.encoders.dense",
    "SparseEncoder": "sdk.encoders.sparse",
    "Similarity": "sdk.core.similarity",
    "CollectionSpec": "sdk.core.spec",
    "DenseField": "sdk.core.spec",
    "SparseField": "sdk.core.spec",
    "PayloadField": "sdk.core.spec",
    "IndexParams": "sdk.core.spec",
    "Capabilities": "sdk.core.capabilities",
    "VectorStore": "sdk.core.store",
    "connect": "sdk.core.registry",
    "register_adapter": "sdk.core.registry",
    "RetrievalPipeline": "sdk.retrieval.pipeline",
    "Retriever": "sdk.retrieval.retriever",
    "ForgeEmbeddings": "sdk.retrieval.langchain",  # the langchain extra, imported on first use
    "LangChainRetriever": "sdk.retrieval.langchain",
    "FeedbackStore": "sdk.feedback.store",
    "open_feedback_store": "sdk.feedback.backends",
    "export_labels": "sdk.feedback.labels",
    "Learner": "sdk.learning.loop",
    "Gate": "sdk.learning.gate",
    **{name: "sdk.core.errors" for name in _ERRORS},
    **{name: "sdk.core.types" for name in _VALUES},
}

__all__ = sorted([*_LAZY, "__version__"])

if TYPE_CHECKING:  # pragma: no cover - for type checkers only; runtime access goes through __getattr__
    from sdk.core.capabilities import Capabilities as Capabilities
    from sdk.core.errors import AdapterError as AdapterError
    from sdk.core.errors import CapabilityError as CapabilityError
    from sdk.core.errors import CollectionNotFoundError as CollectionNotFoundError
    from sdk.core.errors import ConfigError as ConfigError
    from sdk.core.errors import DimensionMismatchError as DimensionMismatchError
    from sdk.core.errors import InputError as InputError
    from sdk.core.errors import MissingDependencyError as MissingDependencyError
    from sdk.core.errors import ModelLoadError as ModelLoadError
    from sdk.core.errors import SchemaMismatchError as SchemaMismatchError
    from sdk.core.errors import SDKError as SDKError
    from sdk.core.errors import SimilarityMismatchError as SimilarityMismatchError
    from sdk.core.errors import SourceError as SourceError
    from sdk.core.errors import SyncError as SyncError
    from sdk.core.errors import TransientAdapterError as TransientAdapterError
    from sdk.core.registry import connect as connect
    from sdk.core.registry import register_adapter as register_adapter
    from sdk.core.similarity import Similarity as Similarity
    from sdk.core.spec import CollectionSpec as CollectionSpec
    from sdk.core.spec import DenseField as DenseField
    from sdk.core.spec import IndexParams as IndexParams
    from sdk.core.spec import PayloadField as PayloadField
    from sdk.core.spec import SparseField as SparseField
    from sdk.core.store import VectorStore as VectorStore
    from sdk.core.types import And as And
    from sdk.core.types import Document as Document
    from sdk.core.types import EncodedBatch as EncodedBatch
    from sdk.core.types import Eq as Eq
    from sdk.core.types import Filter as Filter
    from sdk.core.types import Fusion as Fusion
    from sdk.core.types import FusionMethod as FusionMethod
    from sdk.core.types import Hit as Hit
    from sdk.core.types import HybridQuery as HybridQuery
    from sdk.core.types import In as In
    from sdk.core.types import Not as Not
    from sdk.core.types import Or as Or
    from sdk.core.types import Range as Range
    from sdk.core.types import Record as Record
    from sdk.core.types import SparseVector as SparseVector
    from sdk.encoders.cross_encoder import CrossEncoder as CrossEncoder
    from sdk.encoders.dense import DenseEncoder as DenseEncoder
    from sdk.encoders.sparse import SparseEncoder as SparseEncoder
    from sdk.feedback.backends import open_feedback_store as open_feedback_store
    from sdk.feedback.labels import export_labels as export_labels
    from sdk.feedback.store import FeedbackStore as FeedbackStore
    from sdk.learning.gate import Gate as Gate
    from sdk.learning.loop import Learner as Learner
    from sdk.retrieval.langchain import ForgeEmbeddings as ForgeEmbeddings
    from sdk.retrieval.langchain import LangChainRetriever as LangChainRetriever
    from sdk.retrieval.pipeline import RetrievalPipeline as RetrievalPipeline
    from sdk.retrieval.retriever import Retriever as Retriever


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
