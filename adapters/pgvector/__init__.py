"""PostgreSQL + pgvector adapter (extra: ``pip install 'retrieval-forge[pgvector]'``)."""

from adapters.pgvector.adapter import PGVECTOR_CAPABILITIES, PgvectorAdapter

__all__ = ["PGVECTOR_CAPABILITIES", "PgvectorAdapter"]
