"""``WeaviateAdapter``: one Weaviate collection per SDK collection, with named vectors.

Each dense field is a self-provided named vector with the field's distance and compression
(SQ / BQ / PQ from ``IndexParams.quantization``); a Matryoshka field adds a prefix vector. The
text is a BM25-searchable property, so hybrid queries use Weaviate's own ``hybrid`` (alpha and
fusion type). The collection's description holds, as JSON, the spec that wrote it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import weaviate
from weaviate.classes.config import Configure, Property, Tokenization
from weaviate.classes.data import DataObject
from weaviate.classes.init import AdditionalConfig, GrpcConfig, Timeout
from weaviate.classes.query import Filter as WFilter
from weaviate.classes.query import HybridFusion, MetadataQuery

from adapters.aio import AsyncAdapter
from adapters.base import Adapter, Capabilities, CollectionSpec, CursorPages, PreparedRecord, QueryPlan
from adapters.guard import check_same
from adapters.steps import Steps, run_steps
from adapters.weaviate._errors import already_exists, translate
from adapters.weaviate._filters import WeaviateFilter
from adapters.weaviate._mapping import (
    DOC_ID_PROP,
    PAYLOAD_DATA_TYPES,
    PAYLOAD_PROP,
    TEXT_PROP,
    WEAVIATE_CAPABILITIES,
    check_names,
    class_name,
    distance_kind,
    prop_name,
    vector_index,
)
from sdk.core.errors import (
    AdapterError,
    CapabilityError,
    CollectionNotFoundError,
    ConfigError,
    InputError,
    SDKError,
    TransientAdapterError,
)
from sdk.core.similarity import DistanceKind, distance_to_score
from sdk.core.types import Filter, FusionMethod, Hit
from sdk.core.urls import parse_url, redact

__all__ = ["WEAVIATE_CAPABILITIES", "WeaviateAdapter", "client_options"]

_WRITER = "retrieval-forge adapters.weaviate"
_MARK = "retrieval_forge"
_FUSIONS = {FusionMethod.RRF: HybridFusion.RANKED, FusionMethod.RELATIVE_SCORE: HybridFusion.RELATIVE_SCORE}
# rankedFusion adds weight / (60 + 0-based rank) and no query can change the 60: with the SDK's
# 1-based ranks (score = sum w / (k + rank)) that is k=59, checked against a reference RRF in
# tests/integration/test_hybrid_weaviate.py.
_WEAVIATE_RRF_K = 59
_FETCH_CHUNK = 1000
# gRPC waits longer and longer between reconnection attempts (up to 2 min) while a server is away,
# and fails every call at once in between: after an outage the adapter stayed unusable for 30 s and
# more once Weaviate was back (tests/reliability/test_faults.py). Retry the connection every second.
_GRPC_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
                   ("grpc.max_reconnect_backoff_ms", 1000)]


def client_options(url: str) -> dict[str, Any]:
    """The ``weaviate.connect_to_custom`` arguments for ``url`` (``sdk.core.urls`` grammar).

    A pure function: ``connect_to_custom`` connects while it runs, so this is what tests inspect.
    """
    parsed = parse_url(url)
    if parsed.engine != "weaviate":
        raise ConfigError(f"not a Weaviate URL: {parsed.redacted!r}; use weaviate://HOST:PORT?grpc=50051")
    grpc_host = parsed.options.get("grpc_host", parsed.host).strip("[]")
    grpc_port = int(parsed.options.get("grpc", "50051"))
    if grpc_host == parsed.host and grpc_port == parsed.port:
        raise ConfigError(f"HTTP and gRPC share {parsed.host}:{grpc_port} in {parsed.redacted!r}; Weaviate serves "
                          "them on two ports or two hosts: set grpc=PORT or grpc_host=HOST")
    return {
        "http_host": parsed.host, "http_port": parsed.port, "http_secure": parsed.tls,
        "grpc_host": grpc_host, "grpc_port": grpc_port, "grpc_secure": parsed.tls,
        "auth_credentials": weaviate.classes.init.Auth.api_key(parsed.api_key) if parsed.api_key else None,
    }


class WeaviateAdapter(Adapter):
    """Weaviate >= 1.32 (aliases). Pass a connected v4 ``client`` (it stays yours to close), or
    use ``from_url("weaviate://HOST:PORT?grpc=50051")`` / ``adapters.connect``."""

    def __init__(self, client: Any, *, owns_client: bool = False) -> None:
        if not isinstance(client, weaviate.WeaviateClient):
            raise ConfigError(
                f"client= must be a weaviate.WeaviateClient (v4), got {type(client).__name__}; "
                "or use WeaviateAdapter.from_url('weaviate://HOST:PORT?grpc=50051')"
            )
        self._client = client
        self._owns = owns_client

    @classmethod
    def from_url(cls, url: str, *, call_timeout: float | None = None) -> WeaviateAdapter:
        """``weaviate://[:API_KEY@]HOST:HTTP_PORT?grpc=GRPC_PORT[&grpc_host=HOST]``; ``weaviates://`` or
        ``?tls=true`` for TLS on HTTP and gRPC; API key also from ``WEAVIATE_API_KEY``. See ``client_options``.

        ``call_timeout`` caps how long one call waits for an answer (default: weaviate-client's 30 s for
        reads, 90 s for writes); a retry follows a timeout, as after any transient failure."""
        options = client_options(url)
        if call_timeout is not None and (isinstance(call_timeout, bool) or not isinstance(call_timeout, (int, float))
                                         or call_timeout <= 0):
            raise ConfigError(f"call_timeout must be a number of seconds > 0, got {call_timeout!r}")
        timeout = Timeout() if call_timeout is None else Timeout(query=call_timeout, insert=call_timeout)
        try:
            client = weaviate.connect_to_custom(**options, additional_config=AdditionalConfig(
                timeout=timeout, grpc_config=GrpcConfig(channel_options=_GRPC_RECONNECT)))
        except Exception as exc:  # noqa: BLE001 - every connect failure becomes an SDK error
            raise translate(exc, f"connecting to Weaviate at {redact(url)}") from exc
        return cls(client, owns_client=True)

    @property
    def capabilities(self) -> Capabilities:
        return WEAVIATE_CAPABILITIES

    def _translate(self, exc: BaseException, what: str) -> SDKError:
        return translate(exc, what)

    def _close(self) -> None:
        if self._owns:
            self._client.close()

    def _overlap_guard(self) -> bool:
        return True  # the spec read is a REST round trip, the search a gRPC one: they can run together

    def _async_twin(self) -> AsyncAdapter:
        from adapters.weaviate._async import AsyncWeaviateAdapter

        return AsyncWeaviateAdapter(self)

    def _coll(self, spec: CollectionSpec) -> Any:
        return self._client.collections.get(class_name(spec.name))

    # ---- metadata ----------------------------------------------------------------------------
    def _read_spec(self, name: str) -> CollectionSpec | None:
        return run_steps(self._read_spec_steps(name), self._client)

    @staticmethod
    def _read_spec_steps(name: str) -> Steps[CollectionSpec | None]:
        """The stored spec, as steps on a ``WeaviateClient`` or a ``WeaviateAsyncClient``."""
        cls = class_name(name)
        try:  # one request, not exists() then get(): the guard runs before every query
            cfg = yield lambda client: client.collections.get(cls).config.get()  # an alias resolves to its target
        except Exception as exc:  # noqa: BLE001 - only "not found" means absent
            if isinstance(translate(exc, ""), CollectionNotFoundError):
                return None
            raise
        try:
            meta = json.loads(cfg.description or "")
            if not isinstance(meta, dict) or _MARK not in meta:
                raise ValueError("no SDK marker")
        except ValueError:
            raise InputError(
                f"Weaviate collection {cfg.name!r} exists but was not created by this SDK (its description "
                "holds no collection spec); choose another collection name"
            ) from None
        spec = CollectionSpec.from_dict(meta["spec"])
        if cfg.name == cls and spec.name != name:
            raise InputError(
                f"collection name {name!r} maps to Weaviate class {cls!r}, which already holds collection "
                f"{spec.name!r} (Weaviate capitalises class names); choose another name"
            )
        return spec

    def _create(self, spec: CollectionSpec) -> None:
        check_names(spec)
        cls = class_name(spec.name)
        if self._client.alias.get(alias_name=cls) is not None:
            raise InputError(f"{spec.name!r} is already an alias; choose another collection name")
        vectors = []
        for f in spec.dense:
            vectors.append(Configure.Vectors.self_provided(name=f.name, vector_index_config=vector_index(f)))
            if f.prefix_name:
                vectors.append(Configure.Vectors.self_provided(
                    name=f.prefix_name, vector_index_config=vector_index(f, prefix=True)))
        props = [
            Property(name=DOC_ID_PROP, data_type=PAYLOAD_DATA_TYPES["keyword"], tokenization=Tokenization.FIELD,
                     index_searchable=False),
            Property(name=TEXT_PROP, data_type=PAYLOAD_DATA_TYPES["keyword"], tokenization=Tokenization.WORD,
                     index_filterable=False),
            Property(name=PAYLOAD_PROP, data_type=PAYLOAD_DATA_TYPES["keyword"], index_filterable=False,
                     index_searchable=False),
        ]
        for p in spec.payload:
            kw = {"tokenization": Tokenization.FIELD, "index_searchable": False} if p.type == "keyword" else {}
            props.append(Property(name=prop_name(p.name), data_type=PAYLOAD_DATA_TYPES[p.type], **kw))
        description = json.dumps({_MARK: 1, "written_by": _WRITER, "spec": spec.to_dict()}, sort_keys=True)
        try:
            self._client.collections.create(
                cls,
                description=description,
                vector_config=vectors,
                properties=props,
            )
        except Exception as exc:
            # Created meanwhile: a concurrent creator, or an earlier attempt of this very call whose answer
            # was lost (tests/reliability/test_faults.py). Fine if it holds the same spec.
            stored = self._read_spec(spec.name) if already_exists(exc) else None
            if stored is None:
                raise
            check_same(stored, spec, spec.name)

    def _drop(self, name: str) -> bool:
        cls = class_name(name)
        if self._client.alias.get(alias_name=cls) is not None:
            return False  # an alias is not a collection; delete_alias removes it
        if not self._client.collections.exists(cls):
            return False
        for alias in self._client.alias.list_all(collection=cls):
            self._client.alias.delete(alias_name=alias)
        self._client.collections.delete(cls)
        return True

    # ---- records -------------------------------------------------------------------------------
    def _objects(self, spec: CollectionSpec, batch: Iterable[PreparedRecord]) -> list[Any]:
        payload = [prop_name(p.name) for p in spec.payload]
        names = [p.name for p in spec.payload]
        out = []
        for rec in batch:
            props: dict[str, Any] = {DOC_ID_PROP: rec.doc_id, TEXT_PROP: rec.text,
                                     PAYLOAD_PROP: json.dumps(rec.metadata, separators=(",", ":"))}
            for key, name in zip(payload, names, strict=True):
                value = rec.metadata.get(name)
                if value is not None:
                    props[key] = value
            vectors = {k: np.asarray(v, dtype=np.float32) for k, v in rec.dense.items()}
            out.append(DataObject(uuid=rec.pid, properties=props, vector=vectors))
        return out

    def _upsert_batch(self, spec: CollectionSpec, name: str, batch: list[PreparedRecord]) -> None:
        # A batch write with an existing uuid replaces that object: re-runs never duplicate.
        result = self._coll(spec).data.insert_many(self._objects(spec, batch))
        if result.errors:
            msgs = sorted({e.message for e in result.errors.values()})
            failed = [batch[i].doc_id for i in sorted(result.errors)[:5]]
            text = (f"Weaviate refused {len(result.errors)} of {len(batch)} objects (first ids {failed}): "
                    f"{'; '.join(msgs[:3])}")
            cls = TransientAdapterError if any(_transient_text(m) for m in msgs) else AdapterError
            raise cls(text + ". The others were written; re-run the upsert after fixing the cause")

    def _get(self, spec: CollectionSpec, name: str, pids: list[str]) -> list[PreparedRecord]:
        coll = self._coll(spec)
        out = []
        for i in range(0, len(pids), _FETCH_CHUNK):
            chunk = pids[i:i + _FETCH_CHUNK]
            res = coll.query.fetch_objects(filters=WFilter.by_id().contains_any(chunk), limit=len(chunk),
                                           include_vector=True)
            out.extend(self._prepared(spec, o) for o in res.objects)
        return out

    def _prepared(self, spec: CollectionSpec, obj: Any) -> PreparedRecord:
        vecs: dict[str, np.ndarray] = {}
        for f in spec.dense:
            dtype = {"float16": np.float16, "binary": np.uint8}.get(f.storage, np.float32)
            for key in filter(None, (f.name, f.prefix_name)):
                vecs[key] = np.asarray(obj.vector[key], dtype=np.float32).astype(dtype)
        props = obj.properties
        return PreparedRecord(str(obj.uuid), props[DOC_ID_PROP], vecs, {}, props.get(TEXT_PROP) or "",
                              json.loads(props.get(PAYLOAD_PROP) or "{}"))

    def _scan_ids(self, spec: CollectionSpec, name: str, batch_size: int) -> CursorPages[Any]:
        coll = self._coll(spec)

        def page(after: Any) -> tuple[list[str], Any]:
            # Weaviate's cursor: objects in uuid order, starting after the last uuid of the previous page.
            res = coll.query.fetch_objects(limit=batch_size, after=after, return_properties=[DOC_ID_PROP],
                                           include_vector=False)
            objs = res.objects
            return [o.properties[DOC_ID_PROP] for o in objs], (objs[-1].uuid if len(objs) >= batch_size else None)

        return CursorPages(page)

    def _delete(self, spec: CollectionSpec, name: str, pids: list[str]) -> None:
        if pids:
            self._coll(spec).data.delete_many(where=WFilter.by_id().contains_any(pids))

    def _count(self, spec: CollectionSpec, name: str, filter: Filter | None) -> int:
        where = WeaviateFilter(spec).translate(filter) if filter is not None else None
        return int(self._coll(spec).aggregate.over_all(total_count=True, filters=where).total_count or 0)

    # ---- search ----------------------------------------------------------------------------------
    def _search(self, spec: CollectionSpec, name: str, plan: QueryPlan) -> list[Hit]:
        return run_steps(self._search_steps(spec, name, plan), self._client)

    def _search_steps(self, spec: CollectionSpec, name: str, plan: QueryPlan) -> Steps[list[Hit]]:
        """One native search, as steps on a ``WeaviateClient`` or a ``WeaviateAsyncClient``."""
        cls = class_name(spec.name)
        where = WeaviateFilter(spec).translate(plan.filter) if plan.filter is not None else None
        props = [DOC_ID_PROP, TEXT_PROP, PAYLOAD_PROP]
        if plan.dense is not None and plan.text is not None:
            args = self._hybrid_args(plan, where, props)
            res = yield lambda client: client.collections.get(cls).query.hybrid(**args)
            return [_hit(o, o.metadata.score, DistanceKind.SIMILARITY, "fused") for o in res.objects]
        if plan.text is not None:
            res = yield lambda client: client.collections.get(cls).query.bm25(
                query=plan.text, query_properties=[TEXT_PROP], limit=plan.limit, filters=where,
                return_metadata=MetadataQuery(score=True), return_properties=props)
            return [_hit(o, o.metadata.score, DistanceKind.SIMILARITY, "text") for o in res.objects]
        leg = plan.dense
        if leg is None:  # pragma: no cover - prepare_query guarantees a leg
            raise InputError("query has no leg Weaviate can run")
        f = leg.field
        kind = distance_kind(f.similarity)
        if leg.prefix is not None and f.prefix_name:
            first = yield lambda client: client.collections.get(cls).query.near_vector(
                near_vector=leg.prefix.astype(np.float32), target_vector=f.prefix_name,
                limit=leg.prefix_candidates, filters=where, return_properties=[])
            ids = [o.uuid for o in first.objects]
            if not ids:
                return []
            only = WFilter.by_id().contains_any(ids)
            where = only if where is None else WFilter.all_of([where, only])
        res = yield lambda client: client.collections.get(cls).query.near_vector(
            near_vector=np.asarray(leg.vector, dtype=np.float32), target_vector=f.name,
            limit=min(plan.limit, leg.candidates), filters=where,
            return_metadata=MetadataQuery(distance=True), return_properties=props)
        return [_hit(o, o.metadata.distance, kind, "dense") for o in res.objects]

    @staticmethod
    def _hybrid_args(plan: QueryPlan, where: Any, props: list[str]) -> dict[str, Any]:
        """Arguments of Weaviate's own ``hybrid``: BM25 on ``text`` fused with the dense leg (alpha from the weights).

        A Matryoshka field's dense leg searches the full vector here: Weaviate cannot feed a prefix
        stage into one leg of ``hybrid``, and restricting both legs to the prefix candidates would
        change the BM25 leg. The full vector is the exact answer the prefix stage approximates.
        """
        leg = plan.dense
        fusion = plan.fusion
        if fusion.method is FusionMethod.RRF and fusion.k != _WEAVIATE_RRF_K:
            raise CapabilityError(
                f"Weaviate's rankedFusion uses k={_WEAVIATE_RRF_K}; a query cannot set k={fusion.k}. "
                f"Use Fusion(k={_WEAVIATE_RRF_K}) or fuse client-side"
            )
        unknown = set(fusion.weights) - {"dense", "text"}
        if unknown:
            raise InputError(f"fusion weights for unknown legs {sorted(unknown)}; Weaviate's legs are dense and text")
        wd, wt = float(fusion.weights.get("dense", 1.0)), float(fusion.weights.get("text", 1.0))
        if wd + wt <= 0:
            raise InputError("fusion weights of the dense and text legs are both 0")
        return {
            "query": plan.text, "vector": np.asarray(leg.vector, dtype=np.float32), "target_vector": leg.field.name,
            "alpha": wd / (wd + wt), "fusion_type": _FUSIONS[fusion.method], "query_properties": [TEXT_PROP],
            "limit": plan.limit, "filters": where, "return_metadata": MetadataQuery(score=True),
            "return_properties": props,
        }

    # ---- aliases ---------------------------------------------------------------------------------
    def _alias_target(self, collection: str) -> str:
        spec = self._read_spec(collection)
        if spec is None:  # pragma: no cover - base checked existence just before
            raise InputError(f"collection {collection!r} does not exist")
        return class_name(spec.name)

    def _not_a_collection(self, alias: str) -> str:
        cls = class_name(alias)
        if self._client.alias.get(alias_name=cls) is None and self._client.collections.exists(cls):
            raise InputError(f"{alias!r} is a collection, not an alias; choose another alias name")
        return cls

    def _create_alias(self, alias: str, collection: str) -> None:
        cls = self._not_a_collection(alias)
        if self._client.alias.get(alias_name=cls) is not None:
            raise InputError(f"alias {alias!r} already exists; use switch_alias to re-point it")
        self._client.alias.create(alias_name=cls, target_collection=self._alias_target(collection))

    def _switch_alias(self, alias: str, collection: str) -> None:
        cls = self._not_a_collection(alias)
        target = self._alias_target(collection)
        # Weaviate re-points an alias in one schema change: readers see the old or the new target.
        if self._client.alias.get(alias_name=cls) is None:
            self._client.alias.create(alias_name=cls, target_collection=target)
        else:
            self._client.alias.update(alias_name=cls, new_target_collection=target)

    def _delete_alias(self, alias: str) -> bool:
        cls = class_name(alias)
        if self._client.alias.get(alias_name=cls) is None:
            return False
        return bool(self._client.alias.delete(alias_name=cls))

    def aliases(self) -> dict[str, str]:
        """Current alias -> Weaviate class map (for inspection and tests)."""
        found = self._call("listing aliases", lambda: self._client.alias.list_all())
        return {a.alias: a.collection for a in found.values()}

    def _sdk_names(self) -> dict[str, str]:
        """Weaviate class -> the SDK collection name its description stores (the class name when none)."""
        return {cls: _stored_name(cfg.description) or cls
                for cls, cfg in self._client.collections.list_all(simple=True).items()}

    def _list_names(self) -> list[str]:
        return list(self._sdk_names().values())

    def _list_aliases(self) -> dict[str, str]:
        names = self._sdk_names()  # an alias targets a class; list_collections names the SDK collection
        return {a.alias: names.get(a.collection, a.collection) for a in self._client.alias.list_all().values()}


def _stored_name(description: str | None) -> str | None:
    """The SDK collection name in a class description this adapter wrote; ``None`` for any other."""
    try:
        meta = json.loads(description or "")
    except ValueError:
        return None
    spec = meta.get("spec") if isinstance(meta, dict) and _MARK in meta else None
    name = spec.get("name") if isinstance(spec, dict) else None
    return name if isinstance(name, str) else None


def _transient_text(message: str) -> bool:
    low = message.lower()
    return any(w in low for w in ("unavailable", "timeout", "timed out", "deadline", "connection reset",
                                  "too many requests", "temporarily"))


def _hit(obj: Any, raw: float | None, kind: DistanceKind, stage: str) -> Hit:
    props: Mapping[str, Any] = obj.properties
    score = distance_to_score(float(raw if raw is not None else 0.0), kind)
    return Hit(props[DOC_ID_PROP], score, props.get(TEXT_PROP) or None,
               json.loads(props.get(PAYLOAD_PROP) or "{}"), {stage: score})

