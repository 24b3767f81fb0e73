"""Every error the SDK raises, under one root so callers can catch ``SDKError`` alone.

Driver exceptions never escape: adapters translate them at their boundary with
``raise ... from exc`` so the original stays in ``__cause__`` for debugging. Every message is
passed through ``sdk.core.redaction.redact``, so a password, token or API key that reached it (a
URL, a conninfo string, a driver's text) is shown as ``***``.

    SDKError
    ├── ConfigError                  wrong settings, unknown URL scheme, missing optional extra
    │   └── MissingDependencyError   an optional extra is not installed (names the extra)
    ├── InputError (ValueError)      bad caller input: None, non-strings, NaN, unknown precision...
    │   ├── DimensionMismatchError   vector width differs from the model / collection
    │   └── SimilarityMismatchError  similarity differs from the collection's (old name: MetricMismatchError)
    ├── ModelLoadError               missing folder, unreadable manifest, pickle-only weights
    ├── CapabilityError              the backend cannot do what was asked (never a silent downgrade)
    ├── AdapterError                 a database refused or failed a call
    │   ├── TransientAdapterError    may succeed if retried (timeouts, connection reset, 5xx)
    │   ├── CollectionNotFoundError  the collection or alias does not exist
    │   └── SchemaMismatchError      the collection was written by another encoder / schema
    └── SyncError                    a sync plan could not be computed or applied
        └── SourceError              a document source could not be read (names the file and line)
"""

from __future__ import annotations

from sdk.core.redaction import redact

__all__ = [
    "AdapterError",
    "CapabilityError",
    "CollectionNotFoundError",
    "ConfigError",
    "DimensionMismatchError",
    "InputError",
    "MetricMismatchError",
    "MissingDependencyError",
    "ModelLoadError",
    "SDKError",
    "SchemaMismatchError",
    "SimilarityMismatchError",
    "SourceError",
    "SyncError",
    "TransientAdapterError",
]


class SDKError(Exception):
    """Root of every error raised by this SDK; its message never shows a credential (see ``redact``)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class ConfigError(SDKError):
    """Settings that cannot work: unknown URL scheme, contradictory options."""


class MissingDependencyError(ConfigError, ImportError):
    """An optional dependency is absent; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package!r} is not installed; install it with: pip install 'retrieval-forge[{extra}]'"
        )
        self.package = package
        self.extra = extra


class InputError(SDKError, ValueError):
    """The caller passed something unusable; the message says what and how to fix it."""


class DimensionMismatchError(InputError):
    """A vector's width differs from what the model or collection expects."""


class SimilarityMismatchError(InputError):
    """A similarity function differs from the one the collection was created with."""


#: Deprecated name of ``SimilarityMismatchError`` ("metrics" now means IR metrics only).
MetricMismatchError = SimilarityMismatchError


class ModelLoadError(SDKError):
    """A model folder or hub id could not be loaded."""


class CapabilityError(SDKError):
    """The chosen backend or database cannot do what was asked."""


class AdapterError(SDKError):
    """A database call failed for a reason a retry will not cure."""


class TransientAdapterError(AdapterError):
    """A database call failed for a reason a retry may cure (timeout, reset, 5xx)."""


class CollectionNotFoundError(AdapterError):
    """The named collection or alias does not exist."""


class SchemaMismatchError(AdapterError):
    """The collection was written by a different encoder, dimension, metric or schema."""


class SyncError(SDKError):
    """A sync plan could not be computed or applied."""


class SourceError(SyncError):
    """A document source could not be read: missing path, unreadable file, bad line or row."""
