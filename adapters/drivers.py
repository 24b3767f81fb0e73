"""The one "driver not installed" check: each database sub-package calls it before importing its client.

A missing optional driver must fail at ``connect()`` time with the pip extra to install, not as a
bare ``ModuleNotFoundError`` from deep inside an adapter module.
"""

from __future__ import annotations

import importlib

from sdk.core.errors import MissingDependencyError

__all__ = ["require_driver"]


def require_driver(module: str, extra: str, package: str | None = None) -> None:
    """Import ``module`` (the driver) or raise ``MissingDependencyError`` naming ``extra``.

    ``package`` is the name pip knows the driver by when it differs from the import name
    (``qdrant-client`` for ``qdrant_client``).
    """
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(package or module, extra) from exc
