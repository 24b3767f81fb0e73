"""Deprecated: similarity functions moved to ``sdk.core.similarity`` ("metrics" now means IR metrics,
``sdk.evaluation.metrics``). This alias will be removed in a later release."""

import warnings

from sdk.core.similarity import *  # noqa: F403
from sdk.core.similarity import __all__ as __all__

warnings.warn(
    "sdk.metrics is deprecated; import Similarity, DistanceKind and distance_to_score from sdk.core.similarity "
    "(or Similarity from sdk)",
    DeprecationWarning,
    stacklevel=2,
)
