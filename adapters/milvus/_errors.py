"""pymilvus exceptions -> ``sdk.core.errors`` (the adapter raises them ``from`` the original)."""

from __future__ import annotations

from adapters.retry import translate_error
from sdk.core.errors import CapabilityError, CollectionNotFoundError, SDKError

__all__ = ["translate"]


def translate(exc: BaseException, what: str) -> SDKError:
    text = str(getattr(exc, "message", "") or exc)
    low = text.lower()
    if "can't find collection" in low or "collection not found" in low or "alias not found" in low \
            or "does not exist" in low:
        return CollectionNotFoundError(f"{what} failed: {text.strip()[:300]}")
    code = getattr(exc, "code", None)
    name = getattr(code() if callable(code) else code, "name", "")
    if name == "UNIMPLEMENTED":
        return CapabilityError(f"{what}: this Milvus (Lite?) does not implement the call: {text.strip()[:200]}")
    return translate_error(exc, what)
