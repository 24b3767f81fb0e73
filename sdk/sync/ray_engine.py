"""``sdk sync --engine ray``: the same run as ``Syncer``, with the source read, chunked and encoded on Ray.

    from sdk.sync import sync
    sync("docs/", "postgresql://db/sdk", "docs", engine="ray", ray={"encoder_actors": 4, "gpus_per_actor": 1})

What runs where (one run, the three steps of ``sdk.sync.engine`` in the same order):

1. **Plan.** The source is cut into pieces (``sdk.sync.sources.partitions``: groups of files, byte
   ranges of a JSONL file) that become a Ray dataset; a map reads and chunks each piece with the
   dense encoder's tokenizer and fingerprints every chunk on the workers, and the result is kept in
   Ray's object store. The driver streams only ids and fingerprints back and compares them with the
   ledger, exactly as the single-process scan does (same report, same mass-delete guard, a source
   error aborts before anything is written). An unchanged corpus ends here: no encoding is scheduled.
2. **Write.** Every chunk to write is recorded in the ledger as pending first (the write-ahead of
   the single-process run, for the whole run at once). A pool of ``encoder_actors`` actors, each
   loading the models once (on a GPU with ``gpus_per_actor``; any backend, ONNX int8 included),
   encodes the changed chunks. With a database server the actors upsert their records themselves
   through the same adapters (one connection per actor); with an embedded store (Qdrant local,
   Milvus Lite, memory), which lives in the driver's process, the driver upserts what they return.
   The driver commits each chunk's fingerprint once its batch is written.
3. **Delete** and the alias switch: in the driver, as in ``Syncer``.

A killed actor is restarted by Ray and its batch run again (upserts are idempotent: chunk ids are
fixed); a killed driver leaves pending rows that the next run, with either engine, writes again.
Ray is imported only here, and only when a run asks for it (the ``ray`` extra).
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from sdk.core.errors import ConfigError, MissingDependencyError, SDKError, SyncError
from sdk.core.progress import progress_bar
from sdk.core.spec import CollectionSpec
from sdk.core.store import VectorStore
from sdk.sync.chunking import Chunk, TokenChunker
from sdk.sync.engine import PENDING, Syncer, _Plan, chunk_fingerprint, encode_chunks
from sdk.sync.sources import ImageDocument, Source, partitions

__all__ = ["RayOptions", "RaySyncer", "ensure_ray", "server_store"]

log = logging.getLogger(__name__)

#: URL schemes of stores reached over the network: Ray's actors write to them directly.
_SERVER_SCHEMES = ("qdrant", "qdrants", "milvus", "milvuss", "weaviate", "weaviates", "postgresql", "postgres")


@dataclass(frozen=True)
class RayOptions:
    """How a sync uses Ray. ``address``: an existing cluster (``"auto"``, ``"ray://head:10001"``);
    ``None`` joins the Ray already started in this process or starts a local one."""

    address: str | None = None
    encoder_actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    documents_per_batch: int = 256  # documents an actor encodes per call (all their changed chunks)
    files_per_part: int = 256  # a folder source: files one read+chunk task reads
    bytes_per_part: int = 8 << 20  # a JSONL source: bytes one read+chunk task reads

    def __post_init__(self) -> None:
        for name in ("encoder_actors", "documents_per_batch", "files_per_part", "bytes_per_part"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ray option {name} must be a positive integer, got {value!r}")
        for name in ("gpus_per_actor", "cpus_per_actor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise ConfigError(f"ray option {name} must be a number >= 0, got {value!r}")
        if self.cpus_per_actor == 0 and self.gpus_per_actor == 0:
            raise ConfigError("an encoder actor needs a CPU or a GPU: set cpus_per_actor or gpus_per_actor above 0")

    @classmethod
    def of(cls, value: RayOptions | Mapping[str, Any] | None) -> RayOptions:
        if value is None:
            return cls()
        if isinstance(value, RayOptions):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"ray options must be a RayOptions or a dict, got {type(value).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(f"unknown ray option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**value)


def ensure_ray(address: str | None = None) -> Any:
    """The ``ray`` module, connected: to ``address``, to the Ray this process already joined, or to a
    local instance started now (it stays up for later runs of this process)."""
    try:
        import ray
        import ray.data  # noqa: F401  (the engine's batch pipeline)
    except ImportError as exc:
        raise MissingDependencyError("ray", "ray") from exc
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray


def server_store(url: str | None) -> bool:
    """Whether ``url`` names a database server (actors on other machines can write to it)."""
    return bool(url) and url.partition(":")[0].lower() in _SERVER_SCHEMES  # type: ignore[union-attr]


def sdk_error_in(exc: BaseException) -> SDKError | None:
    """The SDK error a Ray task raised, found through Ray's wrappers (``RayTaskError``, ``UserCodeException``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, SDKError):
            return current
        cause = getattr(current, "cause", None)
        current = cause if isinstance(cause, BaseException) else (current.__cause__ or current.__context__)
    return None


