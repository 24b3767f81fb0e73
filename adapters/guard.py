"""The collection-metadata guard: refuse writes and queries from a different encoder or schema.

Each collection stores the ``CollectionSpec`` that created it. Before anything is written or
searched, the caller's spec is compared with the stored one and every difference is named,
so a 768-d model never lands in a 384-d collection and a cosine encoder never queries an L2 one.
"""

from __future__ import annotations

from typing import Any

from sdk.core.errors import (
    CollectionNotFoundError,
    DimensionMismatchError,
    SchemaMismatchError,
    SimilarityMismatchError,
)
from sdk.core.spec import CollectionSpec

__all__ = ["check_same", "diff_specs", "research_spec", "stored_spec"]


def _index(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


def diff_specs(stored: CollectionSpec, wanted: CollectionSpec) -> list[tuple[str, str]]:
    """Every difference as ``(kind, text)``; kind is 'dim', 'metric' or 'schema'. Names are ignored
    (an alias and its target hold the same schema)."""
    a, b = stored.to_dict(), wanted.to_dict()
    out: list[tuple[str, str]] = []
    for group in ("dense", "sparse", "payload"):
        sa, sb = _index(a[group]), _index(b[group])
        for name in sorted(set(sa) - set(sb)):
            out.append(("schema", f"{group} field {name!r} is stored but not in your spec"))
        for name in sorted(set(sb) - set(sa)):
            out.append(("schema", f"{group} field {name!r} is in your spec but not stored"))
        for name in sorted(set(sa) & set(sb)):
            for key in sorted(set(sa[name]) | set(sb[name])):
                va, vb = sa[name].get(key), sb[name].get(key)
                if va == vb:
                    continue
                kind = {"dim": "dim", "similarity": "metric"}.get(key, "schema")
                out.append((kind, f"{group} field {name!r}: {key} is {va!r} in the collection, {vb!r} in your spec"))
    for key in ("encoder", "calibration", "schema_version"):
        if a[key] != b[key]:
            shown_a = "<ranges>" if key == "calibration" and a[key] else repr(a[key])
            shown_b = "<other ranges>" if key == "calibration" and b[key] else repr(b[key])
            out.append(("schema", f"{key} is {shown_a} in the collection, {shown_b} in your spec"))
    return out


def check_same(stored: CollectionSpec, wanted: CollectionSpec, collection: str) -> None:
    """Raise the most specific mismatch error listing every difference; return if they agree."""
    if stored == wanted:  # the usual case (a query's expect is the spec read back earlier): nothing to list
        return
    diffs = diff_specs(stored, wanted)
    if not diffs:
        return
    kinds = {k for k, _ in diffs}
    text = "; ".join(t for _, t in diffs)
    msg = (
        f"collection {collection!r} was written with a different schema: {text}. Nothing was written or searched. "
        "Use the encoder and settings the collection was built with, or build a new collection and "
        "switch an alias to it"
    )
    if "dim" in kinds:
        raise DimensionMismatchError(msg)
    if "metric" in kinds:
        raise SimilarityMismatchError(msg)
    raise SchemaMismatchError(msg)


def stored_spec(stored: CollectionSpec | None, collection: str, expect: CollectionSpec | None) -> CollectionSpec:
    """The spec read back for ``collection``, refused when absent or (with ``expect``) different.

    What ``Adapter`` and its async twin (``adapters.aio``) do with every spec they read."""
    if stored is None:
        raise CollectionNotFoundError(
            f"collection or alias {collection!r} does not exist; create it with ensure_collection(spec)"
        )
    if expect is not None:
        check_same(stored, expect, collection)
    return stored


def research_spec(stored: CollectionSpec | None, collection: str, expect: CollectionSpec) -> CollectionSpec | None:
    """The verdict on a search that ran on ``expect`` while the stored spec was being read.

    Raises as ``stored_spec`` does (absent, or built for other vectors: the search's hits are not
    used); ``None`` when the hits stand; else the stored spec to search again with, because
    ``collection`` (an alias) now resolves to another physical collection of the same schema."""
    spec = stored_spec(stored, collection, expect)
    return None if spec.name == expect.name else spec
