"""Public home of the SDK's value types and filters (defined in ``sdk.core.types``; also exported by ``sdk``)."""

from sdk.core.types import *  # noqa: F403
from sdk.core.types import __all__ as __all__
