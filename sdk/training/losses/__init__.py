"""Training losses, by encoder kind: ``dense`` (+ ``dense_cached``, ``matryoshka``, ``denoising``), ``cross``
(+ ``cross_listwise``) and ``sparse``; ``base`` has the ``EncoderLoss`` interface they share.

As in sentence-transformers' ``losses`` namespace, the names at this level are the dense
(bi-encoder) losses, plus the sparse ones whose names are their own; the cross-encoder and sparse losses reuse some of those names
(MultipleNegativesRankingLoss, MarginMSELoss, ...), so import them from their module, e.g.
``from sdk.training.losses.cross import MultipleNegativesRankingLoss``.
Names load lazily, like ``sdk.training``.
"""

from __future__ import annotations

import importlib
from typing import Any

_DENSE = "sdk.training.losses.dense"
_LAZY: dict[str, str] = {
    "EncoderLoss": "sdk.training.losses.base",
    "AnglELoss": _DENSE,
    "BatchHardTripletLoss": _DENSE,
    "BatchHardTripletLossDistanceFunction": _DENSE,
    "CoSENTLoss": _DENSE,
    "CosineSimilarityLoss": _DENSE,
    "MSELoss": _DENSE,
    "MarginMSELoss": _DENSE,
    "MultipleNegativesRankingLoss": _DENSE,
    "TripletDistanceMetric": _DENSE,
    "TripletLoss": _DENSE,
    "CachedMultipleNegativesRankingLoss": "sdk.training.losses.dense_cached",
    "DenoisingAutoEncoderLoss": "sdk.training.losses.denoising",
    "MatryoshkaLoss": "sdk.training.losses.matryoshka",
    # sparse names that do not clash with the dense ones
    **{name: "sdk.training.losses.sparse" for name in (
        "FlopsLoss", "SpladeLoss", "SparseCoSENTLoss", "SparseDistillKLDivLoss", "SparseMSELoss",
        "SparseMarginMSELoss", "SparseMultipleNegativesRankingLoss", "SparseTripletLoss")},
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sdk.training.losses' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(globals()))
