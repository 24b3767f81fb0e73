"""Encoder modules and the registry that maps ``modules.json`` type names to them.

sentence-transformers has moved its classes between releases
(``sentence_transformers.models.Pooling``, ``...sentence_transformer.modules.pooling.Pooling``),
so a manifest entry is matched by its class name under a known package, never imported.
"""

from __future__ import annotations

from sdk.core.errors import ModelLoadError
from sdk.encoders.modules.base import EncoderModule
from sdk.encoders.modules.clip import CLIPModel
from sdk.encoders.modules.dense import Dense, Normalize
from sdk.encoders.modules.heads import ClassificationTransformer, MLMTransformer
from sdk.encoders.modules.pooling import POOLING_MODES, Pooling
from sdk.encoders.modules.router import Router
from sdk.encoders.modules.splade import SparseStaticEmbedding, SpladePooling
from sdk.encoders.modules.transformer import Transformer

__all__ = [
    "POOLING_MODES",
    "CLIPModel",
    "ClassificationTransformer",
    "Dense",
    "EncoderModule",
    "MLMTransformer",
    "Normalize",
    "Pooling",
    "Router",
    "SparseStaticEmbedding",
    "SpladePooling",
    "Transformer",
    "module_class",
    "register_module",
]

_KNOWN_PACKAGES = ("sentence_transformers.", "sdk.")
_REGISTRY: dict[str, type[EncoderModule]] = {}


def register_module(cls: type[EncoderModule], *names: str) -> type[EncoderModule]:
    """Make ``cls`` loadable from manifests naming it (by class name, plus any aliases)."""
    for name in (cls.__name__, *names):
        _REGISTRY[name] = cls
    return cls


def module_class(type_path: str) -> type[EncoderModule]:
    """Resolve a ``modules.json`` ``type`` entry to one of our module classes."""
    if not type_path.startswith(_KNOWN_PACKAGES):
        raise ModelLoadError(
            f"module type {type_path!r} is custom code outside sentence-transformers; "
            "this SDK does not import code from model folders"
        )
    name = type_path.rsplit(".", 1)[-1]
    cls = _REGISTRY.get(name)
    if cls is None:
        known = ", ".join(sorted(_REGISTRY))
        raise ModelLoadError(f"module type {type_path!r} is not supported; supported modules: {known}")
    return cls


for _cls in (Transformer, Pooling, Dense, Normalize):
    register_module(_cls)
for _cls in (MLMTransformer, ClassificationTransformer, SpladePooling, SparseStaticEmbedding):
    register_module(_cls)
register_module(Router, "Asym")
register_module(CLIPModel)
