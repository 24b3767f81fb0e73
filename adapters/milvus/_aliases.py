"""Aliases for Milvus Lite, which has none of its own: a registry collection of ``alias -> collection``.

Milvus Lite answers UNIMPLEMENTED to every alias call, yet blue/green re-indexing (``sdk sync``)
needs a name that moves between physical collections. The registry is one small collection in the
same Lite file (``_rf_aliases``: the alias as primary key, its target, and the dummy 2-d vector
every Milvus collection must have). Re-pointing an alias is one upsert of one row, so a reader
resolves either the old or the new target, never none. The adapter resolves names through it only
when a name is not a collection, so plain collections cost nothing extra.
"""

from __future__ import annotations

from typing import Any

from pymilvus import DataType, MilvusClient

from adapters.milvus._filters import literal

__all__ = ["REGISTRY", "LiteAliases"]

REGISTRY = "_rf_aliases"
_CALL: dict[str, Any] = {"timeout": 60.0, "retry_times": 0}
_MAX_ROWS = 16_384  # Milvus' cap on one query's offset + limit


class LiteAliases:
    """The alias registry of one Milvus Lite file."""

    def __init__(self, client: MilvusClient) -> None:
        self._client = client

    def _exists(self) -> bool:
        return bool(self._client.has_collection(REGISTRY, **_CALL))

    def _ensure(self) -> None:
        if self._exists():
            return
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                            description="retrieval-forge alias registry (Milvus Lite)")
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("target", DataType.VARCHAR, max_length=64)
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
        index = self._client.prepare_index_params()
        index.add_index("v", index_type="FLAT", metric_type="L2")
        self._client.create_collection(REGISTRY, schema=schema, index_params=index, consistency_level="Strong",
                                       **_CALL)

    def target(self, alias: str) -> str | None:
        """The collection ``alias`` points at, or ``None``."""
        if not self._exists():
            return None
        rows = self._client.query(REGISTRY, filter=f"pk == {literal(alias)}", output_fields=["target"], **_CALL)
        return str(rows[0]["target"]) if rows else None

    def pointing_at(self, collection: str) -> list[str]:
        """Every alias whose target is ``collection``."""
        if not self._exists():
            return []
        rows = self._client.query(REGISTRY, filter=f"target == {literal(collection)}", output_fields=["pk"],
                                  **_CALL)
        return [str(r["pk"]) for r in rows]

    def all(self) -> dict[str, str]:
        """Every alias -> its target (for ``list_collections``)."""
        if not self._exists():
            return {}
        rows = self._client.query(REGISTRY, filter=f"pk != {literal('')}", output_fields=["pk", "target"],
                                  limit=_MAX_ROWS, **_CALL)
        return {str(r["pk"]): str(r["target"]) for r in rows}

    def point(self, alias: str, collection: str) -> None:
        """Create or re-point ``alias`` (one row upsert: atomic for readers)."""
        self._ensure()
        self._client.upsert(REGISTRY, [{"pk": alias, "target": collection, "v": [0.0, 0.0]}], **_CALL)

    def delete(self, alias: str) -> bool:
        if self.target(alias) is None:
            return False
        self._client.delete(REGISTRY, ids=[alias], **_CALL)
        return True
