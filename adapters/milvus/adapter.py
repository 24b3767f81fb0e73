"""Milvus adapter: typed vector fields, sparse IP, Matryoshka prefix field, native hybrid_search.

The spec is stored as the collection's description (Milvus Lite 2.5.1 drops collection
properties; the description survives everywhere). Rows hold ``pk`` (the uuid5 storage id),
``doc_id``, ``text``, a ``metadata`` JSON field and one field per vector. pymilvus' own retry
loop (75 tries over minutes, even for a malformed request) is switched off on every call: the
adapter's bounded policy retries only what is transient.
"""

from __future__ import annotations

import contextvars
import json
import logging
from typing import Any

import numpy as np
from pymilvus import AnnSearchRequest, DataType, MilvusClient, RRFRanker, WeightedRanker

from adapters.aio import AsyncAdapter
from adapters.base import Adapter, CursorPages
from adapters.milvus._aliases import REGISTRY, LiteAliases
from adapters.milvus._errors import translate
from adapters.milvus._filters import MilvusFilter, literal
from adapters.milvus._mapping import capabilities, index_for, score, search_params, vector_type
from adapters.steps import Steps, run_steps
from adapters.validate import DenseLeg, PreparedRecord, QueryPlan, SparseLeg
from sdk.core.capabilities import Capabilities
from sdk.core.errors import (
    CapabilityError,
    CollectionNotFoundError,
    ConfigError,
    InputError,
    SchemaMismatchError,
    SDKError,
)
from sdk.core.spec import CollectionSpec, DenseField
from sdk.core.types import Filter, FusionMethod, Hit, SparseVector
from sdk.core.urls import parse_url, redact

__all__ = ["MilvusAdapter", "client_options"]

CALL: dict[str, Any] = {"timeout": 60.0, "retry_times": 0}  # float timeout: a deadline, not a retry window
OUT = ["doc_id", "text", "metadata"]
MAX_QUERY_LIMIT = 16_384  # Milvus refuses offset + limit above this
SPEC_PREFIX = "retrieval-forge spec v1: "
SPARSE_SEARCH = {"metric_type": "IP", "params": {"drop_ratio_search": 0.0}}


_PROBING: contextvars.ContextVar[bool] = contextvars.ContextVar("rf_milvus_probing", default=False)


