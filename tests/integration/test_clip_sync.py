"""Images through a real engine: ``sdk sync`` of a folder of generated images with a (tiny random) CLIP
model, then text queries that find the image documents, on embedded Qdrant and Milvus Lite (or their
servers). The weights are random, so what is checked is that the engine holds each image's own vector
and ranks the images exactly as the cosine of the query and image vectors does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sdk.core.registry import connect
from sdk.encoders.dense import DenseEncoder
from sdk.retrieval.pipeline import RetrievalPipeline
from sdk.sync import Ledger, status, sync
from tests.clip_fixtures import build_raw_clip, draw

FILES = {"red.png": ("red", "square"), "shapes/green.jpg": ("green", "circle"), "shapes/blue.webp": ("blue", "square"),
         "shapes/deep/yellow.gif": ("yellow", "circle"), "red-circle.bmp": ("red", "circle")}
QUERIES = ["a red square", "blue", "a green circle on white"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> DenseEncoder:
    """A bare transformers CLIP folder (what openai/clip-* repositories hold), loaded as one CLIP module."""
    return DenseEncoder(build_raw_clip(tmp_path_factory.mktemp("clip")), device="cpu")


@pytest.fixture(params=["qdrant_url", "milvus_url"], ids=lambda f: f.removesuffix("_url"))
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    adapter = connect(request.getfixturevalue(request.param))
    yield adapter
    adapter.close()


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    for name, (colour, shape) in FILES.items():
        path = tmp_path / "photos" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        draw(colour, shape).save(path)
    return tmp_path / "photos"


def _cosine(query: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return rows @ query / (np.linalg.norm(rows, axis=1) * np.linalg.norm(query))


def test_text_queries_find_synced_images(store: Any, photos: Path, clip: DenseEncoder, tmp_path: Path) -> None:
    name = f"clip_{uuid.uuid4().hex[:10]}"
    book = Ledger.open(tmp_path / "ledger.sqlite", key=name)
    try:
        report = sync(photos, store, name, dense=clip, sparse=False, ledger=book, progress=False)
        assert (report.added, report.chunks_written) == (len(FILES), len(FILES))
        pipeline = RetrievalPipeline(clip, None, store=store, collection=name, limit=len(FILES))
        try:
            for query in QUERIES:
                _check_ranking(pipeline, clip, photos, query)
            draw("blue", "circle").save(photos / "red.png")  # new bytes under the same name
            again = sync(photos, store, name, dense=clip, sparse=False, ledger=book, progress=False)
            assert (again.updated, again.unchanged, again.chunks_encoded) == (1, len(FILES) - 1, 1)
            _check_ranking(pipeline, clip, photos, "blue")
        finally:
            pipeline.close()
        assert status(store, name, ledger=book)["documents"] == len(FILES)
    finally:
        _drop(store, book, name)


def _check_ranking(pipeline: RetrievalPipeline, clip: DenseEncoder, photos: Path, query: str) -> None:
    hits = list(pipeline.search(query))
    assert sorted(h.id for h in hits) == sorted(f"{name}#0" for name in FILES)  # every image, nothing else
    names = sorted(FILES)
    exact = _cosine(clip.encode_query(query), clip.encode_document([photos / n for n in names]))
    assert [h.text for h in hits] == [names[i] for i in np.argsort(-exact, kind="stable")]
    for hit in hits:
        assert hit.score == pytest.approx(float(exact[names.index(hit.text)]), abs=1e-4)
        assert {k: hit.metadata[k] for k in ("path", "width", "height")} == {"path": hit.text, "width": 40,
                                                                             "height": 32}
        assert hit.metadata["format"] in ("PNG", "JPEG", "WEBP", "GIF", "BMP")


def _drop(store: Any, book: Ledger, name: str) -> None:
    versions = {v["collection"] for v in book.get("versions", [])} | {name}
    if store.capabilities.aliases:
        try:
            store.delete_alias(name)
        except Exception:  # noqa: BLE001 - cleanup must not hide the test's own failure
            pass
    for physical in versions:
        try:
            store.drop(physical)
        except Exception:  # noqa: BLE001
            pass
    book.close()
