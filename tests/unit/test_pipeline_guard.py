"""The pipeline refuses documents without their own ids, and collections built for other vectors.

Two real (tiny, locally built) models of the same width are used, so the only thing that tells
them apart is the fingerprint the collection stores: a width check alone would let them mix. The
guard is tested at construction and at query time (every query passes ``expect=``, so a
collection rebuilt or an alias moved after the pipeline was built is refused too), on the memory
reference and on Qdrant local mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdk.core.errors import InputError, SchemaMismatchError, SimilarityMismatchError
from sdk.core.registry import connect
from sdk.core.types import Document
from sdk.retrieval import RetrievalPipeline
from sdk.retrieval.pipeline import encoder_id
from tests.conftest import build_tiny_bert
from tests.unit.retrieval_fakes import FakeDense

DOCS = [Document(f"d{i}", text) for i, text in enumerate(
    ["how do i install a python package", "what is a tuple", "debian package search", "vector database query"])]


@pytest.fixture(scope="module")
def bert24_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BERT model projected to 24 dimensions: as wide as the tiny MPNet, other weights entirely."""
    return build_tiny_bert(tmp_path_factory.mktemp("bert24"), dense_out=24)


@pytest.fixture(scope="module")
def models(tiny_mpnet_dir: Path, bert24_dir: Path) -> dict[str, Any]:
    from sdk.encoders.dense import DenseEncoder

    out = {
        "mpnet": DenseEncoder(tiny_mpnet_dir, device="cpu", similarity_fn_name="cosine"),
        "mpnet_dot": DenseEncoder(tiny_mpnet_dir, device="cpu"),  # its saved similarity: dot
        "bert": DenseEncoder(bert24_dir, device="cpu"),
    }
    widths = {name: m.get_sentence_embedding_dimension() for name, m in out.items()}
    assert set(widths.values()) == {24}, widths
    assert out["mpnet_dot"].similarity_fn_name.value == "dot" and out["bert"].similarity_fn_name.value == "cosine"
    return out


@pytest.fixture(params=["memory://", "qdrant+local::memory:"], ids=["memory", "qdrant_local"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    adapter = connect(request.param)
    yield adapter
    adapter.close()


# ---- ids --------------------------------------------------------------------------------------
@pytest.mark.parametrize("doc_id", [None, 1, 1.0, "", b"a"], ids=["none", "int", "float", "empty", "bytes"])
def test_a_mapping_without_a_string_id_is_refused_before_anything_is_created(doc_id: Any) -> None:
    store = connect("memory://")
    pipe = RetrievalPipeline(FakeDense(), store=store, collection="docs")
    docs = [{"id": "ok", "text": "fine"}, {"id": doc_id, "text": "no id"}]
    with pytest.raises(InputError, match=r"document 1 has .*string id"):
        pipe.add_documents(docs)
    with pytest.raises(InputError, match="document 0 has no id"):
        pipe.add_documents([{"text": "a"}, {"text": "b"}])  # the old str() made both "None": one document
    assert not store.exists("docs")


def test_ids_are_unique_within_one_call_and_never_collapse() -> None:
    store = connect("memory://")
    pipe = RetrievalPipeline(FakeDense(), store=store, collection="docs")
    with pytest.raises(InputError, match="documents 0 and 2 both have the id 'a'"):
        pipe.add_documents([{"id": "a", "text": "x"}, Document("b", "y"), {"id": "a", "text": "z"}])
    assert not store.exists("docs")
    with pytest.raises(InputError, match="metadata of type list"):
        pipe.add_documents([{"id": "a", "text": "x", "metadata": [("k", 1)]}])
    assert pipe.add_documents([{"id": "1", "text": "one"}, {"id": "01", "text": "zero one"}, Document("a", "x")]) == 3
    assert sorted(store.ids("docs")) == ["01", "1", "a"]


# ---- the collection guard -----------------------------------------------------------------------
def test_the_stored_fingerprint_is_the_real_one(models: dict[str, Any], tiny_mpnet_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    mpnet, bert = models["mpnet"], models["bert"]
    assert encoder_id(mpnet) == mpnet.fingerprint() != encoder_id(bert)
    assert encoder_id(mpnet) != encoder_id(models["mpnet_dot"])  # the similarity shapes the vectors' use
    # a torch model without fingerprint(): hashed from its weights and settings, not named by its class
    st_model = SentenceTransformer(str(tiny_mpnet_dir), device="cpu")
    other = SentenceTransformer(str(tiny_mpnet_dir), device="cpu")
    assert encoder_id(st_model) == encoder_id(other) != "SentenceTransformer"
    with __import__("torch").no_grad():
        next(other.parameters()).add_(1.0)
    assert encoder_id(other) != encoder_id(st_model)


def test_another_model_of_the_same_width_is_refused_at_construction(store: Any, models: dict[str, Any]) -> None:
    built = RetrievalPipeline(models["mpnet"], store=store, collection="kb")
    built.add_documents(DOCS)
    assert store.describe("kb").encoder == f"dense={models['mpnet'].fingerprint()}"
    with pytest.raises(SchemaMismatchError, match="another dense encoder"):
        RetrievalPipeline(models["bert"], store=store, collection="kb")
    with pytest.raises(SimilarityMismatchError, match="by cosine but the dense encoder's similarity is dot"):
        RetrievalPipeline(models["mpnet_dot"], store=store, collection="kb")
    assert len(RetrievalPipeline(models["mpnet"], store=store, collection="kb").search("python package")) == 4


def test_a_collection_rebuilt_by_another_model_is_refused_at_query_time(store: Any, models: dict[str, Any]) -> None:
    reader = RetrievalPipeline(models["mpnet"], store=store, collection="kb", limit=2)
    reader.add_documents(DOCS)
    assert [h.id for h in reader.search("python package")]
    for other, error in (("bert", SchemaMismatchError), ("mpnet_dot", SimilarityMismatchError)):
        store.drop("kb")  # rebuilt under the reader's feet: same name, same width, other vectors
        RetrievalPipeline(models[other], store=store, collection="kb").add_documents(DOCS)
        with pytest.raises(error):
            reader.search("python package")
        with pytest.raises(error):  # batches go through the same guard
            reader.search_batch(["python package", "tuple"])
    store.drop("kb")
    reader.add_documents(DOCS)  # the reader's own model again: its searches work again
    assert len(reader.search("python package")) == 2


def test_an_alias_moved_to_another_models_version_is_refused(store: Any, models: dict[str, Any]) -> None:
    RetrievalPipeline(models["mpnet"], store=store, collection="kb_v1").add_documents(DOCS)
    store.switch_alias("kb", "kb_v1")
    reader = RetrievalPipeline(models["mpnet"], store=store, collection="kb")
    first = [h.id for h in reader.search("debian package")]
    RetrievalPipeline(models["mpnet"], store=store, collection="kb_v2").add_documents(DOCS[::-1])
    store.switch_alias("kb", "kb_v2")  # same model, another version (a re-chunk): still searchable
    assert sorted(h.id for h in reader.search("debian package")) == sorted(first)
    RetrievalPipeline(models["bert"], store=store, collection="kb_v3").add_documents(DOCS)
    store.switch_alias("kb", "kb_v3")
    with pytest.raises(SchemaMismatchError, match="encoder"):
        reader.search("debian package")
    with pytest.raises(SchemaMismatchError, match="another dense encoder"):
        RetrievalPipeline(models["mpnet"], store=store, collection="kb")
