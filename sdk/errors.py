"""Public home of the SDK's errors (defined in ``sdk.core.errors``; also exported by ``sdk``)."""

from sdk.core.errors import *  # noqa: F403
from sdk.core.errors import __all__ as __all__
