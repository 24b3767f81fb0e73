"""PostgreSQL + pgvector adapter (``pip install 'retrieval-forge[pgvector]'``): ``postgresql://``."""

from adapters.drivers import require_driver

require_driver("psycopg", "pgvector", "psycopg[binary]")
require_driver("pgvector", "pgvector")

from adapters.pgvector.adapter import PGVECTOR_CAPABILITIES, PgvectorAdapter  # noqa: E402

__all__ = ["PGVECTOR_CAPABILITIES", "PgvectorAdapter"]
