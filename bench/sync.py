"""Incremental sync: ``sdk.sync.sync`` against LangChain's ``index()``, same store, same encoder, same run.

On a working copy of ``debpkg/corpus.jsonl`` (``--docs`` of its 24,809 documents) each store runs
four steps, and after each step both implementations sync the same file:

  first      the whole corpus into an empty collection
  unchanged  the same file again
  edit       1% of the documents get a sentence appended to their text
  delete     1% of the (other) documents are removed from the file

"ours" is ``sdk.sync.sync(path, store, collection, dense=..., sparse=False, ledger=...)``; the peer is
LangChain's ``index()`` with a ``SQLRecordManager`` (SQLite), ``cleanup="incremental"`` and
``source_id_key="source"``, writing into LangChain's own vector store on the same engine
(``QdrantVectorStore`` over a local ``QdrantClient(path=...)``; ``PGVector``). Both sides embed the
same texts: LangChain gets the chunks of our ``TokenChunker`` (metadata ``source`` = document id), and
one ``DenseEncoder`` serves both, ours through a counting wrapper, LangChain's as ``Embeddings``. Within
a step the two run back to back, alternating which goes first, so load drifting on a shared machine
hits both alike.

Prints one JSON object per (store, impl, step):
  {"store", "impl", "step", "docs", "wall_s", "texts_embedded", "expected_texts", "encode_s", "store_s",
   "overhead_s", "overhead_pct", ...}
``encode_s`` is time inside the encoder, ``store_s`` time inside the vector-store layer (our adapter's
methods; LangChain's ``add_documents`` / ``delete`` minus the embedding done inside them), and
``overhead_s = wall_s - encode_s - store_s`` (chunking, ledger / record manager, planning, glue).
``expected_texts`` is what a perfect incremental sync embeds (all chunks, 0, the chunks the edits
changed, 0). Also per line: ``chunk_s`` (tokenizer pass), ``ledger_s`` / ``record_manager_s``,
``store_calls`` ({method: [seconds, calls]}), ``store_chunks_after`` (points in the collection after
the step) and, for ours, ``sync_report_s`` (``SyncReport.seconds``: ``Syncer.run``; the rest of
``wall_s`` is building the Syncer: encoder fingerprint, chunker, pipeline). Then one JSON summary per
store (ours/LangChain ratios, the goals) and a table whose lines start with ``#`` (``grep -v '^#'``
keeps the JSON; ``--table FILE`` reprints the tables of lines saved with ``--out``). No assertions:
the goals are reported, held or missed.

Known differences on the LangChain side, visible in the numbers rather than corrected for:
``cleanup="incremental"`` never deletes documents that left the source (only ``"full"`` does), so
its collection keeps them after the delete step (``store_chunks_after``); its per-batch cleanup
deletes and re-embeds the chunks of a document that straddles two ``index()`` batches on every run
(langchain-ai/langchain#32612); ``PGVector`` creates no vector index, our pgvector adapter an HNSW one.

Needs the LangChain packages (``pip install -e '.[bench]'``) and, for pgvector, PostgreSQL with the
vector extension (``--pg-url``, default ``$SDK_TEST_POSTGRES_URL``).

    python bench/sync.py --docs 500                       # quick
    python bench/sync.py --stores qdrant                  # all 24,809 documents, Qdrant only
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STEPS = ("first", "unchanged", "edit", "delete")
EDIT_SENTENCE = " This sentence was appended by bench/sync.py to edit the document."
INSTALL_HINT = "pip install -e '.[bench]'"


# ---- the benchmark-only dependencies ------------------------------------------------------------
def import_langchain(stores: list[str]) -> dict[str, Any]:
    """LangChain's index(), SQLRecordManager, Embeddings and the vector stores asked for, or SystemExit."""
    mods: dict[str, Any] = {}
    missing: list[str] = []
    try:
        from langchain_core.embeddings import Embeddings
        from langchain_core.indexing import index

        mods.update(index=index, Embeddings=Embeddings)
    except ImportError:
        missing.append("langchain-core")
    for where in ("langchain_classic.indexes", "langchain_community.indexes", "langchain.indexes"):
        try:
            mods["SQLRecordManager"] = importlib.import_module(where).SQLRecordManager
            break
        except (ImportError, AttributeError):
            continue
    else:
        missing.append("langchain-classic (or langchain-community) with SQLAlchemy, for SQLRecordManager")
    if "qdrant" in stores:
        try:
            from langchain_qdrant import QdrantVectorStore

            mods["QdrantVectorStore"] = QdrantVectorStore
        except ImportError:
            missing.append("langchain-qdrant")
    if "pgvector" in stores:
        try:
            from langchain_postgres import PGVector

            mods["PGVector"] = PGVector
        except ImportError:
            missing.append("langchain-postgres")
    if missing:
        raise SystemExit(f"bench/sync.py compares with LangChain and needs: {', '.join(missing)}.\n"
                         f"Install the benchmark extra: {INSTALL_HINT}")
    return mods