# ---- step 1 on the workers: read and chunk the pieces of the source ------------------------------


def _chunk_pieces(batch: dict[str, np.ndarray], pieces: list[Any], chunker: TokenChunker,
                  settings_digest: str) -> dict[str, list[Any]]:
    """One row per document of the pieces in ``batch``: its id, whether it is an image, its chunks' ids
    and fingerprints, and the chunks themselves (pickled: Ray keeps them for the write step)."""
    rows: dict[str, list[Any]] = {"doc_id": [], "image": [], "chunk_ids": [], "fps": [], "chunks": []}
    for index in batch["piece"]:
        for doc, chunks in chunker.chunk_many(pieces[int(index)]):
            rows["doc_id"].append(doc.id)
            rows["image"].append(isinstance(doc, ImageDocument))
            rows["chunk_ids"].append([c.id for c in chunks])
            rows["fps"].append([chunk_fingerprint(c, settings_digest) for c in chunks])
            rows["chunks"].append(pickle.dumps(chunks, protocol=pickle.HIGHEST_PROTOCOL))
    return rows


# ---- step 2 on the actors: encode (and write) the changed chunks ---------------------------------


class _EncoderRecipe:
    """How an actor gets the driver's encoders: loaded by name (what the run records), or shipped."""

    def __init__(self, dense: Any, sparse: Any, models: Mapping[str, str | None], device: str | None) -> None:
        self.models, self.device = dict(models), device
        by_name = models.get("dense") and (sparse is None or models.get("sparse"))
        self.shipped = None if by_name else (dense, sparse)  # objects without a folder travel pickled

    def load(self) -> tuple[Any, Any]:
        if self.shipped is not None:
            return self.shipped
        from sdk.sync import load_encoders

        backend = {"dense": self.models.get("dense_backend"), "sparse": self.models.get("sparse_backend")}
        dense, sparse, _ = load_encoders(None, self.models["dense"], self.models.get("sparse") or False,  # type: ignore[arg-type]
                                         self.device, backend)
        return dense, sparse


