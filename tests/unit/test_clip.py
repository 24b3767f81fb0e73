"""CLIP image-and-text models: parity with sentence-transformers' CLIPModel module on a tiny random CLIP
(texts, PIL images, image paths), saving both ways, mixed lists, clear errors, and image folders in sync
on the exact memory store."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from adapters.memory import MemoryAdapter
from sdk.core.errors import InputError, MissingDependencyError, SourceError, SyncError
from sdk.encoders.dense import DenseEncoder
from sdk.sync import FolderSource, Ledger, Syncer, sync
from sdk.sync.chunking import TokenChunker
from sdk.sync.sources import ImageDocument
from tests.clip_fixtures import build_raw_clip, build_st_clip, draw

ATOL = 1e-5
TEXTS = ["a red cat", "the blue dog", "green", "yellow circle " * 30, ""]  # one longer than max_seq_length


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_raw_clip(tmp_path_factory.mktemp("clip-raw"))


@pytest.fixture(scope="module")
def st_dir(tmp_path_factory: pytest.TempPathFactory, raw_dir: Path) -> Path:
    return build_st_clip(tmp_path_factory.mktemp("clip-st"), raw_dir)


@pytest.fixture(scope="module")
def clip(st_dir: Path) -> DenseEncoder:
    return DenseEncoder(st_dir, device="cpu")


@pytest.fixture(scope="module")
def st_model(st_dir: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(st_dir), device="cpu")


@pytest.fixture(scope="module")
def images() -> list[Any]:
    """Different sizes and modes: the processor resizes, crops and converts each to RGB."""
    return [draw("red"), draw("green", "circle", (64, 20)), draw("blue", size=(17, 90)).convert("L"),
            draw("yellow", "circle").convert("RGBA"), draw("red", "circle", (16, 16)).convert("P")]


def _diff(a: Any, b: Any) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def test_the_sentence_transformers_folder_loads_as_one_clip_module(clip: DenseEncoder, st_dir: Path) -> None:
    manifest = json.loads((st_dir / "modules.json").read_text())
    assert [m["path"] for m in manifest] == [""]  # sentence-transformers >= 5.4 keeps it at the root
    assert [type(m).__name__ for m in clip] == ["CLIPModel"]
    assert clip.accepts_images and clip.get_sentence_embedding_dimension() == 24
    assert clip.max_seq_length == 32 and clip.tokenizer is clip[0].tokenizer


def test_texts_match_sentence_transformers(clip: DenseEncoder, st_model: Any) -> None:
    ours, theirs = clip.encode(TEXTS, batch_size=2), st_model.encode(TEXTS, batch_size=2)
    assert ours.shape == (len(TEXTS), 24)
    assert _diff(ours, theirs) <= ATOL


def test_images_match_sentence_transformers(clip: DenseEncoder, st_model: Any, images: list[Any]) -> None:
    ours, theirs = clip.encode(images, batch_size=2), st_model.encode(images, batch_size=2)
    assert ours.shape == (len(images), 24)
    assert _diff(ours, theirs) <= ATOL


def test_image_paths_match_sentence_transformers(clip: DenseEncoder, st_model: Any, images: list[Any],
                                                  tmp_path: Path) -> None:
    """A ``Path`` is read as an image (sentence-transformers takes the path string); a ``str`` stays text."""
    files = []
    for i, (image, suffix) in enumerate(zip(images, (".png", ".jpg", ".bmp", ".webp", ".gif"), strict=True)):
        files.append(tmp_path / f"{i}{suffix}")
        (image.convert("RGB") if suffix in (".jpg", ".bmp") else image).save(files[-1])
    ours = clip.encode(files)
    assert _diff(ours, st_model.encode([str(f) for f in files])) <= ATOL
    assert _diff(clip.encode(files[0]), ours[0]) <= ATOL  # one Path in, one vector out
    assert _diff(clip.encode(str(files[0])), clip.encode(files[0])) > 1e-3  # the string is encoded as text


def test_a_mixed_list_keeps_its_order(clip: DenseEncoder, images: list[Any]) -> None:
    mixed = [TEXTS[0], images[0], images[1], TEXTS[1], images[2], TEXTS[2], TEXTS[3]]
    expected = [clip.encode(item) for item in mixed]
    for batch_size in (1, 2, 32):
        got = clip.encode(mixed, batch_size=batch_size)
        assert got.shape == (len(mixed), 24)
        assert _diff(got, np.stack(expected)) <= ATOL
    as_tensor = clip.encode(mixed, convert_to_tensor=True, normalize_embeddings=True)
    assert isinstance(as_tensor, torch.Tensor)
    assert torch.allclose(as_tensor.norm(dim=1), torch.ones(len(mixed)), atol=1e-5)
    rows = clip.encode(mixed, convert_to_numpy=False)
    assert isinstance(rows, list) and _diff(torch.stack(rows), np.stack(expected)) <= ATOL
    assert clip.encode([]).shape == (0, 24)


def test_prompts_apply_to_texts_only(clip: DenseEncoder, images: list[Any]) -> None:
    got = clip.encode([images[0], "cat"], prompt="a photo of ")
    assert _diff(got[0], clip.encode(images[0])) <= ATOL
    assert _diff(got[1], clip.encode("a photo of cat")) <= ATOL


def test_image_and_text_vectors_compare_in_one_space(clip: DenseEncoder, images: list[Any]) -> None:
    image_vecs, text_vecs = clip.encode(images), clip.encode(TEXTS[:3])
    scores = clip.similarity(image_vecs, text_vecs)
    assert scores.shape == (len(images), 3)
    a = image_vecs / np.linalg.norm(image_vecs, axis=1, keepdims=True)
    b = text_vecs / np.linalg.norm(text_vecs, axis=1, keepdims=True)
    assert _diff(scores, a @ b.T) <= ATOL


def test_saved_by_us_loads_in_sentence_transformers(clip: DenseEncoder, images: list[Any], tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    clip.save(tmp_path / "ours")
    manifest = json.loads((tmp_path / "ours" / "modules.json").read_text())
    assert manifest == [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.CLIPModel"}]
    theirs = SentenceTransformer(str(tmp_path / "ours"), device="cpu")
    assert _diff(theirs.encode(TEXTS), clip.encode(TEXTS)) <= ATOL
    assert _diff(theirs.encode(images), clip.encode(images)) <= ATOL
    again = DenseEncoder(tmp_path / "ours", device="cpu")
    assert again.fingerprint() == clip.fingerprint()
    assert _diff(again.encode([images[0], TEXTS[0]]), clip.encode([images[0], TEXTS[0]])) <= ATOL


def test_a_changed_max_seq_length_is_saved(st_dir: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    short = DenseEncoder(st_dir, device="cpu")
    short.max_seq_length = 4
    short.save(tmp_path / "short")
    assert DenseEncoder(tmp_path / "short", device="cpu").max_seq_length == 4
    theirs = SentenceTransformer(str(tmp_path / "short"), device="cpu")
    assert _diff(theirs.encode(TEXTS), short.encode(TEXTS)) <= ATOL
    assert short.fingerprint() != DenseEncoder(st_dir, device="cpu").fingerprint()


def test_the_hub_layout_and_a_bare_clip_folder_load(clip: DenseEncoder, raw_dir: Path, images: list[Any],
                                                    tmp_path: Path) -> None:
    """clip-ViT-B-32 on the hub keeps the module in 0_CLIPModel/ (older sentence-transformers), and
    openai/clip-* repositories are bare transformers folders: both give the same vectors."""
    hub = tmp_path / "hub"
    shutil.copytree(raw_dir, hub / "0_CLIPModel")
    (hub / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "0_CLIPModel", "type": "sentence_transformers.models.CLIPModel"}]))
    mixed = [TEXTS[0], images[0]]
    for folder in (hub, raw_dir):
        encoder = DenseEncoder(folder, device="cpu")
        assert [type(m).__name__ for m in encoder] == ["CLIPModel"]
        assert _diff(encoder.encode(mixed), clip.encode(mixed)) <= ATOL


def test_bad_inputs_are_refused_with_the_fix(clip: DenseEncoder, tiny_bert: DenseEncoder, images: list[Any],
                                             tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"sentences\[1\] is an image .*reads text only.*CLIP"):
        tiny_bert.encode(["text", images[0]])
    with pytest.raises(InputError, match="reads text only"):
        tiny_bert.encode(tmp_path / "a.png")
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    with pytest.raises(InputError, match=r"fake\.png.* not an image Pillow can read"):
        clip.encode(["fine", fake])
    with pytest.raises(InputError, match="does not exist"):
        clip.encode([tmp_path / "missing.jpg"])
    with pytest.raises(InputError, match=r"sentences\[1\] is bytes .*not a string, a PIL image or a pathlib.Path"):
        clip.encode(["text", b"\x89PNG"])
    with pytest.raises(InputError, match="no token embeddings"):
        clip.encode(["text"], output_value="token_embeddings")


def test_a_missing_pillow_names_the_extra(clip: DenseEncoder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    draw("red").save(tmp_path / "red.png")
    monkeypatch.setitem(sys.modules, "PIL", None)  # "import PIL" now raises ImportError
    monkeypatch.delitem(sys.modules, "PIL.Image", raising=False)
    with pytest.raises(MissingDependencyError, match=r"pip install 'retrieval-forge\[images\]'"):
        clip.encode(tmp_path / "red.png")
    with pytest.raises(MissingDependencyError, match=r"retrieval-forge\[images\]"):
        list(FolderSource(tmp_path, images=True))
    assert list(FolderSource(tmp_path)) == []  # text folders never import Pillow


# -- image folders in sync ------------------------------------------------------------------------


def _photos(folder: Path) -> Path:
    (folder / "shapes").mkdir(parents=True)
    draw("red").save(folder / "red.png")
    draw("green", "circle").save(folder / "shapes" / "green.jpg")
    draw("blue").save(folder / "shapes" / "blue.webp")
    (folder / "notes.txt").write_text("a red cat and a blue dog", encoding="utf8")
    return folder


def test_a_folder_reads_images_only_when_asked(tmp_path: Path) -> None:
    root = _photos(tmp_path / "photos")
    assert [d.id for d in FolderSource(root)] == ["notes.txt"]  # as before: images are not text
    docs = {d.id: d for d in FolderSource(root, images=True)}
    assert sorted(docs) == ["notes.txt", "red.png", "shapes/blue.webp", "shapes/green.jpg"]
    green = docs["shapes/green.jpg"]
    assert isinstance(green, ImageDocument) and green.text == "shapes/green.jpg"
    assert green.metadata == {"path": "shapes/green.jpg", "width": 40, "height": 32, "format": "JPEG"}
    assert green.digest == hashlib.sha256((root / "shapes" / "green.jpg").read_bytes()).hexdigest()[:32]
    assert FolderSource(root).spec == str(root) and FolderSource(root, images=True).spec is None
    (root / "broken.gif").write_bytes(b"GIF89a but not really")
    with pytest.raises(SourceError, match=r"broken\.gif: not an image Pillow can read.*move it out"):
        list(FolderSource(root, images=True))
    with pytest.raises(SourceError, match="images must be True, False or None"):
        FolderSource(root, images="yes")


def test_an_image_is_one_chunk_hashed_by_its_bytes(clip: DenseEncoder, tmp_path: Path) -> None:
    root = _photos(tmp_path / "photos")
    chunker = TokenChunker.from_encoder(clip)
    (doc, chunks), = [(d, c) for d, c in chunker.chunk_many(FolderSource(root, images=True)) if d.id == "red.png"]
    assert len(chunks) == 1
    chunk = chunks[0]
    assert (chunk.id, chunk.text, chunk.image, chunk.content_hash) == ("red.png#0", "red.png", doc.file, doc.digest)
    assert chunk.metadata["content_hash"] == doc.digest and chunk.metadata["width"] == 40


def test_sync_stores_image_vectors_and_follows_the_bytes(clip: DenseEncoder, tmp_path: Path) -> None:
    root = _photos(tmp_path / "photos")
    store = MemoryAdapter()
    ledger = tmp_path / "ledger.sqlite"
    report = sync(root, store, "photos", dense=clip, sparse=False, ledger=ledger, progress=False)
    assert (report.added, report.chunks_written) == (4, 4)
    stored = {r.id: r for r in store.get("photos", ["red.png#0", "shapes/green.jpg#0", "notes.txt#0"])}
    assert stored["red.png#0"].text == "red.png" and stored["red.png#0"].metadata["format"] == "PNG"
    assert _diff(stored["red.png#0"].vectors["dense"], clip.encode(root / "red.png")) <= ATOL
    assert _diff(stored["notes.txt#0"].vectors["dense"], clip.encode("a red cat and a blue dog")) <= ATOL
    again = sync(root, store, "photos", dense=clip, sparse=False, ledger=ledger, progress=False)
    assert (again.unchanged, again.chunks_encoded) == (4, 0)
    draw("yellow").save(root / "red.png")  # same name and size, other bytes
    (root / "shapes" / "blue.webp").unlink()
    changed = sync(root, store, "photos", dense=clip, sparse=False, ledger=ledger, progress=False)
    assert (changed.updated, changed.deleted, changed.unchanged, changed.chunks_encoded) == (1, 1, 2, 1)
    moved = store.get("photos", ["red.png#0"])[0]
    assert _diff(moved.vectors["dense"], clip.encode(root / "red.png")) <= ATOL
    store.close()


def test_sync_refuses_images_it_cannot_encode(clip: DenseEncoder, tiny_bert: DenseEncoder, tmp_path: Path) -> None:
    from sdk.encoders.sparse import SparseEncoder
    from tests.encoder_fixtures import build_tiny_mlm

    root = _photos(tmp_path / "photos")
    store = MemoryAdapter()
    # a text model skips the images of a folder left to decide, as before
    report = sync(root, store, "text", dense=tiny_bert, sparse=False, ledger=tmp_path / "a.sqlite", progress=False)
    assert report.added == 1
    with Ledger.open(tmp_path / "b.sqlite", key="b") as book:
        syncer = Syncer(store, "b", dense=tiny_bert, ledger=book)
        with pytest.raises(SyncError, match=r"red\.png .* is an image, and the dense encoder reads text only"):
            syncer.run(FolderSource(root, images=True))
    splade = SparseEncoder(build_tiny_mlm(tmp_path / "mlm"), device="cpu")
    with Ledger.open(tmp_path / "c.sqlite", key="c") as book:
        syncer = Syncer(store, "c", dense=clip, sparse=splade, ledger=book)
        with pytest.raises(SyncError, match=r"images have no sparse vector.*--no-sparse"):
            syncer.run(FolderSource(root))
        assert not store.exists("c") and not store.exists("c_v1")  # refused by the scan: nothing written
    store.close()


def test_cli_sync_and_search_an_image_folder(raw_dir: Path, tmp_path: Path, capsys: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from sdk.cli.main import main

    monkeypatch.setenv("SDK_LEDGER_DIR", str(tmp_path / "ledgers"))
    root = _photos(tmp_path / "photos")
    common = ["--store", f"qdrant+local:{tmp_path / 'q'}", "--collection", "photos"]
    assert main(["sync", str(root), *common, "--dense-model", str(raw_dir)]) == 1  # a sparse leg by default
    assert "images have no sparse vector" in capsys.readouterr().err
    assert main(["sync", str(root), *common, "--dense-model", str(raw_dir), "--no-sparse", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["added"] == 4
    assert main(["search", "a blue square", *common, "--json", "--limit", "4"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert sorted(h["metadata"]["path"] for h in hits) == ["notes.txt", "red.png", "shapes/blue.webp",
                                                            "shapes/green.jpg"]
    images = [h for h in hits if h["id"] != "notes.txt#0"]
    assert [h["text"] for h in images] == [h["metadata"]["path"] for h in images]
    assert sorted(h["metadata"]["format"] for h in images) == ["JPEG", "PNG", "WEBP"]