class _QuietNotFound(logging.Filter):
    """Drop pymilvus' ERROR log for 'collection not found' while the adapter probes for existence."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _PROBING.get():
            return True
        text = record.getMessage().lower()
        # A probe's call also logs "[describe_collection] Retry run out of 0 retry times": not news either.
        return not any(part in text for part in ("collection not found", "can't find collection", "retry run out"))


_QUIET = _QuietNotFound()


def client_options(url: str) -> dict[str, Any]:
    """The ``MilvusClient`` arguments for ``url`` (``sdk.core.urls`` grammar): ``https://`` turns
    pymilvus' TLS on, the token is ``USER:PASSWORD`` or the token itself.

    A pure function: ``MilvusClient`` connects while it is built, so this is what tests inspect.
    """
    if url.startswith("milvus+lite:"):
        path = url.removeprefix("milvus+lite:")
        if not path.endswith(".db"):
            raise ConfigError(f"Milvus Lite needs a file name ending in .db, got {path!r}")
        return {"uri": path}
    parsed = parse_url(url)
    if parsed.engine != "milvus":
        raise ConfigError(f"not a Milvus URL: {parsed.redacted!r}; use milvus://HOST:PORT or milvus+lite:PATH.db")
    options: dict[str, Any] = {"uri": parsed.http_url, "token": parsed.token}
    if parsed.database:
        options["db_name"] = parsed.database
    return options


class MilvusAdapter(Adapter):
    """Milvus through ``pymilvus.MilvusClient``: a server (``uri='http://H:P'``) or a Lite file (``'x.db'``).

    Pass ``client=`` to reuse a client you hold (not closed by ``close()``); say ``lite=True`` for Lite.
    """

    def __init__(self, client: Any = None, *, uri: str | None = None, token: str | None = None,
                 lite: bool | None = None, db_name: str = "") -> None:
        if client is None:
            if not uri:
                raise ConfigError("MilvusAdapter needs client= or uri= ('http://HOST:19530' or a Lite 'file.db')")
            try:
                client = MilvusClient(uri=uri, token=token or "", db_name=db_name)
            except Exception as exc:
                raise translate(exc, f"connecting to Milvus at {redact(uri)!r}") from exc
            self._owns = True
            lite = not uri.startswith(("http://", "https://", "tcp://", "unix:"))
            self._client_args: dict[str, Any] | None = {"uri": uri, "token": token or "", "db_name": db_name}
        else:
            self._owns = False
            self._client_args = None
        self._client: MilvusClient = client
        self._lite = bool(lite)
        pylog = logging.getLogger("pymilvus.decorators")
        if _QUIET not in pylog.filters:
            pylog.addFilter(_QUIET)
        self._caps = capabilities(self._lite)
        self._lite_aliases = LiteAliases(client) if self._lite else None

    @classmethod
    def from_url(cls, url: str) -> MilvusAdapter:
        """``milvus://[USER:PASSWORD@ | :TOKEN@]HOST:PORT[/DB]``, ``milvuss://`` or ``?tls=true`` for TLS
        (token also from ``MILVUS_TOKEN``), or ``milvus+lite:PATH.db``; see ``client_options``."""
        return cls(**client_options(url))

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    def _translate(self, exc: BaseException, what: str) -> SDKError:
        return translate(exc, what)

    def _close(self) -> None:
        if self._owns:
            self._client.close()

    def _overlap_guard(self) -> bool:
        return True  # a server (Lite's too: a process of its own) behind a thread-safe gRPC client

    def _async_twin(self) -> AsyncAdapter:
        if self._client_args is None:  # a caller's client: how to reach its server again is unknown
            return super()._async_twin()
        from adapters.milvus._async import AsyncMilvusAdapter

        return AsyncMilvusAdapter(self)

    # ---- collections -----------------------------------------------------------------------
    def _read_spec(self, name: str) -> CollectionSpec | None:
        return run_steps(self._read_spec_steps(name), self._client)

    def _read_spec_steps(self, name: str) -> Steps[CollectionSpec | None]:
        """The stored spec, as steps on a ``MilvusClient`` or the async twin's client."""
        # One RPC per query/upsert (has_collection first would double the guard's cost); pymilvus logs
        # an ERROR for a missing collection, which _QuietNotFound drops while this probe runs.
        token = _PROBING.set(True)
        try:
            info = yield lambda client: client.describe_collection(name, **CALL)
        except Exception as exc:  # noqa: BLE001 - only "not found" means absent
            if not isinstance(translate(exc, ""), CollectionNotFoundError):
                raise
            # Lite's emulated aliases are read with the sync client, on either path (Lite is in-process).
            target = self._lite_aliases.target(name) if self._lite_aliases is not None else None
            if target is None or target == name:
                return None
            return (yield from self._read_spec_steps(target))
        finally:
            _PROBING.reset(token)
        desc = info.get("description") or ""
        if not desc.startswith(SPEC_PREFIX):
            raise SchemaMismatchError(
                f"Milvus collection {name!r} exists but was not created by retrieval-forge (no stored spec); "
                "use another name or re-create it with ensure_collection"
            )
        return CollectionSpec.from_json(desc.removeprefix(SPEC_PREFIX))

    def _create(self, spec: CollectionSpec) -> None:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                            description=SPEC_PREFIX + spec.to_json())
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=36)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=65_535)
        schema.add_field("text", DataType.VARCHAR, max_length=65_535)
        schema.add_field("metadata", DataType.JSON)
        index = self._client.prepare_index_params()
        for f in spec.dense:
            fields = [(f.name, f.dim)] + ([(f.prefix_name, f.matryoshka_dim)] if f.prefix_name else [])
            index_type, params = index_for(f, self._lite)
            for name, dim in fields:
                schema.add_field(name, vector_type(f), dim=dim)
                index.add_index(name, index_type=index_type, metric_type=search_params(f)["metric_type"],
                                params=params)
        for s in spec.sparse:
            schema.add_field(s.name, DataType.SPARSE_FLOAT_VECTOR)
            index.add_index(s.name, index_type="SPARSE_INVERTED_INDEX", metric_type="IP",
                            params={"drop_ratio_build": 0.0})
        self._client.create_collection(spec.name, schema=schema, index_params=index,
                                       consistency_level="Strong", **CALL)

    def _drop(self, name: str) -> bool:
        if not self._client.has_collection(name, **CALL):
            return False
        if self._lite_aliases is not None:
            for alias in self._lite_aliases.pointing_at(name):
                self._lite_aliases.delete(alias)
        else:
            for alias in self._client.list_aliases(name, **CALL).get("aliases", []):
                self._client.drop_alias(alias, **CALL)
        self._client.drop_collection(name, **CALL)
        return True

    # ---- rows ------------------------------------------------------------------------------
    @staticmethod
    def _vector_value(f: DenseField, vec: np.ndarray) -> Any:
        if f.storage == "binary":
            return np.packbits(vec).tobytes()
        if f.storage == "float16":
            return vec.astype(np.float16)
        return vec.astype(np.float32).tolist()

    def _upsert_batch(self, spec: CollectionSpec, name: str, batch: list[PreparedRecord]) -> None:
        name = spec.name  # the physical collection (a Lite alias is resolved by the adapter)
        rows = []
        for r in batch:
            row: dict[str, Any] = {"pk": r.pid, "doc_id": r.doc_id, "text": r.text, "metadata": r.metadata}
            for f in spec.dense:
                row[f.name] = self._vector_value(f, r.dense[f.name])
                if f.prefix_name:
                    row[f.prefix_name] = self._vector_value(f, r.dense[f.prefix_name])
            for s in spec.sparse:
                sv = r.sparse[s.name]
                row[s.name] = dict(zip(sv.indices, sv.values, strict=True))
            rows.append(row)
        self._client.upsert(name, rows, **CALL)

    def _get(self, spec: CollectionSpec, name: str, pids: list[str]) -> list[PreparedRecord]:
        name = spec.name  # the physical collection (a Lite alias is resolved by the adapter)
        fields = ["pk", *OUT, *(f.name for f in spec.dense), *(s.name for s in spec.sparse)]
        rows = self._client.get(name, ids=pids, output_fields=fields, **CALL)
        return [self._to_prepared(spec, row) for row in rows]

    @staticmethod
    def _to_prepared(spec: CollectionSpec, row: dict[str, Any]) -> PreparedRecord:
        dense: dict[str, np.ndarray] = {}
        for f in spec.dense:
            raw = row[f.name]
            if f.storage == "binary":
                dense[f.name] = np.unpackbits(np.frombuffer(raw[0] if isinstance(raw, list) else raw, np.uint8))
            elif f.storage == "float16":
                dense[f.name] = np.frombuffer(raw[0] if isinstance(raw, list) else raw, np.float16).copy()
            else:
                dense[f.name] = np.asarray(raw, dtype=np.float32)
        sparse = {}
        for s in spec.sparse:
            items = sorted((int(i), float(v)) for i, v in (row.get(s.name) or {}).items())
            sparse[s.name] = SparseVector(tuple(i for i, _ in items), tuple(v for _, v in items))
        return PreparedRecord(row["pk"], row["doc_id"], dense, sparse, row.get("text") or "",
                              dict(row.get("metadata") or {}))

    def _delete(self, spec: CollectionSpec, name: str, pids: list[str]) -> None:
        name = spec.name  # the physical collection (a Lite alias is resolved by the adapter)
        if pids:
            self._client.delete(name, ids=pids, **CALL)

    def _scan_ids(self, spec: CollectionSpec, name: str, batch_size: int) -> CursorPages[str]:
        name = spec.name  # the physical collection (a Lite alias is resolved by the adapter)
        limit = min(batch_size, MAX_QUERY_LIMIT)

        def page(after: str | None) -> tuple[list[str], str | None]:
            # Keyset paging on the primary key: a limited query returns the smallest pks that match
            # (what pymilvus' own query_iterator relies on), so "pk > last" starts the next page.
            expr = f"pk > {literal(after)}" if after is not None else ""
            rows = self._client.query(name, filter=expr, limit=limit, output_fields=["pk", "doc_id"], **CALL)
            last = max((row["pk"] for row in rows), default=None)
            return [row["doc_id"] for row in rows], (last if len(rows) >= limit else None)

        return CursorPages(page)

    @staticmethod
    def _expr(spec: CollectionSpec, flt: Filter | None) -> str:
        return MilvusFilter(spec).translate(flt) if flt is not None else ""

    def _count(self, spec: CollectionSpec, name: str, filter: Filter | None) -> int:
        name = spec.name  # the physical collection (a Lite alias is resolved by the adapter)
        res = self._client.query(name, filter=self._expr(spec, filter), output_fields=["count(*)"], **CALL)
        return int(res[0]["count(*)"]) if res else 0

    # ---- search ----------------------------------------------------------------------------
    def _dense_request(self, name: str, leg: DenseLeg,
                       expr: str) -> Steps[tuple[list[Any], str, dict[str, Any], str]]:
        """(data, field, params, expr) of the dense leg; with Matryoshka, stage 1 runs here first."""
        f = leg.field
        if leg.prefix is not None and f.prefix_name:
            first = yield lambda client: client.search(
                name, data=[self._vector_value(f, leg.prefix)], anns_field=f.prefix_name,
                limit=min(leg.prefix_candidates, 16_384), filter=expr, search_params=search_params(f),
                output_fields=["pk"], **CALL)
            pks = [hit["id"] for hit in first[0]] or ["-"]
            keep = f"pk in [{', '.join(literal(p) for p in pks)}]"
            expr = f"({expr}) and {keep}" if expr else keep
        return [self._vector_value(f, leg.vector)], f.name, search_params(f), expr

    @staticmethod
    def _sparse_data(leg: SparseLeg) -> list[dict[int, float]]:
        return [dict(zip(leg.vector.indices, leg.vector.values, strict=True))]

    def _search(self, spec: CollectionSpec, name: str, plan: QueryPlan) -> list[Hit]:
        return run_steps(self._search_steps(spec, name, plan), self._client)

    def _search_steps(self, spec: CollectionSpec, name: str, plan: QueryPlan) -> Steps[list[Hit]]:
        """One native (hybrid) search, as steps on a ``MilvusClient`` or an ``AsyncMilvusClient``."""
        name = spec.name  # the physical collection (a Lite alias is resolved by the adapter)
        expr = self._expr(spec, plan.filter)
        reqs: dict[str, tuple[list[Any], str, dict[str, Any], str, int]] = {}
        if plan.dense is not None:
            reqs["dense"] = (*(yield from self._dense_request(name, plan.dense, expr)), plan.dense.candidates)
        if plan.sparse is not None:
            reqs["sparse"] = (self._sparse_data(plan.sparse), plan.sparse.field.name, SPARSE_SEARCH, expr,
                              plan.sparse.candidates)
        if plan.hybrid:
            ranker = self._ranker(plan, list(reqs))
            anns = [AnnSearchRequest(data=d, anns_field=fld, param=p, limit=min(n, 16_384), expr=e or None)
                    for d, fld, p, e, n in reqs.values()]
            res = yield lambda client: client.hybrid_search(name, anns, ranker, limit=plan.limit,
                                                            output_fields=OUT, **CALL)
            return [self._hit(h, float(h["distance"]), "fused") for h in res[0]]
        (leg, (data, fld, params, e, _)), = reqs.items()
        res = yield lambda client: client.search(name, data=data, anns_field=fld, limit=plan.limit, filter=e,
                                                 search_params=params, output_fields=OUT, **CALL)
        f = plan.dense.field if plan.dense is not None else None
        return [self._hit(h, score(f, h["distance"]), leg) for h in res[0]]

    @staticmethod
    def _ranker(plan: QueryPlan, legs: list[str]) -> Any:
        fusion = plan.fusion
        if fusion.method is FusionMethod.RRF:
            if fusion.weights and len({fusion.weights.get(leg, 1.0) for leg in legs}) > 1:
                raise CapabilityError("Milvus RRFRanker has no per-leg weights; use FusionMethod.WEIGHTED")
            return RRFRanker(fusion.k)
        return WeightedRanker(*[float(fusion.weights.get(leg, 1.0)) for leg in legs])

    @staticmethod
    def _hit(h: dict[str, Any], value: float, stage: str) -> Hit:
        ent = h.get("entity", {})
        meta = ent.get("metadata") or {}
        if isinstance(meta, str):
            meta = json.loads(meta)
        return Hit(ent.get("doc_id", str(h["id"])), value, ent.get("text") or None, dict(meta), {stage: value})

    # ---- aliases (Milvus Lite answers UNIMPLEMENTED: emulated by adapters.milvus._aliases) ----
    def _alias_target(self, alias: str) -> str | None:
        if self._lite_aliases is not None:
            return self._lite_aliases.target(alias)
        try:
            return self._client.describe_alias(alias, **CALL).get("collection_name")
        except Exception as exc:  # noqa: BLE001 - "not found" means no such alias
            if isinstance(translate(exc, ""), CollectionNotFoundError) or "alias" in str(exc).lower():
                return None
            raise

    def _create_alias(self, alias: str, collection: str) -> None:
        if self._alias_target(alias) is not None or self._client.has_collection(alias, **CALL):
            raise InputError(f"alias {alias!r} already exists; use switch_alias to re-point it")
        if self._lite_aliases is not None:
            self._lite_aliases.point(alias, self._physical(collection))
        else:
            self._client.create_alias(collection, alias, **CALL)

    def _switch_alias(self, alias: str, collection: str) -> None:
        if self._lite_aliases is not None:
            if self._client.has_collection(alias, **CALL):
                raise InputError(f"{alias!r} is a collection, not an alias")
            self._lite_aliases.point(alias, self._physical(collection))
        elif self._alias_target(alias) is None:
            self._client.create_alias(collection, alias, **CALL)
        else:
            self._client.alter_alias(collection, alias, **CALL)  # atomic re-point

    def _delete_alias(self, alias: str) -> bool:
        if self._lite_aliases is not None:
            return self._lite_aliases.delete(alias)
        if self._alias_target(alias) is None:
            return False
        self._client.drop_alias(alias, **CALL)
        return True

    def _physical(self, name: str) -> str:
        """The collection behind ``name`` (an emulated alias may point at another alias' target)."""
        spec = self._read_spec(name)
        return spec.name if spec is not None else name

    def _list_names(self) -> list[str]:
        return [n for n in self._client.list_collections(**CALL) if n != REGISTRY]

    def _list_aliases(self) -> dict[str, str]:
        if self._lite_aliases is not None:
            return self._lite_aliases.all()
        found: dict[str, str] = {}
        for name in self._list_names():  # a server lists aliases per collection, without their target otherwise
            try:
                aliases = self._client.list_aliases(name, **CALL).get("aliases", [])
            except Exception as exc:  # noqa: BLE001 - a collection dropped since it was listed has none
                if isinstance(translate(exc, ""), CollectionNotFoundError):
                    continue
                raise
            found.update(dict.fromkeys(aliases, name))
        return found
