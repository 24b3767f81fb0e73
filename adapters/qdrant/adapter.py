"""Qdrant adapter: named dense vectors, sparse vectors, quantization, Matryoshka prefetch, native fusion.

The spec lives in the collection's own metadata (Qdrant >= 1.15), so whoever opens the
collection later sees which encoder, dimensions and metrics wrote it. Point payloads hold
``doc_id``, ``text`` and the user's ``metadata`` object side by side, so no user key can
collide with the adapter's own.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from adapters.aio import AsyncAdapter
from adapters.base import Adapter, CursorPages
from adapters.blas import one_blas_thread
from adapters.qdrant._errors import translate
from adapters.qdrant._filters import META, QdrantFilter
from adapters.qdrant._mapping import capabilities, score, search_params, sparse_params, vector_params
from adapters.steps import Steps, run_steps
from adapters.validate import DenseLeg, PreparedRecord, QueryPlan, SparseLeg
from sdk.core.capabilities import Capabilities
from sdk.core.errors import CollectionNotFoundError, ConfigError, InputError, SchemaMismatchError, SDKError
from sdk.core.spec import CollectionSpec, DenseField
from sdk.core.types import Filter, FusionMethod, Hit, SparseVector
from sdk.core.urls import parse_url

__all__ = ["QdrantAdapter", "client_options"]

SPEC_KEY = "retrieval_forge_spec"


def client_options(url: str) -> dict[str, Any]:
    """The ``QdrantClient`` arguments for ``url`` (``sdk.core.urls`` grammar): scheme, TLS and API key.

    A pure function, so what the client is given (https, the key) is testable without a server.
    """
    if url.startswith("qdrant+local:"):
        rest = url.removeprefix("qdrant+local:")
        if rest == ":memory:":
            return {"location": ":memory:"}
        if not rest:
            raise ConfigError("qdrant+local: needs a path, e.g. qdrant+local:./qdrant_data or qdrant+local::memory:")
        return {"path": rest}
    parsed = parse_url(url)
    if parsed.engine != "qdrant":
        raise ConfigError(f"not a Qdrant URL: {parsed.redacted!r}; use qdrant://HOST:PORT or qdrants://HOST:PORT")
    return {"url": parsed.http_url, "api_key": parsed.api_key}


class QdrantAdapter(Adapter):
    """Qdrant through ``qdrant-client``: a server, local mode on disk, or local mode in memory.

    Pass ``client=`` to reuse a client you already hold (it is then not closed by ``close()``).
    """

    def __init__(self, client: Any = None, *, url: str | None = None, path: str | None = None,
                 location: str | None = None, api_key: str | None = None) -> None:
        if client is None:
            if sum(x is not None for x in (url, path, location)) != 1:
                raise ConfigError("QdrantAdapter needs exactly one of client=, url=, path= or location=':memory:'")
            try:
                client = QdrantClient(url=url, path=path, location=location, api_key=api_key)
            except Exception as exc:
                raise translate(exc, "connecting to Qdrant") from exc
            self._owns = True
        else:
            self._owns = False
        self._client: QdrantClient = client
        local = type(getattr(client, "_client", None)).__name__ == "QdrantLocal"
        self._caps = capabilities(local)

    @classmethod
    def from_url(cls, url: str) -> QdrantAdapter:
        """``qdrant://[:API_KEY@]HOST:PORT``, ``qdrants://`` or ``?tls=true`` for HTTPS (key also from
        ``QDRANT_API_KEY``), ``qdrant+local:PATH``, ``qdrant+local::memory:``; see ``client_options``."""
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
        return "hnsw" not in self._caps.emulated  # a server; local mode reads its spec in microseconds

    def _async_twin(self) -> AsyncAdapter:
        if "hnsw" in self._caps.emulated:
            # Local mode keeps the points in this process (memory, or a folder it locks): an
            # AsyncQdrantClient could not open the same data, so the sync client runs in a thread.
            return super()._async_twin()
        from adapters.qdrant._async import AsyncQdrantAdapter

        return AsyncQdrantAdapter(self)

    # ---- collections -----------------------------------------------------------------------
    def _read_spec(self, name: str) -> CollectionSpec | None:
        return run_steps(self._read_spec_steps(name), self._client)

    @staticmethod
    def _read_spec_steps(name: str) -> Steps[CollectionSpec | None]:
        """The stored spec, as steps on a ``QdrantClient`` or an ``AsyncQdrantClient``."""
        try:
            info = yield lambda client: client.get_collection(name)
        except Exception as exc:  # noqa: BLE001 - only "not found" means absent
            if isinstance(translate(exc, ""), CollectionNotFoundError):
                return None
            raise
        stored = (info.config.metadata or {}).get(SPEC_KEY)
        if not stored:
            raise SchemaMismatchError(
                f"Qdrant collection {name!r} exists but was not created by retrieval-forge (no stored spec); "
                "use another name or re-create it with ensure_collection"
            )
        return CollectionSpec.from_json(stored)

    def _create(self, spec: CollectionSpec) -> None:
        if self._alias_target(spec.name) is not None:
            raise InputError(f"{spec.name!r} is already an alias; choose another collection name")
        self._client.create_collection(
            spec.name,
            vectors_config=vector_params(spec),
            sparse_vectors_config=sparse_params(spec) or None,
            metadata={SPEC_KEY: spec.to_json()},
        )
        if "hnsw" in self._caps.emulated:
            return  # local mode scans exactly and ignores payload indexes
        for p in spec.payload:  # a server uses them for filtered HNSW search
            schema = {"keyword": models.PayloadSchemaType.KEYWORD, "int": models.PayloadSchemaType.INTEGER,
                      "float": models.PayloadSchemaType.FLOAT, "bool": models.PayloadSchemaType.BOOL}[p.type]
            self._client.create_payload_index(spec.name, f"{META}.{p.name}", field_schema=schema)

    def _drop(self, name: str) -> bool:
        if not self._client.collection_exists(name) or self._alias_target(name) is not None:
            return False
        return bool(self._client.delete_collection(name))

    # ---- points ----------------------------------------------------------------------------
    def _upsert_batch(self, spec: CollectionSpec, name: str, batch: list[PreparedRecord]) -> None:
        vectors: dict[str, Any] = {}
        for key in batch[0].dense:
            vectors[key] = np.stack([r.dense[key] for r in batch]).astype(np.float32).tolist()
        for sf in spec.sparse:
            vectors[sf.name] = [models.SparseVector(indices=list(r.sparse[sf.name].indices),
                                                    values=list(r.sparse[sf.name].values)) for r in batch]
        payloads = [{"doc_id": r.doc_id, "text": r.text, META: r.metadata} for r in batch]
        self._client.upsert(name, models.Batch(ids=[r.pid for r in batch], vectors=vectors, payloads=payloads),
                            wait=True)

    def _get(self, spec: CollectionSpec, name: str, pids: list[str]) -> list[PreparedRecord]:
        points = self._client.retrieve(name, ids=pids, with_payload=True, with_vectors=True)
        return [self._to_prepared(spec, p) for p in points]

    @staticmethod
    def _to_prepared(spec: CollectionSpec, p: Any) -> PreparedRecord:
        vecs = p.vector or {}
        dense: dict[str, np.ndarray] = {}
        for f in spec.dense:
            arr = np.asarray(vecs[f.name], dtype=np.float32)
            dense[f.name] = {"binary": lambda a: np.rint(a).astype(np.uint8),
                             "float16": lambda a: a.astype(np.float16)}.get(f.storage, lambda a: a)(arr)
        sparse = {s.name: SparseVector(tuple(vecs[s.name].indices), tuple(vecs[s.name].values))
                  if s.name in vecs else SparseVector((), ()) for s in spec.sparse}
        payload = p.payload or {}
        return PreparedRecord(str(p.id), payload.get("doc_id", str(p.id)), dense, sparse,
                              payload.get("text") or "", dict(payload.get(META) or {}))

    def _delete(self, spec: CollectionSpec, name: str, pids: list[str]) -> None:
        if pids:
            self._client.delete(name, points_selector=models.PointIdsList(points=pids), wait=True)

    def _scan_ids(self, spec: CollectionSpec, name: str, batch_size: int) -> CursorPages[Any]:
        def page(offset: Any) -> tuple[list[str], Any]:
            # Scroll walks the points in storage-id order; next_offset is None after the last page.
            points, next_offset = self._client.scroll(name, limit=batch_size, offset=offset,
                                                      with_payload=["doc_id"], with_vectors=False)
            return [(p.payload or {}).get("doc_id", str(p.id)) for p in points], next_offset

        return CursorPages(page)

    def _filter(self, spec: CollectionSpec, flt: Filter | None) -> models.Filter | None:
        return QdrantFilter(spec).translate(flt) if flt is not None else None

    def _count(self, spec: CollectionSpec, name: str, filter: Filter | None) -> int:
        return int(self._client.count(name, count_filter=self._filter(spec, filter), exact=True).count)

    # ---- search ----------------------------------------------------------------------------
    def _dense_prefetch(self, leg: DenseLeg, flt: models.Filter | None) -> dict[str, Any]:
        """Query arguments for the dense leg: the full vector, over a prefix prefetch when Matryoshka."""
        f: DenseField = leg.field
        # Local mode searches exactly and warns on search params; a server gets rescore/oversampling.
        params = None if "quantization" in self._caps.emulated else search_params(f)
        args: dict[str, Any] = {"query": leg.vector.astype(np.float32).tolist(), "using": f.name,
                                "limit": leg.candidates, "filter": flt, "params": params}
        if leg.prefix is not None and f.prefix_name:
            args["prefetch"] = models.Prefetch(query=leg.prefix.astype(np.float32).tolist(), using=f.prefix_name,
                                               limit=leg.prefix_candidates, filter=flt, params=params)
        return args

    @staticmethod
    def _sparse_prefetch(leg: SparseLeg, flt: models.Filter | None) -> dict[str, Any]:
        vec = models.SparseVector(indices=list(leg.vector.indices), values=list(leg.vector.values))
        return {"query": vec, "using": leg.field.name, "limit": leg.candidates, "filter": flt}

    def _search(self, spec: CollectionSpec, name: str, plan: QueryPlan) -> list[Hit]:
        local = "hnsw" in self._caps.emulated  # local mode scores in this process, with numpy
        with one_blas_thread() if local else nullcontext():
            return run_steps(self._search_steps(spec, name, plan), self._client)

    def _search_steps(self, spec: CollectionSpec, name: str, plan: QueryPlan) -> Steps[list[Hit]]:
        """One native query, as steps on a ``QdrantClient`` or an ``AsyncQdrantClient``."""
        flt = self._filter(spec, plan.filter)
        legs: dict[str, dict[str, Any]] = {}
        if plan.dense is not None:
            legs["dense"] = self._dense_prefetch(plan.dense, flt)
        if plan.sparse is not None:
            legs["sparse"] = self._sparse_prefetch(plan.sparse, flt)
        if plan.hybrid:
            weights = plan.fusion.weights
            if plan.fusion.method is FusionMethod.RRF:
                # Qdrant scores 1 / (rank + k - 1) with 1-based ranks; k + 1 gives the SDK's 1 / (k + rank).
                query: Any = models.RrfQuery(rrf=models.Rrf(
                    k=plan.fusion.k + 1, weights=[float(weights.get(leg, 1.0)) for leg in legs] if weights else None))
            else:
                query = models.FusionQuery(fusion=models.Fusion.DBSF)
            prefetch = [models.Prefetch(**args) for args in legs.values()]
            res = yield lambda client: client.query_points(name, prefetch=prefetch, query=query, query_filter=flt,
                                                           limit=plan.limit, with_payload=True)
            return [self._hit(p, float(p.score), "fused") for p in res.points]
        (leg, args), = legs.items()
        args = dict(args)
        args["limit"] = plan.limit
        args["query_filter"] = args.pop("filter")
        args["search_params"] = args.pop("params", None)
        res = yield lambda client: client.query_points(name, with_payload=True, **args)
        f = plan.dense.field if plan.dense is not None else None
        return [self._hit(p, score(f, p.score), leg) for p in res.points]

    @staticmethod
    def _hit(p: Any, value: float, stage: str) -> Hit:
        payload = p.payload or {}
        return Hit(payload.get("doc_id", str(p.id)), value, payload.get("text") or None,
                   dict(payload.get(META) or {}), {stage: value})

    # ---- aliases ---------------------------------------------------------------------------
    def _alias_target(self, alias: str) -> str | None:
        for a in self._client.get_aliases().aliases:
            if a.alias_name == alias:
                return a.collection_name
        return None

    def _create_alias(self, alias: str, collection: str) -> None:
        if self._alias_target(alias) is not None or self._client.collection_exists(alias):
            raise InputError(f"alias {alias!r} already exists; use switch_alias to re-point it")
        self._client.update_collection_aliases(change_aliases_operations=[models.CreateAliasOperation(
            create_alias=models.CreateAlias(collection_name=collection, alias_name=alias))])

    def _switch_alias(self, alias: str, collection: str) -> None:
        ops: list[Any] = []
        if self._alias_target(alias) is not None:
            ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        ops.append(models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection,
                                                                               alias_name=alias)))
        self._client.update_collection_aliases(change_aliases_operations=ops)  # one atomic request

    def _delete_alias(self, alias: str) -> bool:
        if self._alias_target(alias) is None:
            return False
        self._client.update_collection_aliases(change_aliases_operations=[
            models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))])
        return True

    def _list_names(self) -> list[str]:
        return [c.name for c in self._client.get_collections().collections]

    def _list_aliases(self) -> dict[str, str]:
        return {a.alias_name: a.collection_name for a in self._client.get_aliases().aliases}
