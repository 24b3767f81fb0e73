"""``Syncer``: keep one collection equal to a document source, incrementally, resumably, blue/green.

One run is three steps, in this order, and a crash between any two is repaired by the next run:

1. **Plan** (nothing written): scan the whole source, chunk every document with the dense
   encoder's tokenizer, fingerprint every chunk (text, stored metadata, chunker settings, encoder
   fingerprint) and compare with the ledger. A source that fails mid-scan aborts here, so a run
   whose scan did not complete never deletes anything; a plan that would delete more than half of
   the collection's documents stops unless ``allow_mass_delete``.
2. **Write** the new and changed chunks in batches: encode, record them in the ledger as pending
   (no fingerprint), upsert (idempotent: chunk ids derive from the document id and position), and
   only then commit their fingerprints to the ledger.
3. **Delete** what the source no longer has (documents gone, tail chunks of documents that
   shrank): mark them pending in the ledger, delete them from the store, then drop their rows. Old
   versions of a document are therefore removed only after its new chunks are written.

A chunk the store may hold differently from what the ledger says is always a pending row, and a
pending row matches no fingerprint: whatever the source holds at the next run, the chunk is
written again (still in the source) or deleted again (gone), so a crash followed by a changed
source leaves neither orphans nor stale text nor holes.

The collection ``NAME`` is an alias over physical collections ``NAME_v1``, ``NAME_v2``, ...
When the encoder fingerprint or the chunker settings differ from the live version's, the run
fills a new physical collection completely and then switches the alias in one step (blue/green);
queries through the alias never see a half-filled collection. ``keep`` versions stay for
``rollback``. A store without aliases (none of the bundled adapters: Milvus Lite's are emulated)
is synced into ``NAME`` itself and refuses a re-index with a clear error.

**Images.** With a dense encoder that reads images (a CLIP model), a ``FolderSource`` left at
``images=None`` also yields its image files (``ImageDocument``): one chunk each, the relative path
as its text, the hash of the file's bytes as its content hash, encoded as an image. Images have no
sparse vector, so a source with images is synced without a sparse encoder (``sparse=False`` /
``--no-sparse``); the scan refuses one, before anything is written.

**Staged builds** (``stage=True``) fill the new version the same way but leave the alias where it
is and record the version as ``staged``, so a candidate encoder can be evaluated on the real store
first. The ledger knows it as staged from the first write, so a regular run with the live
settings (a cron job) updates the live version and leaves the candidate alone; it then lags the
source. A later run without ``stage`` whose settings match the staged version promotes it: it
catches the staged version up with the source and switches the alias (``_switch``: ``versions``,
``keep`` and drops as for any re-index). Staging another candidate, or ``discard_staged``, drops it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sdk.core.errors import CapabilityError, ConfigError, InputError, SyncError
from sdk.core.progress import progress_bar
from sdk.core.spec import CollectionSpec
from sdk.core.store import VectorStore
from sdk.core.types import Document, EncodedBatch, Record
from sdk.retrieval.pipeline import RetrievalPipeline, encode_documents
from sdk.sync.chunking import Chunk, TokenChunker
from sdk.sync.ledger import Ledger, now
from sdk.sync.sources import FolderSource, ImageDocument, Source

__all__ = ["SyncReport", "Syncer", "VerifyReport", "chunk_fingerprint", "discard_staged", "encode_chunks"]

DELETE_BATCH = 500
ENCODE_WINDOW = 1024  # chunks per encoder call; writes still go batch_size at a time
#: Fingerprint of a ledger row whose store write or delete is under way (matches no real fingerprint).
PENDING = ""


@dataclass
class SyncReport:
    """What a sync did (or, for a plan, would do). Document counts are per source document."""

    source: str
    collection: str
    alias: str | None
    encoder: str
    planned: bool = False
    reindex: bool = False
    added: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    chunks_encoded: int = 0
    chunks_written: int = 0
    chunks_deleted: int = 0
    chunks_total: int = 0
    dropped: list[str] = field(default_factory=list)
    staged: str | None = None  # the physical version built (or to build) behind the alias' back
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        verb = "would" if self.planned else "did"
        where = f"{self.alias} -> {self.collection}" if self.alias else self.collection
        if self.staged:
            where = f"{self.collection} (staged: the alias {self.alias} stays on the live version)"
        lines = [
            f"sync {verb}: {self.added} added, {self.updated} updated, {self.deleted} deleted, "
            f"{self.unchanged} unchanged documents",
            f"chunks: {self.chunks_encoded} to encode, {self.chunks_written} written, {self.chunks_deleted} deleted"
            if self.planned else
            f"chunks: {self.chunks_encoded} encoded, {self.chunks_written} written, {self.chunks_deleted} deleted "
            f"({self.chunks_total} in the collection)",
            f"collection: {where}" + (" (new version: encoder or chunking changed)"
                                      if self.reindex and not self.staged else ""),
        ]
        if self.staged and not self.planned:
            lines.append(f"staged {self.staged}: promote it with a sync with the same settings without stage "
                         "(it catches up with the source first), or discard it")
        if self.dropped:
            lines.append(f"dropped old versions: {', '.join(self.dropped)}")
        if not self.planned:
            lines.append(f"{self.seconds:.1f} s")
        return "\n".join(lines)


@dataclass
class VerifyReport:
    """Ledger versus store: chunk ids the ledger lists that the store lacks, and the reverse."""

    collection: str
    ledger_chunks: int
    store_chunks: int
    missing: list[str]
    orphans: list[str]
    repaired: bool = False

    @property
    def drift(self) -> bool:
        return bool(self.missing or self.orphans)

    def to_dict(self) -> dict[str, Any]:
        return {"collection": self.collection, "ledger_chunks": self.ledger_chunks, "store_chunks": self.store_chunks,
                "missing": len(self.missing), "orphans": len(self.orphans), "drift": self.drift,
                "repaired": self.repaired, "missing_ids": self.missing[:20], "orphan_ids": self.orphans[:20]}


@dataclass
class _Plan:
    """The outcome of the scan: what to write and delete in ``target``."""

    target: dict[str, Any]
    build: bool
    writes: list[tuple[Chunk, str]]
    stale_chunks: list[str]
    gone_documents: list[str]
    documents: dict[str, tuple[str, int]]  # document id -> (fingerprint, chunks) of the source
    known_documents: dict[str, tuple[str, str, int]]  # what the ledger held for the target before the run
    report: SyncReport


def _digest(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Syncer:
    """Sync documents into ``collection`` of ``store`` with the given encoders (see the module docstring).

    ``store`` is an adapter or a URL; ``ledger`` an open ``Ledger``. ``dense`` is required (its
    tokenizer chunks the text); ``sparse`` is optional.
    """

    def __init__(self, store: VectorStore | str, collection: str, *, dense: Any, ledger: Ledger,
                 sparse: Any = None, chunk_tokens: int | None = None, chunk_overlap: int = 0, keep: int = 2,
                 batch_size: int = 64, allow_mass_delete: bool = False, progress: bool | None = None,
                 models: Mapping[str, str] | None = None, stage: bool = False) -> None:
        if dense is None:
            raise ConfigError("sync needs a dense encoder: its tokenizer cuts the documents into chunks")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ConfigError(f"keep must be a positive number of versions, got {keep!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(stage, bool):
            raise ConfigError(f"stage must be True or False, got {stage!r}")
        self.name = collection
        self.stage = stage
        self.ledger = ledger
        self.keep, self.batch_size = keep, batch_size
        self.allow_mass_delete, self.progress = allow_mass_delete, progress
        self.models = dict(models or {})
        self.reads_images = bool(getattr(dense, "accepts_images", False))
        self.chunker = TokenChunker.from_encoder(dense, chunk_tokens, chunk_overlap)
        # The pipeline encodes exactly as searches will (document prompts and routes, field names).
        # A live version built by another encoder is not an error here: the run re-indexes it.
        self.pipeline = RetrievalPipeline(dense, sparse, store=store, collection=collection, batch_size=32,
                                          check_collection=False)
        self.store = self.pipeline.adapter
        self.aliases = bool(self.store.capabilities.aliases)
        if stage and not self.aliases:
            raise CapabilityError(
                f"{self.store.capabilities.name} has no aliases, so sync cannot stage a version of {self.name!r} "
                "next to the live one and switch later; sync without stage, or use a store with aliases"
            )
        self.spec = self.pipeline.collection_spec()
        self.encoder = self.spec.encoder or ""
        self.want = {"fingerprint": self.encoder, "chunker": self.chunker.settings}
        self._want_digest = _digest(self.want)  # part of every chunk fingerprint: hashed once, not per chunk

    def close(self) -> None:
        self.pipeline.close()

    # ---- targets ----------------------------------------------------------------------------
    def _matches(self, version: Mapping[str, Any] | None) -> bool:
        return bool(version) and version.get("fingerprint") == self.want["fingerprint"] \
            and version.get("chunker") == self.want["chunker"]

    def _target(self) -> tuple[dict[str, Any], bool]:
        """(physical version to write, whether it is a build: it ends with an alias switch, or with
        the ``staged`` record when ``stage``)."""
        live = self._check_stage()
        if self._matches(live):
            return dict(live), False
        building, staged = self.ledger.get("building"), self.ledger.get("staged")
        # A staged candidate first: staging it again resumes or updates it, a run without stage promotes it.
        for version in ((staged, building) if self.stage else (building, staged)):
            if self._matches(version):
                return _version(version), True
        if not self.aliases:
            if live:
                raise CapabilityError(
                    f"{self.store.capabilities.name} has no aliases, so sync cannot re-index {self.name!r} for a new "
                    "encoder or chunking without downtime; keep the old settings, or drop the collection (and its "
                    "ledger) and sync again, or use a store with aliases"
                )
            return {"collection": self.name, "version": 0, **self.want}, True
        for version in reversed(self.ledger.get("versions", [])):
            if self._matches(version) and self.store.exists(version["collection"]):
                return dict(version), True
        n = int(self.ledger.get("next_version", 1))
        physical = f"{self.name}_v{n}"
        if len(physical) > 63:
            raise InputError(f"collection name {self.name!r} is too long for versioned copies; use at most 58 chars")
        return {"collection": physical, "version": n, **self.want}, True

    def _check_stage(self) -> dict[str, Any] | None:
        """The live version; with ``stage``, refuse a run that has nothing to stage (before anything is dropped)."""
        live = self.ledger.get("live")
        if self.stage and not live:
            raise SyncError(f"nothing is live in {self.name!r} yet, so there is nothing to stage a candidate "
                            "next to; run a sync without stage first")
        if self.stage and self._matches(live):
            raise SyncError(f"nothing to stage: the live version of {self.name!r} ({live['collection']}) "
                            "already uses these encoder and chunking settings; sync without stage to update it")
        return live

    def _check_name_is_free(self) -> None:
        """The alias name must not be a collection sync did not create."""
        if not self.aliases or self.ledger.get("live") or not self.store.exists(self.name):
            return
        if self.store.describe(self.name).name == self.name:
            raise SyncError(
                f"a collection named {self.name!r} already exists and was not created by sync; sync keeps "
                f"{self.name!r} as an alias over versioned collections. Drop it, or sync into another --collection"
            )

    # ---- planning ---------------------------------------------------------------------------
    def _with_images(self, source: Source) -> Source:
        """A folder left to decide reads its images when the dense encoder does."""
        if isinstance(source, FolderSource) and source.images is None:
            return source.with_images(self.reads_images)
        return source

    def _check_image(self, doc_id: str, source: Source) -> None:
        if not self.reads_images:
            raise SyncError(f"{doc_id} in {source.name} is an image, and the dense encoder reads text only; sync "
                            "with an image-text model (a CLIP folder such as clip-ViT-B-32), or leave images out "
                            "(FolderSource(..., images=False))")
        if self.pipeline.sparse_encoder is not None:
            raise SyncError(f"{doc_id} in {source.name} is an image, and images have no sparse vector; sync this "
                            "source without a sparse encoder (sparse=False, or --no-sparse on the command line)")

    def _fingerprinted(self, source: Source) -> Iterator[tuple[str, bool, list[tuple[Any, str, str]]]]:
        """Per source document, in order: (id, whether it is an image, [(what ``_write`` encodes, chunk id,
        chunk fingerprint)]). Here the chunks themselves; the Ray engine chunks on its workers and
        hands back ids (``sdk.sync.ray_engine``)."""
        for doc, chunks in self.chunker.chunk_many(source):
            yield doc.id, isinstance(doc, ImageDocument), [(c, c.id, self.fingerprint(c)) for c in chunks]

    def fingerprint(self, chunk: Chunk) -> str:
        """What the ledger compares: the chunk's content and stored metadata under these encoder and chunker
        settings (a pending row's empty fingerprint matches none)."""
        return chunk_fingerprint(chunk, self._want_digest)

    def _scan(self, source: Source) -> _Plan:
        started = time.perf_counter()
        source = self._with_images(source)
        self._check_name_is_free()
        target, build = self._target()
        physical = target["collection"]
        existing = self.ledger.chunks(physical)
        known_docs = self.ledger.documents(physical)
        report = SyncReport(source.name, physical, self.name if self.aliases else None, self.encoder,
                            reindex=build and bool(self.ledger.get("live")), staged=physical if self.stage else None)
        writes: list[tuple[Any, str]] = []
        seen: set[str] = set()
        documents: dict[str, tuple[str, int]] = {}
        for doc_id, image, chunks in self._fingerprinted(source):  # a SourceError aborts before anything is deleted
            if doc_id in documents:
                raise SyncError(f"document id {doc_id!r} appears twice in {source.name}; ids must be unique")
            if image:
                self._check_image(doc_id, source)
            fps = []
            for item, chunk_id, fp in chunks:
                fps.append(fp)
                seen.add(chunk_id)
                if existing.get(chunk_id, ("", "", ""))[2] != fp:
                    writes.append((item, fp))
            doc_fp = _digest(fps)
            documents[doc_id] = (doc_fp, len(chunks))
            before = known_docs.get(doc_id)
            if before is None:
                report.added += 1
            elif before[1] != doc_fp or any(chunk_id not in existing for _, chunk_id, _ in chunks):
                report.updated += 1
            else:
                report.unchanged += 1
        stale = [cid for cid, (_, src, _) in existing.items() if src == source.name and cid not in seen]
        gone = [d for d, (src, _, _) in known_docs.items() if src == source.name and d not in documents]
        report.deleted = len(gone)
        report.chunks_encoded = report.chunks_written = len(writes)
        report.chunks_deleted = len(stale)
        if gone and not self.allow_mass_delete and len(gone) * 2 > len(known_docs):
            raise SyncError(
                f"this run would delete {len(gone)} of the {len(known_docs)} documents in {self.name!r} "
                f"(source {source.name} yielded {len(documents)}); nothing was deleted. If that is intended, "
                "re-run with --allow-mass-delete (allow_mass_delete=True)"
            )
        report.seconds = time.perf_counter() - started
        return _Plan(target, build, writes, stale, gone, documents, known_docs, report)

    def plan(self, source: Source) -> SyncReport:
        """What ``run(source)`` would do; writes nothing (a dry run)."""
        report = self._scan(source).report
        report.planned = True
        return report

    # ---- running ----------------------------------------------------------------------------
    def run(self, source: Source) -> SyncReport:
        """Make the collection equal to ``source`` (see the module docstring for the order of steps)."""
        started = time.perf_counter()
        self._check_stage()
        self._abandon_stale_build()
        plan = self._scan(source)
        report, physical = plan.report, plan.target["collection"]
        spec = self.spec if physical == self.name else self.spec.renamed(physical)
        if plan.build:
            # Remembered first, so a killed build resumes into the same physical collection (a staged
            # one as staged already: a regular run in between must not take it for a stale build).
            next_version = max(int(self.ledger.get("next_version", 1)), plan.target["version"] + 1)
            if self.stage:
                self.ledger.set(staged={**plan.target, "complete": False}, building=None, next_version=next_version)
            else:
                self.ledger.set(building=plan.target, next_version=next_version)
        self.store.ensure_collection(spec)
        self._write(plan, spec, source.name)
        self._delete(plan, physical)
        if plan.build and self.stage:
            self.ledger.set(staged={**plan.target, "created": plan.target.get("created") or now(),
                                    "models": self.models, "complete": True}, building=None)
        elif plan.build:
            report.dropped = self._switch(plan.target)
        elif self.aliases and (not self.store.exists(self.name) or self.store.describe(self.name).name != physical):
            # A crash between an alias switch and its ledger record (a build, a rollback) left the
            # alias on another version: the ledger's live version is the one sync keeps in step.
            self.store.switch_alias(self.name, physical)
        report.chunks_total = self.ledger.counts(physical)[1]
        report.seconds = time.perf_counter() - started
        self.ledger.set(last_run={**report.to_dict(), "finished": now()},
                        sources={**self.ledger.get("sources", {}), source.name: getattr(source, "spec", None)})
        return report

    def _abandon_stale_build(self) -> None:
        """Drop a half-built version that this run's settings will not finish (its build was killed
        and the encoder or chunking changed since); it was never behind the alias. A staged version
        stays (a killed promotion leaves it as ``building`` too), unless this run stages another one."""
        staged = self.ledger.get("staged")
        if staged and not self.store.exists(staged["collection"]):
            # Dropped (or never created) before the ledger forgot it: none of its rows describe the store.
            self.ledger.forget_collection(staged["collection"])
        if self.stage and staged and not self._matches(staged):
            _drop_unused(self.ledger, self.store, self.name, staged["collection"])
            self.ledger.set(staged=None)
            staged = None
        building = self.ledger.get("building")
        if not building or self._matches(building):
            return
        if not staged or building["collection"] != staged["collection"]:
            _drop_unused(self.ledger, self.store, self.name, building["collection"])
        self.ledger.set(building=None)

    def _write(self, plan: _Plan, spec: CollectionSpec, source: str) -> None:
        physical = spec.name
        bar = progress_bar(len(plan.writes), f"syncing {self.name}", self.progress, unit="chunk")
        try:
            # Encode many chunks per call (the encoder sorts them by length into tight batches, 1.5-2x
            # faster than 64 at a time), then write and record them ``batch_size`` at a time.
            window = max(self.batch_size, ENCODE_WINDOW)
            for start in range(0, len(plan.writes), window):
                chunks = plan.writes[start:start + window]
                encoded = self._encode([c for c, _ in chunks])
                for at in range(0, len(chunks), self.batch_size):
                    batch, records = chunks[at:at + self.batch_size], encoded[at:at + self.batch_size]
                    # Write-ahead: a crash after the upsert leaves pending rows, which the next run
                    # writes again or deletes (if the source lost them meanwhile), never an orphan.
                    self.ledger.put_chunks(physical, [(c.id, c.document_id, source, PENDING) for c, _ in batch])
                    self.store.upsert(physical, records, expect=spec)
                    self.ledger.put_chunks(physical, [(c.id, c.document_id, source, fp) for c, fp in batch])
                    bar.update(len(batch))
        finally:
            bar.close()
        self._record_documents(plan, physical, source)

    def _record_documents(self, plan: _Plan, physical: str, source: str) -> None:
        """After every chunk is written: the documents' rows (only those that changed)."""
        known = plan.known_documents
        self.ledger.put_documents(physical, [(d, source, fp, n) for d, (fp, n) in plan.documents.items()
                                             if known.get(d) != (source, fp, n)])

    def _encode(self, chunks: list[Chunk]) -> list[Record]:
        """The records of ``chunks``, encoded as searches will encode (the pipeline's document side)."""
        p = self.pipeline
        return encode_chunks(chunks, p.dense_encoder, p.sparse_encoder, dense_field=p.dense_field,
                             sparse_field=p.sparse_field, batch_size=p.batch_size)

    def _delete(self, plan: _Plan, physical: str) -> None:
        for start in range(0, len(plan.stale_chunks), DELETE_BATCH):
            ids = plan.stale_chunks[start:start + DELETE_BATCH]
            self.ledger.mark_pending(physical, ids)  # a crash after the delete: rewritten if the source regains them
            self.store.delete(physical, ids)
            self.ledger.remove_chunks(physical, ids)
        if plan.gone_documents:
            self.ledger.remove_documents(physical, plan.gone_documents)

    def _switch(self, target: dict[str, Any]) -> list[str]:
        """Point the alias at the filled version, then drop versions beyond ``keep``."""
        physical = target["collection"]
        version = {**target, "created": target.get("created") or now(), "models": self.models}
        if self.aliases:
            self.store.switch_alias(self.name, physical)
        versions = [v for v in self.ledger.get("versions", []) if v["collection"] != physical] + [version]
        staged = self.ledger.get("staged")
        promoted = bool(staged) and staged["collection"] == physical
        self.ledger.set(live=version, building=None, versions=versions, **({"staged": None} if promoted else {}))
        dropped: list[str] = []
        while len(versions) > self.keep:
            old = versions.pop(0)
            self.store.drop(old["collection"])
            self.ledger.forget_collection(old["collection"])
            staged = self.ledger.get("staged")  # a kept version that was staged again goes with it
            gone = {"staged": None} if staged and staged["collection"] == old["collection"] else {}
            self.ledger.set(versions=versions, **gone)
            dropped.append(old["collection"])
        return dropped

    # ---- status, verify, rollback -----------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return status(self.ledger, self.name)

    def verify(self, *, repair: bool = False) -> VerifyReport:
        return verify(self.ledger, self.store, self.name, repair=repair)


def chunk_fingerprint(chunk: Chunk, settings_digest: str) -> str:
    """The ledger fingerprint of ``chunk`` under the run's settings (``settings_digest``: encoder + chunker)."""
    return _digest(chunk.content_hash, chunk.metadata, settings_digest)


def encode_chunks(chunks: Sequence[Chunk], dense: Any, sparse: Any, *, dense_field: str = "dense",
                  sparse_field: str = "sparse", batch_size: int = 32) -> list[Record]:
    """The records of ``chunks``, encoded as a pipeline with these encoders and fields searches (its
    document side)."""
    docs = [Document(c.id, c.text, dict(c.metadata)) for c in chunks]
    if not any(c.image for c in chunks):
        return encode_documents(docs, dense, sparse, dense_field=dense_field, sparse_field=sparse_field,
                                batch_size=batch_size).records()
    # Images (dense only: the scan refused a sparse encoder) and texts in one call, in their order.
    inputs = [Path(c.image) if c.image else c.text for c in chunks]
    vectors = dense.encode_document(inputs, batch_size=batch_size)
    return EncodedBatch(tuple(docs), {dense_field: np.asarray(vectors)}).records()


def _version(record: Mapping[str, Any]) -> dict[str, Any]:
    """A version dict from a ledger record (without the staged-only ``complete`` flag)."""
    return {k: v for k, v in record.items() if k != "complete"}


def _drop_unused(ledger: Ledger, store: VectorStore, name: str, physical: str) -> bool:
    """Drop ``physical`` and forget its rows unless it is live, kept for rollback or ``name`` itself."""
    kept = {v["collection"] for v in ledger.get("versions", [])}
    if physical in kept or physical == name or physical == (ledger.get("live") or {}).get("collection"):
        return False
    store.drop(physical)
    ledger.forget_collection(physical)
    return True


def status(ledger: Ledger, name: str) -> dict[str, Any]:
    """What the ledger says about ``name``: documents, chunks, physical collection, alias, encoder, last run,
    and the staged version (``staged``: its physical name; ``staged_complete``: whether its build finished)."""
    live, staged = ledger.get("live"), ledger.get("staged")
    pending = {"staged": staged["collection"] if staged else None,
               "staged_complete": bool(staged and staged.get("complete"))}
    if not live:
        return {"documents": 0, "chunks": 0, "collection": None, "alias": None, "encoder": None,
                "last_run": ledger.get("last_run"), "versions": [], **pending}
    docs, chunks = ledger.counts(live["collection"])
    return {"documents": docs, "chunks": chunks, "collection": live["collection"],
            "alias": name if live["collection"] != name else None, "encoder": live.get("fingerprint"),
            "chunker": live.get("chunker"), "models": live.get("models"), "last_run": ledger.get("last_run"),
            "versions": [v["collection"] for v in ledger.get("versions", [])], "ledger": ledger.where, **pending}


def discard_staged(ledger: Ledger, store: VectorStore, name: str) -> str | None:
    """Drop the staged version of ``name`` (a candidate that lost), forget its ledger rows and the record.

    Returns the dropped physical name; ``None`` when nothing was staged (or the staged version is also
    kept for rollback, which keeps it in the store).
    """
    staged = ledger.get("staged")
    if not staged:
        return None
    physical = staged["collection"]
    dropped = _drop_unused(ledger, store, name, physical)
    building = ledger.get("building")  # a killed promotion of it
    ledger.set(staged=None, **({"building": None} if building and building["collection"] == physical else {}))
    return physical if dropped else None


def verify(ledger: Ledger, store: VectorStore, name: str, *, repair: bool = False) -> VerifyReport:
    """Compare the ledger's chunk ids of the live collection with the ids the store holds (no encoder needed).

    ``repair`` deletes orphans (points the ledger does not know) and forgets the ledger rows whose
    points are missing, so the next ``Syncer.run`` writes those chunks again (``sdk.sync.verify``
    does that run with the recorded sources).
    """
    live = ledger.get("live")
    if not live:
        raise SyncError(f"nothing was synced into {name!r} yet (no ledger state); run sdk sync first")
    physical = live["collection"]
    ledger_ids = set(ledger.chunks(physical))
    store_ids = set(store.ids(physical))
    report = VerifyReport(physical, len(ledger_ids), len(store_ids), sorted(ledger_ids - store_ids),
                          sorted(store_ids - ledger_ids))
    if repair and report.drift:
        for start in range(0, len(report.orphans), DELETE_BATCH):
            store.delete(physical, report.orphans[start:start + DELETE_BATCH])
        ledger.remove_chunks(physical, report.missing)
        report.repaired = True
    return report


def rollback(ledger: Ledger, store: VectorStore, name: str) -> dict[str, Any]:
    """Point the alias back at the version before the live one (kept by ``keep``)."""
    live = ledger.get("live")
    versions = ledger.get("versions", [])
    index = next((i for i, v in enumerate(versions) if live and v["collection"] == live["collection"]), None)
    if not live or index is None or index == 0:
        raise SyncError(f"{name!r} has no previous version to roll back to (kept: "
                        f"{', '.join(v['collection'] for v in versions) or 'none'}); sync keeps --keep N versions")
    previous = versions[index - 1]
    if not store.exists(previous["collection"]):
        raise SyncError(f"the previous version {previous['collection']!r} is gone from the store; cannot roll back")
    store.switch_alias(name, previous["collection"])
    staged = ledger.get("staged")  # staged again since: live now, nothing left to promote
    gone = {"staged": None} if staged and staged["collection"] == previous["collection"] else {}
    ledger.set(live=previous, **gone)  # the order of versions stays: the next build drops the oldest non-live one
    return {"alias": name, "collection": previous["collection"], "from": live["collection"]}
