"""LangChain's own standard test suites (``langchain-tests``) run against the SDK's LangChain classes,
plus the SDK's LangChain contract: ``add_documents`` with LangChain documents, per-call ``k`` and
``filter``, and ``ForgeEmbeddings`` using the model's query and document prompts.

The standard retriever suite runs on the embedded Qdrant (``qdrant+local::memory:``) with the
packaged default models (all-MiniLM-L6-v2 and SPLADE-tiny); the rest runs on the exact memory
adapter with the deterministic fakes. The standard classes override no standard test (their own
``test_no_overrides_DO_NOT_OVERRIDE`` checks it); their async tests run through anyio's plugin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import EmbeddingsIntegrationTests, RetrieversIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

import sdk
from adapters.base import PayloadField
from adapters.memory import MemoryAdapter
from sdk.core.errors import ConfigError, InputError
from sdk.core.types import Eq, Range
from sdk.retrieval import RetrievalPipeline, Retriever
from sdk.retrieval.langchain import ForgeEmbeddings, LangChainRetriever, content_id, from_langchain
from tests.unit.retrieval_fakes import FakeDense, FakeSparse, fake_documents

CORPUS = [
    LCDocument(page_content="Install a Debian package with apt-get install or apt install.",
               metadata={"source": "debian", "n": 1}, id="deb-install"),
    LCDocument(page_content="Remove a package and its configuration files with apt purge.",
               metadata={"source": "debian", "n": 2}, id="deb-purge"),
    LCDocument(page_content="A Python tuple is an immutable sequence; a list can change.",
               metadata={"source": "python", "n": 3}, id="py-tuple"),
    LCDocument(page_content="Install Python packages into a virtual environment with pip install.",
               metadata={"source": "python", "n": 4}),
    LCDocument(page_content="Vector databases store embeddings and search them by similarity.",
               metadata={"source": "vectors", "n": 5}),
    LCDocument(page_content="Encode text as UTF-8 bytes with str.encode in Python 3.", metadata={}),
]
QUERY = "how do I install a package?"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # the standard suites' async tests, on asyncio only


@pytest.fixture(scope="module")
def qdrant_pipeline(minilm: Any) -> Iterator[RetrievalPipeline]:
    """Hybrid pipeline on the embedded Qdrant, filled through ``LangChainRetriever.add_documents``."""
    pipe = RetrievalPipeline(minilm, sdk.SparseEncoder(device="cpu"), store="qdrant+local::memory:",
                             collection="lc_standard", limit=4, payload=(PayloadField("source", "keyword"),))
    try:
        Retriever(pipe).as_langchain().add_documents(CORPUS)
        yield pipe
    finally:
        pipe.close()


@pytest.fixture
def pipe() -> RetrievalPipeline:
    return RetrievalPipeline(FakeDense(), FakeSparse(), store=MemoryAdapter(), collection="docs", limit=5,
                             payload=(PayloadField("kind", "keyword"), PayloadField("n", "int")))


# ---- LangChain's standard suites ----------------------------------------------------------------

@pytest.mark.anyio
class TestLangChainRetrieverStandard(RetrieversIntegrationTests):
    """``RetrieversIntegrationTests``: ``k`` in the constructor and in ``invoke``, documents back, async."""

    @pytest.fixture(autouse=True)
    def _bind(self, qdrant_pipeline: RetrievalPipeline) -> None:
        self.pipeline = qdrant_pipeline

    @property
    def retriever_constructor(self) -> type[BaseRetriever]:
        return LangChainRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"retriever": Retriever(self.pipeline)}

    @property
    def retriever_query_example(self) -> str:
        return QUERY


class TestForgeEmbeddingsUnit(EmbeddingsUnitTests):
    """``EmbeddingsUnitTests``: builds with no model argument (the packaged all-MiniLM-L6-v2).

    ``init_from_env_params`` stays empty: ForgeEmbeddings runs local models and reads nothing from
    the environment (no API key), so the suite's environment test has nothing to set.
    """

    @property
    def embeddings_class(self) -> type[ForgeEmbeddings]:
        return ForgeEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"device": "cpu"}


@pytest.mark.anyio
class TestForgeEmbeddingsStandard(EmbeddingsIntegrationTests):
    """``EmbeddingsIntegrationTests`` on the real all-MiniLM-L6-v2 (loaded once per session)."""

    @pytest.fixture(autouse=True)
    def _bind(self, minilm: Any) -> None:
        self.encoder = minilm

    @property
    def embeddings_class(self) -> type[ForgeEmbeddings]:
        return ForgeEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"encoder": self.encoder}


# ---- add_documents with LangChain documents -----------------------------------------------------

def test_round_trip_on_qdrant_keeps_ids_text_and_metadata(qdrant_pipeline: RetrievalPipeline) -> None:
    lc = Retriever(qdrant_pipeline).as_langchain()
    want = {d.id or content_id(d.page_content, d.metadata): d for d in CORPUS}
    assert qdrant_pipeline.adapter.count("lc_standard") == len(CORPUS)
    for query in (QUERY, "python tuple", "utf-8 bytes", "embeddings similarity"):
        for got in lc.invoke(query, k=len(CORPUS)):
            source = want[got.id]
            assert got.page_content == source.page_content
            assert {k: got.metadata[k] for k in source.metadata} == source.metadata
            assert got.metadata["id"] == got.id and isinstance(got.metadata["score"], float)
    top = lc.invoke("remove a package with apt purge", k=1)
    assert [d.id for d in top] == ["deb-purge"]
    narrowed = lc.invoke(QUERY, k=6, filter=Eq("source", "python"))
    assert narrowed and {d.metadata["source"] for d in narrowed} == {"python"}


def test_documents_without_an_id_get_a_deterministic_content_id(pipe: RetrievalPipeline) -> None:
    lc = Retriever(pipe).as_langchain()
    docs = [LCDocument(page_content="python tuple", metadata={"kind": "odd", "n": 1}),
            LCDocument(page_content="python tuple", metadata={"kind": "even", "n": 1}),
            LCDocument(page_content="python list", metadata={"kind": "odd", "n": 1}, id="")]  # empty = none
    ids = lc.add_documents(docs)
    assert ids == [content_id(d.page_content, d.metadata) for d in docs]
    assert len(set(ids)) == 3 and all(i.startswith("lc-") and len(i) == 35 for i in ids)
    assert content_id("python tuple", {"n": 1, "kind": "odd"}) == ids[0]  # key order does not matter
    assert lc.add_documents(list(reversed(docs))) == list(reversed(ids))  # same documents, same ids
    assert pipe.adapter.count("docs") == 3  # re-adding overwrote instead of duplicating
    assert {d.id for d in lc.invoke("python", k=3)} == set(ids)


def test_ids_argument_wins_and_bad_input_writes_nothing(pipe: RetrievalPipeline) -> None:
    lc = Retriever(pipe).as_langchain()
    docs = [LCDocument(page_content=d.text, metadata=dict(d.metadata), id=f"own-{d.id}") for d in fake_documents(6)]
    assert lc.add_documents(docs[:3]) == ["own-d000", "own-d001", "own-d002"]
    assert lc.add_documents(docs[3:], ids=["x3", "x4", "x5"]) == ["x3", "x4", "x5"]
    assert sorted(pipe.adapter.ids("docs")) == ["own-d000", "own-d001", "own-d002", "x3", "x4", "x5"]
    with pytest.raises(InputError, match="one id per document"):
        lc.add_documents(docs, ids=["a", "b"])
    with pytest.raises(InputError, match="ids must be strings"):
        lc.add_documents(docs[:1], ids=[7])  # type: ignore[list-item]
    with pytest.raises(InputError, match=r"documents\[1\].*not a LangChain Document"):
        lc.add_documents([docs[0], {"id": "m", "text": "a mapping"}])
    assert pipe.adapter.count("docs") == 6


def test_from_langchain_feeds_the_pipeline_and_aadd_documents(pipe: RetrievalPipeline) -> None:
    docs = [LCDocument(page_content=d.text, metadata=dict(d.metadata), id=d.id) for d in fake_documents(10)]
    assert pipe.add_documents(from_langchain(docs[:5])) == 5
    lc = Retriever(pipe).as_langchain()
    assert asyncio.run(lc.aadd_documents(docs[5:])) == [d.id for d in docs[5:]]
    stored = pipe.adapter.get("docs", ["d003", "d008"])
    assert [(r.id, r.text, dict(r.metadata)) for r in stored] == \
        [(d.id, d.page_content, d.metadata) for d in (docs[3], docs[8])]


# ---- per-call k and filter ----------------------------------------------------------------------

def test_k_and_filter_per_call_on_both_retrievers(pipe: RetrievalPipeline) -> None:
    pipe.add_documents(fake_documents())
    odd = Retriever(pipe, k=4, filter=Eq("kind", "odd"))
    assert len(odd.invoke("python tuple")) == 4 and len(odd.invoke("python tuple", k=2)) == 2
    assert [len(r) for r in odd.batch(["python tuple", "install debian"], k=1)] == [1, 1]
    assert len(asyncio.run(odd.ainvoke("python tuple", k=3))) == 3
    both = odd.invoke("python tuple", k=10, filter=Range("n", lt=20))  # narrows, keeps the retriever's
    assert both and all(d.metadata["kind"] == "odd" and d.metadata["n"] < 20 for d in both)
    lc = odd.as_langchain(k=3)
    assert len(lc.invoke("python tuple")) == 3 and len(lc.invoke("python tuple", k=1)) == 1
    assert len(asyncio.run(lc.ainvoke("python tuple", k=2))) == 2
    assert all(d.metadata["n"] < 20 for d in lc.invoke("python tuple", filter=Range("n", lt=20)))
    assert [len(r) for r in lc.batch(["python tuple", "install debian"], k=2)] == [2, 2]
    with pytest.raises(InputError, match="only k= and filter="):
        lc.invoke("python tuple", top_k=1)
    with pytest.raises(InputError, match="positive integer"):
        odd.invoke("python tuple", k=0)
    with pytest.raises(ConfigError, match="positive integer"):
        odd.as_langchain(k=0)


# ---- ForgeEmbeddings ----------------------------------------------------------------------------

class _Spy:
    """Forwards to a real encoder and records each call's role and keywords."""

    def __init__(self, encoder: Any) -> None:
        self.encoder, self.calls = encoder, []
        self.get_sentence_embedding_dimension = encoder.get_sentence_embedding_dimension

    def encode_query(self, texts: Any, **kw: Any) -> Any:
        self.calls.append(("query", len(texts), kw))
        return self.encoder.encode_query(texts, **kw)

    def encode_document(self, texts: Any, **kw: Any) -> Any:
        self.calls.append(("document", len(texts), kw))
        return self.encoder.encode_document(texts, **kw)