# ---- instrumentation -----------------------------------------------------------------------------
class Clock:
    """Seconds and calls accumulated per name."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    @property
    def total(self) -> float:
        return float(sum(self.seconds.values()))

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds
        self.calls[name] += 1

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                out = fn(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - t0)
            if isinstance(out, Iterator):
                return self._timed_iter(name, out)
            return out

        return timed

    def _timed_iter(self, name: str, it: Iterator[Any]) -> Iterator[Any]:
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                self.seconds[name] += time.perf_counter() - t0
                return
            self.seconds[name] += time.perf_counter() - t0
            yield item

    def breakdown(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in sorted(self.seconds.items(), key=lambda kv: -kv[1])}


class CountingEncoder:
    """Our DenseEncoder as sync sees it: delegates everything, counts and times ``encode_document``."""

    def __init__(self, encoder: Any, batch_size: int) -> None:
        self.encoder, self.batch_size = encoder, batch_size
        self.texts, self.seconds = 0, 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.encoder, name)

    def encode_document(self, texts: Any, **kwargs: Any) -> Any:
        kwargs["batch_size"] = self.batch_size  # the same model batch on both sides
        t0 = time.perf_counter()
        out = self.encoder.encode_document(texts, **kwargs)
        self.seconds += time.perf_counter() - t0
        self.texts += len(texts)
        return out


class TimedStore:
    """An adapter whose every method call is timed (iterators included); the rest delegates."""

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter
        self.clock = Clock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.adapter, name)
        if name.startswith("_") or not callable(attr):
            return attr
        return self.clock.wrap(name, attr)


@contextmanager
def timed_chunking(clock: Clock) -> Iterator[None]:
    """Time ``TokenChunker.chunk_batch`` (the tokenizer pass of both sides) while the block runs."""
    from sdk.sync.chunking import TokenChunker

    original = TokenChunker.chunk_batch

    def chunk_batch(self: Any, docs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(self, docs)
        finally:
            clock.add("chunking", time.perf_counter() - t0)

    TokenChunker.chunk_batch = chunk_batch  # type: ignore[method-assign]
    try:
        yield
    finally:
        TokenChunker.chunk_batch = original  # type: ignore[method-assign]


def time_methods(obj: Any, names: tuple[str, ...], clock: Clock, label: str) -> None:
    """Replace ``obj``'s bound methods ``names`` by timed ones (instance attributes only)."""
    for name in names:
        setattr(obj, name, clock.wrap(label, getattr(obj, name)))


