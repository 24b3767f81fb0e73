"""Qdrant driver exceptions -> ``sdk.core.errors`` (the adapter raises them ``from`` the original)."""

from __future__ import annotations

from adapters.retry import translate_error
from sdk.core.errors import CollectionNotFoundError, SDKError

__all__ = ["translate"]


def translate(exc: BaseException, what: str) -> SDKError:
    status = getattr(exc, "status_code", None)
    text = str(exc)
    if status == 404 or ("not found" in text.lower() and "collection" in text.lower()):
        return CollectionNotFoundError(f"{what} failed: {text.strip()[:300]}")
    return translate_error(exc, what)