class _EncodeAndWrite:
    """A Ray actor: loads the encoders once, then encodes batches of documents' changed chunks."""

    def __init__(self, recipe: _EncoderRecipe, spec: CollectionSpec, store_url: str | None,
                 only: list[Any], batch_size: int, threads: int) -> None:
        import ray
        import torch

        from sdk.core.registry import connect
        from sdk.retrieval.pipeline import spec_encoder_id

        if recipe.device in (None, "cpu"):
            torch.set_num_threads(max(1, threads))
        self.dense, self.sparse = recipe.load()
        mine = spec_encoder_id(self.dense, self.sparse)
        if mine != spec.encoder:
            raise SyncError(f"an encoder actor loaded different models than the driver ({mine} vs {spec.encoder}); "
                            "install the same model files on every node of the cluster")
        self.spec, self.batch_size = spec, batch_size
        self.only: frozenset[str] | None = ray.get(only[0]) if only else None
        self.store: VectorStore | None = connect(store_url) if store_url else None
        self.dense_field = spec.dense[0].name if spec.dense else "dense"
        self.sparse_field = spec.sparse[0].name if spec.sparse else "sparse"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        chunks: list[Chunk] = []
        for blob in batch["chunks"]:
            chunks.extend(c for c in pickle.loads(blob) if self.only is None or c.id in self.only)
        out: dict[str, list[Any]] = {"chunk_id": [c.id for c in chunks], "record": []}
        if not chunks:
            return out
        records = encode_chunks(chunks, self.dense, self.sparse, dense_field=self.dense_field,
                                sparse_field=self.sparse_field, batch_size=self.batch_size)
        if self.store is not None:
            self.store.upsert(self.spec.name, records, expect=self.spec)
            out["record"] = [b""] * len(records)
        else:
            out["record"] = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in records]
        return out


# ---- the run --------------------------------------------------------------------------------------