def test_embeddings_use_the_query_and_document_prompts(tiny_bert: Any) -> None:
    spy = _Spy(tiny_bert)
    emb = ForgeEmbeddings(spy, batch_size=2)
    texts = ["install a debian package", "python tuple", "vector search"]
    docs, query = emb.embed_documents(texts), emb.embed_query("python tuple")
    assert spy.calls == [("document", 3, {"batch_size": 2, "normalize_embeddings": False}),
                         ("query", 1, {"batch_size": 2, "normalize_embeddings": False})]
    np.testing.assert_allclose(docs, tiny_bert.encode_document(texts), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(query, tiny_bert.encode_query("python tuple"), rtol=1e-5, atol=1e-6)
    assert not np.allclose(query, docs[1])  # "query: " vs "passage: " prompt
    assert asyncio.run(emb.aembed_documents(texts)) == docs and asyncio.run(emb.aembed_query("python tuple")) == query
    assert emb.embed_documents([]) == []


def test_embeddings_normalize_and_refusals(tiny_bert_dir: Path, tiny_bert: Any) -> None:
    raw = ForgeEmbeddings(model_name_or_path=tiny_bert_dir, device="cpu", truncate_dim=8)
    assert len(raw.embed_query("python")) == 8
    unit = ForgeEmbeddings(model_name_or_path=tiny_bert_dir, device="cpu", truncate_dim=8, normalize=True)
    assert np.linalg.norm(unit.embed_documents(["python tuple"])[0]) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ConfigError, match="not both"):
        ForgeEmbeddings(tiny_bert, model_name_or_path=tiny_bert_dir)
    with pytest.raises(ConfigError, match="batch_size"):
        ForgeEmbeddings(tiny_bert, batch_size=0)
    with pytest.raises(ConfigError, match="DenseEncoder"):
        ForgeEmbeddings(FakeSparse())
    with pytest.raises(InputError, match="list of strings"):
        ForgeEmbeddings(tiny_bert).embed_documents("one string")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        ForgeEmbeddings(tiny_bert).embed_documents(["ok", 3])  # type: ignore[list-item]


def test_embeddings_back_a_langchain_vector_store(minilm: Any) -> None:
    store = InMemoryVectorStore(embedding=ForgeEmbeddings(minilm))
    store.add_documents(CORPUS)
    assert store.similarity_search("remove a package with apt purge", k=1)[0].id == "deb-purge"


def test_facade_exposes_the_langchain_names() -> None:
    assert sdk.ForgeEmbeddings is ForgeEmbeddings and sdk.LangChainRetriever is LangChainRetriever
