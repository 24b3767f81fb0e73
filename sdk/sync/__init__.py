"""``sdk sync`` as a Python API: keep a collection equal to a document source.

    from sdk.sync import sync, plan, status, verify, rollback

    report = sync("docs/", "qdrant+local:./data", "docs")        # folder, .jsonl or .csv, or a Source
    print(report.added, report.updated, report.deleted, report.unchanged)
    plan("docs/", "qdrant+local:./data", "docs")                 # the same scan, nothing written
    sync("docs/", "qdrant+local:./data", "docs", dense="other-model", stage=True)  # build a candidate, no switch
    sync("docs/", "qdrant+local:./data", "docs", dense="other-model")  # promote it: catch up, then switch
    discard_staged("qdrant+local:./data", "docs")                  # or drop the candidate

Encoders default to the packaged all-MiniLM-L6-v2 (dense) and SPLADE-tiny (sparse, when the store
holds sparse vectors); pass encoder objects or model names/folders, or ``sparse=False``. The ledger
defaults to an embedded SQLite file per store URL + collection (``sdk.sync.ledger.ledger_dir``);
a store given as an adapter object needs an explicit ``ledger`` (a path, ``postgresql://`` URL or
``Ledger``). How a run proceeds and recovers: ``sdk.sync.engine``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sdk.core.errors import ConfigError
from sdk.core.registry import connect
from sdk.core.store import VectorStore
from sdk.sync.engine import Syncer, SyncReport, VerifyReport
from sdk.sync.engine import discard_staged as _discard_staged
from sdk.sync.engine import rollback as _rollback
from sdk.sync.engine import status as _status
from sdk.sync.engine import verify as _verify
from sdk.sync.ledger import Ledger, ledger_dir, ledger_key
from sdk.sync.sources import CsvSource, FolderSource, JsonlSource, Source, open_source

__all__ = [
    "CsvSource", "FolderSource", "JsonlSource", "Ledger", "Source", "SyncReport", "Syncer", "VerifyReport",
    "discard_staged", "ledger_dir", "open_source", "plan", "rollback", "status", "sync", "verify",
]


def load_encoders(store: VectorStore, dense: Any = None, sparse: Any = None, device: str | None = None,
                  backend: str | Mapping[str, str | None] = "torch") -> tuple[Any, Any, dict[str, str | None]]:
    """Encoder objects from objects, names or defaults, and the names to record for ``sdk search``.

    ``sparse=None`` means the default SPLADE model when the store holds sparse vectors (none
    otherwise); ``sparse=False`` means no sparse leg. ``backend`` runs the encoders loaded by name:
    one backend for both, or per role (``{"dense": "onnx:model_qint8_avx2.onnx"}``, what a sync
    recorded); the recorded ``dense_backend`` / ``sparse_backend`` say exactly what ran.
    """
    from sdk.encoders.backends import backend_arguments, backend_label
    from sdk.encoders.dense import DenseEncoder
    from sdk.encoders.loading import default_dense_model
    from sdk.encoders.sparse import SparseEncoder, default_sparse_model

    def arguments(role: str) -> dict[str, Any]:
        label = backend.get(role) if isinstance(backend, Mapping) else backend
        kind, model_kwargs = backend_arguments(label or "torch")
        return {"device": device, "backend": kind, "model_kwargs": model_kwargs or None}

    if dense is None or isinstance(dense, (str, os.PathLike)):
        dense = DenseEncoder(str(dense) if dense is not None else default_dense_model(), **arguments("dense"))
    if sparse is None:
        sparse = default_sparse_model() if store.capabilities.sparse else False
    if isinstance(sparse, (str, os.PathLike)):
        sparse = SparseEncoder(str(sparse), **arguments("sparse"))
    sparse = sparse or None
    models = {"dense": _model_name(dense), "sparse": _model_name(sparse) if sparse is not None else None,
              "dense_backend": backend_label(dense),
              "sparse_backend": backend_label(sparse) if sparse is not None else None}
    return dense, sparse, models


def _model_name(encoder: Any) -> str | None:
    path = getattr(encoder, "model_path", None)
    return str(path) if path is not None else None


@contextmanager
def _opened(store: VectorStore | str, collection: str, ledger: Ledger | str | os.PathLike[str] | None
            ) -> Iterator[tuple[VectorStore, Ledger]]:
    """The store (connected when a URL, closed afterwards) and the ledger of ``collection`` in it."""
    if isinstance(ledger, Ledger):
        opened_ledger, own_ledger = ledger, False
    elif isinstance(store, str):
        # A store that dies with the process gets a ledger that does too (else the next run would trust
        # a ledger describing a store that no longer exists).
        ephemeral = ledger is None and (store.startswith("memory:") or store.endswith("::memory:"))
        opened_ledger = Ledger.open(":memory:" if ephemeral else ledger, key=ledger_key(store, collection))
        own_ledger = True
    elif ledger is not None:  # an adapter object has no URL: key by collection and database kind
        opened_ledger, own_ledger = Ledger.open(ledger, key=f"{collection}-{store.capabilities.name}"), True
    else:
        raise ConfigError("a store given as an object needs ledger=PATH (or a Ledger); with a store URL the "
                          "ledger defaults to a file per store and collection")
    own_store = isinstance(store, str)
    adapter = connect(store) if isinstance(store, str) else store
    try:
        yield adapter, opened_ledger
    finally:
        if own_store:
            adapter.close()
        if own_ledger:
            opened_ledger.close()


def _syncer(adapter: VectorStore, collection: str, book: Ledger, dense: Any, sparse: Any,
            device: str | None, backend: str | Mapping[str, str | None] = "torch", *,
            engine: type[Syncer] = Syncer, **options: Any) -> Syncer:
    dense, sparse, models = load_encoders(adapter, dense, sparse, device, backend)
    return engine(adapter, collection, dense=dense, sparse=sparse, ledger=book, models=models, **options)


def sync(source: Source | str | os.PathLike[str], store: VectorStore | str, collection: str, *,
         dense: Any = None, sparse: Any = None, ledger: Ledger | str | None = None, device: str | None = None,
         backend: str = "torch", engine: str = "local", ray: Mapping[str, Any] | Any = None,
         **options: Any) -> SyncReport:
    """Make ``collection`` equal to ``source``; ``options`` go to ``Syncer`` (chunk_tokens, chunk_overlap,
    keep, batch_size, allow_mass_delete, progress, stage). ``backend`` runs the encoders loaded by name
    (``"auto"``: the fastest this CPU measured; see ``sdk.encoders.backends.auto``).

    ``stage=True`` builds the version for new encoder or chunking settings without switching the alias
    (``status(...)["staged"]`` names it); a later run without ``stage`` and with the same settings
    promotes it (catches it up with the source, then switches), ``discard_staged`` drops it.

    ``engine="ray"`` reads, chunks and encodes on a Ray cluster (``sdk.sync.ray_engine``; the ``ray``
    extra) with the same ledger and results; ``ray`` holds its options (``address``, ``encoder_actors``,
    ``gpus_per_actor``, ...: ``RayOptions``)."""
    if engine not in ("local", "ray"):
        raise ConfigError(f"engine must be 'local' or 'ray', got {engine!r}")
    if ray is not None and engine != "ray":
        raise ConfigError("ray options were given but engine is 'local'; pass engine='ray' as well")
    src = open_source(source)
    with _opened(store, collection, ledger) as (adapter, book):
        if engine == "ray":
            from sdk.sync.ray_engine import RaySyncer

            options.update(engine=RaySyncer, store_url=store if isinstance(store, str) else None, ray=ray,
                           actor_device=device)
        return _syncer(adapter, collection, book, dense, sparse, device, backend, **options).run(src)


def plan(source: Source | str | os.PathLike[str], store: VectorStore | str, collection: str, *,
         dense: Any = None, sparse: Any = None, ledger: Ledger | str | None = None, device: str | None = None,
         backend: str = "torch", **options: Any) -> SyncReport:
    """What ``sync`` would do, without writing anything."""
    src = open_source(source)
    with _opened(store, collection, ledger) as (adapter, book):
        return _syncer(adapter, collection, book, dense, sparse, device, backend, **options).plan(src)


def status(store: VectorStore | str, collection: str, *, ledger: Ledger | str | None = None) -> dict[str, Any]:
    """documents, chunks, collection (physical), alias, encoder (fingerprint), last_run, staged."""
    with _opened(store, collection, ledger) as (_, book):
        return _status(book, collection)


def rollback(store: VectorStore | str, collection: str, *, ledger: Ledger | str | None = None) -> dict[str, Any]:
    """Point the alias ``collection`` back at the previous kept version."""
    with _opened(store, collection, ledger) as (adapter, book):
        return _rollback(book, adapter, collection)


def discard_staged(store: VectorStore | str, collection: str, *, ledger: Ledger | str | None = None) -> str | None:
    """Drop the staged version of ``collection`` (built with ``sync(..., stage=True)``); returns its name,
    or ``None`` when nothing was staged."""
    with _opened(store, collection, ledger) as (adapter, book):
        return _discard_staged(book, adapter, collection)


def verify(store: VectorStore | str, collection: str, *, repair: bool = False, ledger: Ledger | str | None = None,
           device: str | None = None) -> VerifyReport:
    """Ledger versus store; with ``repair``, delete orphans and re-write missing chunks from the recorded
    sources (with the models that built the live version)."""
    with _opened(store, collection, ledger) as (adapter, book):
        report = _verify(book, adapter, collection, repair=repair)
        if report.repaired:  # only now are the models needed: the missing chunks are encoded again
            models = (book.get("live") or {}).get("models") or {}
            syncer = _syncer(adapter, collection, book, models.get("dense"), models.get("sparse") or False, device,
                             {"dense": models.get("dense_backend"), "sparse": models.get("sparse_backend")})
            for name, spec in (book.get("sources") or {}).items():
                if spec is None:
                    raise ConfigError(f"source {name} cannot be reopened (it was not a path); run sync with it to "
                                      "re-write the missing chunks")
                syncer.run(open_source(spec))
            after = _verify(book, adapter, collection)
            report.missing, report.orphans = after.missing, after.orphans
        return report