class RaySyncer(Syncer):
    """``Syncer`` whose plan and write steps run on Ray (see the module docstring).

    ``store_url`` is the store's URL when it has one: with a database server the encoder actors write
    to it themselves. ``ray`` takes ``RayOptions`` (or a dict of them); ``actor_device`` is where the
    actors run the models (default: "cuda" with ``gpus_per_actor``, else "cpu").
    """

    def __init__(self, store: VectorStore | str, collection: str, *, dense: Any, ledger: Any,
                 sparse: Any = None, store_url: str | None = None, ray: RayOptions | Mapping[str, Any] | None = None,
                 actor_device: str | None = None, **options: Any) -> None:
        self.options = RayOptions.of(ray)
        super().__init__(store, collection, dense=dense, sparse=sparse, ledger=ledger, **options)
        self.store_url = store if isinstance(store, str) else store_url
        self.device = actor_device or ("cuda" if self.options.gpus_per_actor else "cpu")
        self._chunked: Any = None
        self._total_chunks = 0

    # step 1: the chunks are made on the workers; the driver sees ids and fingerprints
    def _fingerprinted(self, source: Source) -> Iterator[tuple[str, bool, list[tuple[Any, str, str]]]]:
        ray = ensure_ray(self.options.address)
        self._check_resources(ray)  # before anything runs: an actor pool that cannot start would wait forever
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        pieces = partitions(source, files_per_part=self.options.files_per_part,
                            bytes_per_part=self.options.bytes_per_part, min_pieces=2 * cpus)
        started = time.perf_counter()
        try:
            chunked = ray.data.from_items([{"piece": i} for i in range(len(pieces))]).map_batches(
                _chunk_pieces, batch_size=1, num_cpus=1, batch_format="numpy",
                fn_kwargs={"pieces": pieces, "chunker": self.chunker, "settings_digest": self._want_digest},
            ).materialize()
        except Exception as exc:  # a SourceError on a worker aborts the run here, before anything is written
            raise sdk_error_in(exc) or exc from exc
        log.info("ray: read and chunked %d pieces of %s in %.1f s", len(pieces), source.name,
                 time.perf_counter() - started)
        # Blocks are what the actor pool hands out: one per actor call's worth of documents, or a small
        # source made of one piece would be encoded by one actor while the others wait.
        documents = chunked.count()
        blocks = max(self.options.encoder_actors, -(-documents // self.options.documents_per_batch))
        self._chunked, self._total_chunks = chunked.repartition(blocks).materialize(), 0
        for batch in self._chunked.select_columns(["doc_id", "image", "chunk_ids", "fps"]).iter_batches(
                batch_size=4096, batch_format="pyarrow"):
            columns = batch.to_pydict()
            for doc_id, image, chunk_ids, fps in zip(columns["doc_id"], columns["image"], columns["chunk_ids"],
                                                     columns["fps"], strict=True):
                self._total_chunks += len(chunk_ids)
                yield doc_id, bool(image), [((cid, doc_id), cid, fp) for cid, fp in zip(chunk_ids, fps, strict=True)]

    # step 2: encode on the actor pool; the ledger's write-ahead covers the whole run
    def _write(self, plan: _Plan, spec: CollectionSpec, source: str) -> None:
        physical = spec.name
        if plan.writes:
            fingerprints = {cid: (doc_id, fp) for (cid, doc_id), fp in plan.writes}
            self.ledger.put_chunks(physical, [(cid, d, source, PENDING) for cid, (d, _) in fingerprints.items()])
            self._encode_on_actors(spec, source, fingerprints)
        self._chunked = None
        self._record_documents(plan, physical, source)

    def _check_resources(self, ray: Any) -> None:
        """An actor pool the cluster cannot hold waits forever: refuse it (a cluster that autoscales is
        only warned about, it may grow)."""
        opts = self.options
        total = ray.cluster_resources()
        for kind, each in (("CPU", opts.cpus_per_actor), ("GPU", opts.gpus_per_actor)):
            need, have = opts.encoder_actors * each, float(total.get(kind, 0.0))
            if need <= have:
                continue
            message = (f"{opts.encoder_actors} encoder actors x {each:g} {kind} need {need:g} {kind}s, and the Ray "
                       f"cluster has {have:g}; lower encoder_actors or {kind.lower()}s_per_actor")
            if opts.address is None:
                raise ConfigError(message)
            log.warning("%s (waiting for the cluster to grow)", message)

    def _encode_on_actors(self, spec: CollectionSpec, source: str,
                          fingerprints: Mapping[str, tuple[str, str]]) -> None:
        ray = ensure_ray(self.options.address)
        physical, opts = spec.name, self.options
        only = [] if len(fingerprints) == self._total_chunks else [ray.put(frozenset(fingerprints))]
        writer_url = self.store_url if server_store(self.store_url) else None
        recipe = _EncoderRecipe(self.pipeline.dense_encoder, self.pipeline.sparse_encoder, self.models, self.device)
        stage = self._chunked.map_batches(
            _EncodeAndWrite, batch_size=opts.documents_per_batch, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=opts.encoder_actors),
            num_cpus=opts.cpus_per_actor, num_gpus=opts.gpus_per_actor or None,
            fn_constructor_kwargs={"recipe": recipe, "spec": spec, "store_url": writer_url, "only": only,
                                   "batch_size": self.pipeline.batch_size,
                                   "threads": max(1, int(opts.cpus_per_actor))},
        )
        bar = progress_bar(len(fingerprints), f"syncing {self.name} on ray", self.progress, unit="chunk")
        done, started, first = 0, time.perf_counter(), None
        try:
            for batch in stage.iter_batches(batch_size=None, batch_format="numpy"):
                if first is None:
                    first = time.perf_counter() - started
                    log.info("ray: first encoded batch after %.1f s (actors starting, models loading)", first)
                ids = [str(c) for c in batch["chunk_id"]]
                if writer_url is None and ids:
                    records = [pickle.loads(blob) for blob in batch["record"]]
                    for at in range(0, len(records), self.batch_size):
                        self.store.upsert(physical, records[at:at + self.batch_size], expect=spec)
                self.ledger.put_chunks(physical, [(c, fingerprints[c][0], source, fingerprints[c][1]) for c in ids])
                done += len(ids)
                bar.update(len(ids))
        except Exception as exc:
            raise sdk_error_in(exc) or exc from exc
        finally:
            bar.close()
        log.info("ray: %d chunks encoded and written in %.1f s", done, time.perf_counter() - started)
        if done != len(fingerprints):  # every pending row must have been written: else say so, loudly
            raise SyncError(f"the encoder actors returned {done} of {len(fingerprints)} chunks; nothing was "
                            "deleted, and the next run writes the rest")
