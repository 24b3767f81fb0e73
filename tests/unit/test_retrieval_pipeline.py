"""RetrievalPipeline and Retriever on the exact memory adapter with deterministic fake encoders."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

import sdk
from adapters.base import PayloadField
from adapters.memory import MEMORY_CAPABILITIES, MemoryAdapter
from sdk.core.errors import CapabilityError, ConfigError, DimensionMismatchError, InputError
from sdk.core.fusion import rrf_fuse
from sdk.core.types import Eq, Fusion, FusionMethod, HybridQuery
from sdk.retrieval import RetrievalPipeline, RetrievedDocument, Retriever, SearchResult
from tests.unit.retrieval_fakes import FakeDense, FakeReranker, FakeSparse, fake_documents

PAYLOAD = (PayloadField("kind", "keyword"), PayloadField("n", "int"))
QUERIES = ["python tuple", "install debian package", "search vector database", "unicode encoding strings"]


class _Limited(MemoryAdapter):
    """The memory reference with narrower capabilities, to exercise refusals and the fallback."""

    def __init__(self, **caps: Any) -> None:
        super().__init__()
        self._caps = replace(MEMORY_CAPABILITIES, **caps)

    @property
    def capabilities(self) -> Any:
        return self._caps


@pytest.fixture
def store() -> MemoryAdapter:
    return MemoryAdapter()


@pytest.fixture
def pipe(store: MemoryAdapter) -> RetrievalPipeline:
    p = RetrievalPipeline(FakeDense(), FakeSparse(), store=store, collection="docs", payload=PAYLOAD, limit=5,
                          candidate_limits={"dense": 20, "sparse": 20})
    assert p.add_documents(fake_documents()) == 60
    return p


def test_lazy_exports() -> None:
    assert sdk.RetrievalPipeline is RetrievalPipeline and sdk.Retriever is Retriever


def test_add_documents_encodes_both_fields_and_creates_the_collection(pipe: RetrievalPipeline,
                                                                      store: MemoryAdapter) -> None:
    spec = store.describe("docs")
    assert [f.name for f in spec.dense] == ["dense"] and [f.name for f in spec.sparse] == ["sparse"]
    rec = store.get("docs", ["d007"])[0]
    np.testing.assert_allclose(rec.vectors["dense"], FakeDense().encode_document(rec.text), rtol=1e-6)
    assert rec.sparse["sparse"] == FakeSparse().encode_document(rec.text) and rec.metadata["n"] == 7
    assert pipe.add_documents([{"id": "d007", "text": "replaced text", "metadata": {"kind": "odd", "n": 7}}]) == 1
    assert store.count("docs") == 60 and store.get("docs", ["d007"])[0].text == "replaced text"
    with pytest.raises(InputError, match="Document"):
        pipe.add_documents(["just a string"])


def test_hybrid_search_is_one_native_query_equal_to_reference_rrf(pipe: RetrievalPipeline,
                                                                  store: MemoryAdapter) -> None:
    calls: list[HybridQuery] = []
    original = store.query
    store.query = lambda c, q, **kw: calls.append(q) or original(c, q, **kw)  # type: ignore[method-assign]
    for text in QUERIES:
        calls.clear()
        got = pipe.search(text)
        assert isinstance(got, SearchResult) and got.fusion == "native" and len(calls) == 1
        q = calls[0]
        assert q.dense is not None and q.sparse is not None and q.limit == 5
        legs = {"dense": [h.id for h in original("docs", HybridQuery(dense=q.dense, limit=20))],
                "sparse": [h.id for h in original("docs", HybridQuery(sparse=q.sparse, limit=20))]}
        assert [h.id for h in got] == [d for d, _ in rrf_fuse(legs, k=60, limit=5)]
        assert set(got.timings) == {"encode_dense", "encode_sparse", "query", "total"}
        assert all(h.scores_by_stage == {"fused": h.score} for h in got)


def test_filter_and_limit_reach_the_query(pipe: RetrievalPipeline) -> None:
    got = pipe.search("python tuple", filter=Eq("kind", "odd"), limit=8)
    assert len(got) == 8 and all(h.metadata["kind"] == "odd" for h in got)
    filtered = RetrievalPipeline(FakeDense(), FakeSparse(), store=pipe.adapter, collection="docs",
                                 filter=Eq("kind", "even"))
    assert all(h.metadata["kind"] == "even" for h in filtered.search("python tuple"))


def test_single_legs(store: MemoryAdapter, pipe: RetrievalPipeline) -> None:
    dense = RetrievalPipeline(FakeDense(), store=store, collection="docs").search("python tuple")
    sparse = RetrievalPipeline(None, FakeSparse(), store=store, collection="docs").search("python tuple")
    assert dense.fusion == sparse.fusion == "none"
    assert set(dense[0].scores_by_stage) == {"dense"} and set(sparse[0].scores_by_stage) == {"sparse"}


def test_rerank_reorders_top_n_and_keeps_the_rest(store: MemoryAdapter, pipe: RetrievalPipeline) -> None:
    reranker = FakeReranker()
    rr = RetrievalPipeline(FakeDense(), FakeSparse(), store=store, collection="docs", reranker=reranker,
                           rerank_top=6, limit=10)
    base = RetrievalPipeline(FakeDense(), FakeSparse(), store=store, collection="docs", limit=10)
    for text in QUERIES:
        got, fused = rr.search(text), base.search(text)
        head = fused[:6]
        want = reranker.predict([(text, h.text) for h in head])
        order = sorted(range(6), key=lambda i: -want[i])
        assert [h.id for h in got[:6]] == [head[i].id for i in order]
        assert [h.id for h in got[6:]] == [h.id for h in fused[6:10]]
        assert all(set(h.scores_by_stage) == {"fused", "rerank"} for h in got[:6]) and "rerank" in got.timings
    assert reranker.calls >= 2 * len(QUERIES) - len(QUERIES)


def test_search_batch_and_async_equal_search(pipe: RetrievalPipeline) -> None:
    single = [pipe.search(q) for q in QUERIES]
    batch = pipe.search_batch(QUERIES)

    async def run() -> list[Any]:
        return list(await asyncio.gather(*(pipe.asearch(q) for q in QUERIES)))

    for a, b, c in zip(single, batch, asyncio.run(run()), strict=True):
        assert [h.id for h in a] == [h.id for h in b] == [h.id for h in c]
        assert [h.score for h in a] == [h.score for h in c]
    assert [[h.id for h in r] for r in asyncio.run(pipe.asearch_batch(QUERIES))] == [[h.id for h in r] for r in single]
    with pytest.raises(InputError):
        pipe.search("  ")


def test_refusals_at_construction() -> None:
    weaviate_like = _Limited(sparse=False, text_leg=True, fusions=frozenset({FusionMethod.RRF}), rrf_k=59)
    with pytest.raises(CapabilityError, match="text_leg=True"):
        RetrievalPipeline(FakeDense(), FakeSparse(), store=weaviate_like, collection="c")
    p = RetrievalPipeline(FakeDense(), store=weaviate_like, collection="c", text_leg=True)
    assert p.fusion == Fusion(k=59) and p.fusion_mode == "native"  # the store's own fixed k by default
    with pytest.raises(CapabilityError, match="client_fusion=True"):
        RetrievalPipeline(FakeDense(), store=weaviate_like, collection="c", text_leg=True, fusion=Fusion(k=60))
    with pytest.raises(CapabilityError, match="BM25"):
        RetrievalPipeline(FakeDense(), store=MemoryAdapter(), collection="c", text_leg=True)
    no_weights = _Limited(fusions=frozenset({FusionMethod.RRF}), rrf_weights=False)
    with pytest.raises(CapabilityError, match="per-leg weights"):
        RetrievalPipeline(FakeDense(), FakeSparse(), store=no_weights, collection="c",
                          fusion=Fusion(weights={"dense": 2.0}))
    with pytest.raises(ConfigError):
        RetrievalPipeline(store=MemoryAdapter(), collection="c")
    with pytest.raises(ConfigError, match="CrossEncoder"):
        RetrievalPipeline(FakeDense(), store=MemoryAdapter(), collection="c", reranker=object())
    with pytest.raises(ConfigError, match="adapter"):
        RetrievalPipeline(FakeDense(), store=42, collection="c")


def test_client_fusion_fallback_is_flagged_and_equals_native_reference() -> None:
    rrf_only = _Limited(fusions=frozenset({FusionMethod.RRF}))
    reference = MemoryAdapter()
    kwargs = {"collection": "docs", "payload": PAYLOAD, "fusion": Fusion(method=FusionMethod.WEIGHTED),
              "candidate_limits": {"dense": 30, "sparse": 30}, "limit": 7}
    fallback = RetrievalPipeline(FakeDense(), FakeSparse(), store=rrf_only, client_fusion=True, **kwargs)
    native = RetrievalPipeline(FakeDense(), FakeSparse(), store=reference, **kwargs)
    assert fallback.fusion_mode == "client" and native.fusion_mode == "native"
    assert "client_fusion" in fallback.capabilities.emulated and FusionMethod.WEIGHTED in fallback.capabilities.fusions
    assert "client_fusion" not in rrf_only.capabilities.emulated  # the store's own value is untouched
    for p in (fallback, native):
        p.add_documents(fake_documents())
    for text in QUERIES:
        got, want = fallback.search(text), native.search(text)
        assert got.fusion == "client"
        # same fused scores in the same order; equal scores may list their ids in another order
        np.testing.assert_allclose([h.score for h in got], [h.score for h in want], rtol=1e-9)
        cut = want[-1].score
        assert {h.id for h in got if h.score > cut + 1e-12} == {h.id for h in want if h.score > cut + 1e-12}
        assert all({"fused"} < set(h.scores_by_stage) <= {"fused", "dense", "sparse"} for h in got)


def test_existing_collection_must_fit_the_encoders(pipe: RetrievalPipeline, store: MemoryAdapter) -> None:
    class Wider(FakeDense):
        def get_sentence_embedding_dimension(self) -> int:
            return 64

    with pytest.raises(DimensionMismatchError, match="48-d"):
        RetrievalPipeline(Wider(), store=store, collection="docs")


def test_store_url_is_owned_and_closed() -> None:
    with RetrievalPipeline(FakeDense(), store="memory://", collection="c") as p:
        p.add_documents(fake_documents(5))
        assert len(p.search("python")) == 5
        assert p.drop() and not p.drop()


# ---- Retriever ------------------------------------------------------------------------------
def test_retriever_invoke_ainvoke_batch(pipe: RetrievalPipeline) -> None:
    r = Retriever(pipe, k=3)
    docs = r.invoke("python tuple")
    assert len(docs) == 3 and all(isinstance(d, RetrievedDocument) for d in docs)
    hits = pipe.search("python tuple", limit=3)
    assert [d.metadata["id"] for d in docs] == [h.id for h in hits]
    assert docs[0].page_content == hits[0].text and docs[0].metadata["score"] == hits[0].score
    assert docs[0].metadata["scores_by_stage"] == dict(hits[0].scores_by_stage) and "kind" in docs[0].metadata
    assert len({d.metadata["search_id"] for d in docs}) == 1  # the search's id, for feedback

    def plain(found: list[RetrievedDocument]) -> list[Any]:  # each search has its own search_id
        return [(d.page_content, {k: v for k, v in d.metadata.items() if k != "search_id"}, d.id) for d in found]

    assert plain(asyncio.run(r.ainvoke("python tuple"))) == plain(docs)
    assert plain(r.batch(["python tuple", {"query": "install debian"}])[0]) == plain(docs)
    assert plain(asyncio.run(r.abatch(["python tuple"]))[0]) == plain(docs)
    odd = Retriever(pipe, k=4, filter=Eq("kind", "odd")).invoke("python tuple")
    assert len(odd) == 4 and all(d.metadata["kind"] == "odd" for d in odd)
    with pytest.raises(InputError):
        r.invoke("")
    with pytest.raises(ConfigError):
        Retriever(object())


def test_langchain_retriever_in_a_runnable_chain(pipe: RetrievalPipeline) -> None:
    pytest.importorskip("langchain_core", reason="the langchain extra is not installed")
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables import RunnableLambda

    retriever = Retriever(pipe, k=3)
    lc = retriever.as_langchain()
    assert isinstance(lc, BaseRetriever)
    chain = lc | RunnableLambda(lambda docs: [(d.id, d.page_content, d.metadata["score"]) for d in docs])
    want = [(d.id, d.page_content, d.metadata["score"]) for d in retriever.invoke("python tuple")]
    assert chain.invoke("python tuple") == want
    assert asyncio.run(chain.ainvoke("python tuple")) == want
    assert [len(x) for x in chain.batch(["python tuple", "install debian"])] == [3, 3]
    with pytest.raises(TypeError):
        type(lc)(retriever="not a retriever")
