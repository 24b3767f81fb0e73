"""On database servers the query-time guard reads the stored spec beside the search (issue 18), and
still refuses a collection rebuilt by another model or an alias moved to another model's version,
on ``search`` and on ``asearch`` (the native async twin), while an alias moved to another version
built by the same model is searched where it points now.

The same scenarios on the memory reference and Qdrant local mode (read first, no overlap):
tests/unit/test_pipeline_guard.py; the overlap logic alone: tests/unit/test_guard_overlap.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from adapters import connect
from sdk.core.errors import SchemaMismatchError
from sdk.core.types import Document
from sdk.retrieval import RetrievalPipeline
from tests.unit.retrieval_fakes import FakeDense

DOCS = [Document(f"d{i}", text) for i, text in enumerate(
    ["how do i install a python package", "what is a tuple", "debian package search", "vector database query"])]


class Model(FakeDense):
    """The fake encoder under a fingerprint of its own: two of them are two models of one width."""

    def __init__(self, name: str) -> None:
        self.name = name

    def fingerprint(self) -> str:
        return f"fake:{self.name}"


@pytest.fixture(params=["postgres", "milvus", "weaviate"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    adapter = connect(request.getfixturevalue(f"{request.param}_url"))
    assert adapter._overlap_guard(), "this engine should read the spec beside the search"
    adapter.made = {"collections": [], "aliases": []}  # type: ignore[attr-defined]
    try:
        yield adapter
    finally:
        for alias in adapter.made["aliases"]:
            adapter.delete_alias(alias)
        for collection in adapter.made["collections"]:
            adapter.drop(collection)
        adapter.close()


def name(store: Any, stem: str, kind: str = "collections") -> str:
    out = f"{stem}_{uuid.uuid4().hex[:8]}"
    store.made[kind].append(out)
    return out


def ids(reader: RetrievalPipeline, *, aio: bool = False) -> list[str]:
    hits = asyncio.run(reader.asearch("python package")) if aio else reader.search("python package")
    return sorted(h.id for h in hits)


def test_a_collection_rebuilt_by_another_model_is_refused(store: Any) -> None:
    kb = name(store, "kb")
    reader = RetrievalPipeline(Model("a"), store=store, collection=kb)
    reader.add_documents(DOCS)
    assert ids(reader) == ids(reader, aio=True) == sorted(d.id for d in DOCS)
    store.drop(kb)
    RetrievalPipeline(Model("b"), store=store, collection=kb).add_documents(DOCS)  # same width, other vectors
    with pytest.raises(SchemaMismatchError, match="encoder"):
        reader.search("python package")
    with pytest.raises(SchemaMismatchError, match="encoder"):
        asyncio.run(reader.asearch("python package"))


def test_an_alias_moved_to_another_version_is_followed_or_refused(store: Any) -> None:
    alias, v1, v2, v3 = name(store, "kb", "aliases"), name(store, "kb_v1"), name(store, "kb_v2"), name(store, "kb_v3")
    RetrievalPipeline(Model("a"), store=store, collection=v1).add_documents(DOCS[:2])
    store.switch_alias(alias, v1)
    reader = RetrievalPipeline(Model("a"), store=store, collection=alias)
    assert ids(reader) == ["d0", "d1"]
    RetrievalPipeline(Model("a"), store=store, collection=v2).add_documents(DOCS[2:])
    store.switch_alias(alias, v2)  # same model, another version: the reader follows it
    assert ids(reader) == ids(reader, aio=True) == ["d2", "d3"]
    RetrievalPipeline(Model("b"), store=store, collection=v3).add_documents(DOCS)
    store.switch_alias(alias, v3)
    with pytest.raises(SchemaMismatchError, match="encoder"):
        reader.search("python package")
    with pytest.raises(SchemaMismatchError, match="encoder"):
        asyncio.run(reader.asearch("python package"))