def make_embeddings(base: type, encoder: Any, batch_size: int) -> Any:
    """Our DenseEncoder as LangChain ``Embeddings``, counting and timing the texts it embeds."""

    class CountingEmbeddings(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            self.texts, self.seconds = 0, 0.0

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            t0 = time.perf_counter()
            vectors = encoder.encode_document(list(texts), batch_size=batch_size, normalize_embeddings=True)
            self.seconds += time.perf_counter() - t0
            self.texts += len(texts)
            return vectors.tolist()

        def embed_query(self, text: str) -> list[float]:
            return encoder.encode_query([text], batch_size=1, normalize_embeddings=True)[0].tolist()

    return CountingEmbeddings()


# ---- the corpus and its changes ----------------------------------------------------------------
def load_corpus(data: Path, n: int | None) -> list[dict[str, Any]]:
    with open(data / "debpkg" / "corpus.jsonl", encoding="utf8") as fh:
        return [json.loads(line) for line in islice(fh, n)]


def corpus_versions(records: list[dict[str, Any]], fraction: float, seed: int
                    ) -> tuple[dict[str, list[dict[str, Any]]], list[str], list[str]]:
    """The corpus after each step, the edited ids and the deleted ids (disjoint, fixed seed)."""
    rng = random.Random(seed)
    ids = [r["_id"] for r in records]
    k = max(1, round(len(ids) * fraction))
    edited = rng.sample(ids, k)
    rest = sorted(set(ids) - set(edited))
    deleted = rng.sample(rest, min(k, len(rest)))
    edit_set, delete_set = set(edited), set(deleted)
    after_edit = [{**r, "text": r["text"] + EDIT_SENTENCE} if r["_id"] in edit_set else r for r in records]
    after_delete = [r for r in after_edit if r["_id"] not in delete_set]
    return {"first": records, "unchanged": records, "edit": after_edit, "delete": after_delete}, edited, deleted


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def expected_texts(chunker: Any, versions: dict[str, list[dict[str, Any]]], edited: list[str]) -> dict[str, int]:
    """Chunks a perfect incremental sync embeds at each step."""
    from sdk.sync.sources import JsonlSource

    def chunk_texts(records: list[dict[str, Any]]) -> dict[str, list[str]]:
        docs = [JsonlSource._document(r, "corpus") for r in records]
        return {d.id: [c.text for c in cs] for d, cs in chunker.chunk_many(docs)}

    first = chunk_texts(versions["first"])
    edit_set = set(edited)
    before = {k: v for k, v in first.items() if k in edit_set}
    after = chunk_texts([r for r in versions["edit"] if r["_id"] in edit_set])
    changed = sum(1 for d, texts in after.items() for i, t in enumerate(texts)
                  if i >= len(before[d]) or before[d][i] != t)
    return {"first": sum(len(v) for v in first.values()), "unchanged": 0, "edit": changed, "delete": 0}


# ---- the two implementations --------------------------------------------------------------------
class Ours:
    impl = "retrieval-forge"

    def __init__(self, store: str, url: str, collection: str, encoder: Any, args: argparse.Namespace,
                 tmp: Path) -> None:
        from sdk.core.registry import connect
        from sdk.sync.ledger import Ledger

        self.store_kind, self.collection, self.args = store, collection, args
        self.dense = CountingEncoder(encoder, args.batch_size)
        self.store = TimedStore(connect(url))
        self.ledger = Ledger.open(tmp / "ours-ledger.sqlite", key=f"{collection}-bench")
        self.ledger_clock = Clock()
        time_methods(self.ledger, ("get", "set", "chunks", "documents", "put_chunks", "put_documents",
                                   "remove_chunks", "remove_documents", "forget_collection", "counts"),
                     self.ledger_clock, "ledger")

    def run(self, path: Path) -> dict[str, Any]:
        from sdk.sync import sync

        self.dense.texts, self.dense.seconds = 0, 0.0
        self.store.clock.reset()
        self.ledger_clock.reset()
        chunk_clock = Clock()
        options = {"batch_size": self.args.write_batch} if self.args.write_batch else {}
        with timed_chunking(chunk_clock):
            t0 = time.perf_counter()
            report = sync(path, self.store, self.collection, dense=self.dense, sparse=False, ledger=self.ledger,
                          progress=False, **options)
            wall = time.perf_counter() - t0
        return {
            "wall_s": wall, "texts_embedded": self.dense.texts, "encode_s": self.dense.seconds,
            "store_s": self.store.clock.total, "ledger_s": self.ledger_clock.total, "chunk_s": chunk_clock.total,
            "added": report.added, "updated": report.updated, "deleted": report.deleted,
            "unchanged": report.unchanged, "chunks_written": report.chunks_written,
            "chunks_deleted": report.chunks_deleted, "sync_report_s": round(report.seconds, 3),
            "store_calls": {k: [round(self.store.clock.seconds[k], 3), n] for k, n in self.store.clock.calls.items()},
        }

    def count(self) -> int:
        return int(self.store.adapter.count(self.collection))

    def close(self) -> None:
        adapter = self.store.adapter
        try:
            if self.store_kind == "pgvector":  # embedded Qdrant lives in the temp folder
                for version in self.ledger.get("versions", []) or []:
                    adapter.drop(version["collection"])
                building = self.ledger.get("building")
                if building:
                    adapter.drop(building["collection"])
                adapter.delete_alias(self.collection)
        finally:
            adapter.close()
            self.ledger.close()


class LangChain:
    impl = "langchain"

    def __init__(self, store: str, lc: dict[str, Any], encoder: Any, dim: int, collection: str,
                 args: argparse.Namespace, tmp: Path) -> None:
        from sdk.sync.chunking import TokenChunker

        self.store_kind, self.lc, self.collection, self.args = store, lc, collection, args
        self.embeddings = make_embeddings(lc["Embeddings"], encoder, args.batch_size)
        self.chunker = TokenChunker.from_encoder(encoder)
        self.client: Any = None
        if store == "qdrant":
            from qdrant_client import QdrantClient, models

            self.client = QdrantClient(path=str(tmp / "langchain-qdrant"))
            self.client.create_collection(collection, vectors_config=models.VectorParams(
                size=dim, distance=models.Distance.COSINE))
            self.vs = lc["QdrantVectorStore"](self.client, collection, embedding=self.embeddings)
        else:
            self.pg_url = args.pg_url
            self.vs = lc["PGVector"](self.embeddings, connection=sqlalchemy_url(args.pg_url), collection_name=collection,
                                     embedding_length=dim, use_jsonb=True)
        self.record_manager = lc["SQLRecordManager"](f"{store}/{collection}",
                                                     db_url=f"sqlite:///{tmp / 'langchain-records.sqlite'}")
        self.record_manager.create_schema()
        self.store_clock, self.rm_clock = Clock(), Clock()
        self._embed_seconds_in_store = 0.0
        for name in ("add_documents", "delete"):
            setattr(self.vs, name, self._timed_store(name, getattr(self.vs, name)))
        time_methods(self.record_manager, ("exists", "update", "list_keys", "delete_keys", "get_time"),
                     self.rm_clock, "record_manager")

    def _timed_store(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            embedded_before = self.embeddings.seconds
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:  # the embedding LangChain does inside add_documents is encode time, not store time
                self.store_clock.add(name, time.perf_counter() - t0 - (self.embeddings.seconds - embedded_before))
        return timed

    def documents(self, path: Path) -> Iterator[Any]:
        """LangChain Documents of our chunks of ``path`` (chunked as they stream)."""
        from langchain_core.documents import Document as LCDocument

        from sdk.sync.sources import open_source

        for doc, chunks in self.chunker.chunk_many(open_source(path)):
            for chunk in chunks:
                yield LCDocument(page_content=chunk.text, metadata={"source": doc.id, "chunk": chunk.position})

    def run(self, path: Path) -> dict[str, Any]:
        # LangChain's default key encoder (sha1 as a uuid5) is the one whose ids Qdrant accepts.
        warnings.filterwarnings("ignore", message="Using SHA-1 for document hashing")
        self.embeddings.texts, self.embeddings.seconds = 0, 0.0
        self.store_clock.reset()
        self.rm_clock.reset()
        chunk_clock = Clock()
        with timed_chunking(chunk_clock):
            t0 = time.perf_counter()
            result = self.lc["index"](self.documents(path), self.record_manager, self.vs, cleanup="incremental",
                                      source_id_key="source",
                                      batch_size=self.args.lc_batch_size)
            wall = time.perf_counter() - t0
        return {
            "wall_s": wall, "texts_embedded": self.embeddings.texts, "encode_s": self.embeddings.seconds,
            "store_s": self.store_clock.total, "record_manager_s": self.rm_clock.total, "chunk_s": chunk_clock.total,
            "added": result["num_added"], "updated": result["num_updated"], "deleted": result["num_deleted"],
            "skipped": result["num_skipped"],
            "store_calls": {k: [round(self.store_clock.seconds[k], 3), n] for k, n in self.store_clock.calls.items()},
        }

    def count(self) -> int:
        if self.client is not None:
            return int(self.client.count(self.collection, exact=True).count)
        import psycopg

        with psycopg.connect(self.pg_url) as conn:
            row = conn.execute("SELECT count(*) FROM langchain_pg_embedding e JOIN langchain_pg_collection c "
                               "ON e.collection_id = c.uuid WHERE c.name = %s", (self.collection,)).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        else:
            self.vs.delete_collection()


def sqlalchemy_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


# ---- one store ----------------------------------------------------------------------------------
def bench_store(store: str, args: argparse.Namespace, lc: dict[str, Any], encoder: Any, dim: int,
                versions: dict[str, list[dict[str, Any]]], expected: dict[str, int],
                common: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-sync-{store}-"))
    name = f"bench_sync_{os.getpid()}"
    url = f"qdrant+local:{tmp / 'ours-qdrant'}" if store == "qdrant" else args.pg_url
    corpus = tmp / "corpus.jsonl"
    rows: list[dict[str, Any]] = []
    impls: list[Any] = []
    try:
        impls = [Ours(store, url, name, encoder, args, tmp),
                 LangChain(store, lc, encoder, dim, f"{name}_lc", args, tmp)]
        for i, step in enumerate(STEPS):
            write_jsonl(corpus, versions[step])
            order = impls if i % 2 == 0 else impls[::-1]
            for impl in order:
                gc.collect()
                out = impl.run(corpus)
                overhead = out["wall_s"] - out["encode_s"] - out["store_s"]
                row = {"store": store, "impl": impl.impl, "step": step, "docs": len(versions[step]),
                       "wall_s": round(out.pop("wall_s"), 3), "texts_embedded": out.pop("texts_embedded"),
                       "expected_texts": expected[step], "encode_s": round(out.pop("encode_s"), 3),
                       "store_s": round(out.pop("store_s"), 3), "overhead_s": round(overhead, 3)}
                row["overhead_pct"] = round(100 * overhead / row["wall_s"], 1) if row["wall_s"] else None
                row.update({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()})
                row["store_chunks_after"] = impl.count()
                row.update(common)
                emit(row)
                rows.append(row)
    finally:
        for impl in impls:
            try:
                impl.close()
            except Exception as exc:  # cleanup must not hide the results
                print(f"# cleanup of {impl.impl} on {store} failed: {exc}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


# ---- the summary ----------------------------------------------------------------------------------
def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def summarize(store: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = {(r["impl"], r["step"]): r for r in rows}
    ours = {s: by[("retrieval-forge", s)] for s in STEPS if ("retrieval-forge", s) in by}
    peer = {s: by[("langchain", s)] for s in STEPS if ("langchain", s) in by}
    ratios = {s: {"wall": _ratio(ours[s]["wall_s"], peer[s]["wall_s"]),
                  "wall_less_encode": _ratio(ours[s]["wall_s"] - ours[s]["encode_s"],
                                             peer[s]["wall_s"] - peer[s]["encode_s"]),
                  "texts": f"{ours[s]['texts_embedded']}/{peer[s]['texts_embedded']}"}
              for s in STEPS if s in ours and s in peer}
    first, unchanged, edit = ours.get("first"), ours.get("unchanged"), ours.get("edit")
    goals: dict[str, Any] = {}
    if first and unchanged:
        share = unchanged["wall_s"] / first["wall_s"]
        goals["unchanged_under_5pct_of_first"] = {
            "held": share < 0.05 and unchanged["texts_embedded"] == 0,
            "pct_of_first": round(100 * share, 2), "texts_embedded": unchanged["texts_embedded"]}
    if edit:
        goals["edit_embeds_only_edited_chunks"] = {
            "held": edit["texts_embedded"] == edit["expected_texts"],
            "texts_embedded": edit["texts_embedded"], "edited_chunks": edit["expected_texts"]}
    goals["never_more_embeddings_than_langchain"] = {
        "held": all(ours[s]["texts_embedded"] <= peer[s]["texts_embedded"] for s in ratios),
        **{s: ratios[s]["texts"] for s in ratios}}
    if first:
        goals["overhead_under_10pct_of_first"] = {
            "held": first["overhead_s"] < 0.10 * first["wall_s"], "overhead_s": first["overhead_s"],
            "pct_of_first": first["overhead_pct"]}
    return {"summary": True, "store": store, "docs": first["docs"] if first else None,
            "ours_over_langchain": ratios, "goals": goals}


def table(rows: list[dict[str, Any]], summaries: list[dict[str, Any]]) -> list[str]:
    by = {(r["store"], r["impl"], r["step"]): r for r in rows}
    head = (f"{'store':<9} {'step':<10} {'ours s':>8} {'LC s':>8} {'ours/LC':>7} {'ours enc':>8} {'LC enc':>8} "
            f"{'ours emb':>8} {'LC emb':>7} {'expect':>6} {'ours ovh s':>10} {'ovh %':>6} {'LC ovh s':>9} {'ovh %':>6} "
            f"{'ours del':>8} {'LC del':>6} {'ours pts':>8} {'LC pts':>7}")
    lines = [head, "-" * len(head)]
    for s in summaries:
        for step in STEPS:
            o, p = by.get((s["store"], "retrieval-forge", step)), by.get((s["store"], "langchain", step))
            if not o or not p:
                continue
            ratio = o["wall_s"] / p["wall_s"] if p["wall_s"] else float("nan")
            lines.append(
                f"{s['store']:<9} {step:<10} {o['wall_s']:>8.2f} {p['wall_s']:>8.2f} {ratio:>7.2f} "
                f"{o['encode_s']:>8.2f} {p['encode_s']:>8.2f} {o['texts_embedded']:>8} {p['texts_embedded']:>7} {o['expected_texts']:>6} "
                f"{o['overhead_s']:>10.2f} {o['overhead_pct']:>6.1f} {p['overhead_s']:>9.2f} {p['overhead_pct']:>6.1f} "
                f"{o['chunks_deleted']:>8} {p['deleted']:>6} {o['store_chunks_after']:>8} {p['store_chunks_after']:>7}")
    lines.append("")
    for s in summaries:
        for goal, v in s["goals"].items():
            detail = ", ".join(f"{k}={x}" for k, x in v.items() if k != "held")
            lines.append(f"{s['store']:<9} {goal:<40} {'HELD' if v['held'] else 'MISSED':<6} {detail}")
    return ["# " + line for line in lines]


def print_saved(path: Path) -> int:
    """The table of each run saved in ``path`` (a store's rows end with its summary; goals are recomputed;
    rows of a run that was stopped before its summary are left out)."""
    rows: list[dict[str, Any]] = []
    with open(path, encoding="utf8") as fh:
        lines = [json.loads(line) for line in fh if line.strip() and not line.startswith("#")]
    for line in lines:
        if not line.get("summary"):
            rows.append(line)
            continue
        store_rows = [r for r in rows if r["store"] == line["store"]]
        print(f"# run: {line['docs']} documents, {line['store']}, sync write batch {line.get('write_batch', 64)}")
        for text in table(store_rows, [summarize(line["store"], store_rows)]):
            print(text)
        rows = [r for r in rows if r["store"] != line["store"]]
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("SDK_DATA_DIR", REPO.parent / "shared" / "data")))
    parser.add_argument("--docs", type=int, default=None, help="first N documents of debpkg (default: all 24,809)")
    parser.add_argument("--stores", default="qdrant,pgvector", help="comma-separated: qdrant, pgvector")
    parser.add_argument("--pg-url", default=os.environ.get("SDK_TEST_POSTGRES_URL",
                                                           "postgresql://postgres@127.0.0.1:5432/sdk"))
    parser.add_argument("--model", default=None, help="dense model folder (default: packaged all-MiniLM-L6-v2)")
    parser.add_argument("--no-sparse", action=argparse.BooleanOptionalAction, default=True,
                        help="dense only, so both sides embed the same thing (the only mode LangChain matches)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32, help="model batch size, both sides")
    parser.add_argument("--write-batch", type=int, default=None,
                        help="chunks per sync write batch (default: sync's own, 64)")
    parser.add_argument("--lc-batch-size", type=int, default=100, help="index() batch_size (LangChain's default 100)")
    parser.add_argument("--fraction", type=float, default=0.01, help="share of documents edited, then deleted")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also append the JSON lines (not the table) to this file")
    parser.add_argument("--table", type=Path, default=None, metavar="JSONL",
                        help="print the table of saved JSON lines (from --out) and exit; runs nothing")
    args = parser.parse_args(argv)
    if args.table:
        return print_saved(args.table)

    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = set(stores) - {"qdrant", "pgvector"}
    if unknown:
        parser.error(f"unknown store(s) {', '.join(sorted(unknown))}; use qdrant and/or pgvector")
    if not args.no_sparse:
        parser.error("--sparse is not supported: LangChain's index() embeds one dense vector per text, so the "
                     "comparison is dense only")
    lc = import_langchain(stores)

    import torch

    from sdk.encoders.dense import DenseEncoder
    from sdk.encoders.loading import default_dense_model
    from sdk.sync.chunking import TokenChunker

    records = load_corpus(args.data, args.docs)
    versions, edited, deleted = corpus_versions(records, args.fraction, args.seed)
    encoder = DenseEncoder(args.model or default_dense_model(), device=args.device)
    dim = int(encoder.get_sentence_embedding_dimension())
    encoder.encode_document([r["text"] for r in records[:64]], batch_size=args.batch_size)  # warm-up
    expected = expected_texts(TokenChunker.from_encoder(encoder), versions, edited)
    common = {"run": time.strftime("%Y-%m-%dT%H:%M:%S"), "docs_total": len(records), "model": Path(args.model).name if args.model else "all-MiniLM-L6-v2", "device": args.device,
              "batch_size": args.batch_size, "write_batch": args.write_batch or 64,
              "lc_batch_size": args.lc_batch_size, "torch_threads": torch.get_num_threads(), "seed": args.seed,
              "edited_docs": len(edited), "deleted_docs": len(deleted)}
    out_fh = open(args.out, "a", encoding="utf8") if args.out else None

    def emit(row: dict[str, Any]) -> None:
        line = json.dumps(row)
        print(line, flush=True)
        if out_fh:
            out_fh.write(line + "\n")
            out_fh.flush()

    try:
        rows: list[dict[str, Any]] = []
        summaries = []
        for store in stores:
            store_rows = bench_store(store, args, lc, encoder, dim, versions, expected, common, emit)
            rows += store_rows
            summary = summarize(store, store_rows)
            summaries.append(summary)
            emit({**summary, **common})
        for line in table(rows, summaries):
            print(line, flush=True)
    finally:
        if out_fh:
            out_fh.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
