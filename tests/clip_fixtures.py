"""A tiny random CLIP, saved the way sentence-transformers saves ``clip-ViT-B-32``, and simple images.

No CLIP weights ship with this repository: the model is built from a small ``CLIPConfig`` (2-layer
text and vision towers, 16x16 images) with a byte-level BPE tokenizer over a handful of merges, and
written by sentence-transformers' own ``SentenceTransformer(modules=[CLIPModel(...)]).save``, so
the folder layout under test is theirs, not ours.
"""

from __future__ import annotations

import json
from pathlib import Path

#: Shapes drawn by ``draw``; each name is also a word the tiny tokenizer knows whole.
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (30, 60, 220), "yellow": (230, 210, 40)}
_MERGES = [("r", "e"), ("re", "d</w>"), ("g", "r"), ("gr", "e"), ("gre", "e"), ("gree", "n</w>"), ("b", "l"),
           ("bl", "u"), ("blu", "e</w>"), ("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>")]


def clip_tokenizer(max_length: int = 32):
    """A CLIP tokenizer (byte-level BPE, lower-casing) over the 256 bytes and a few merges."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = ["<|startoftext|>", "<|endoftext|>", *alphabet, *(c + "</w>" for c in alphabet), *(a + b for a, b in _MERGES)]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=list(_MERGES), model_max_length=max_length)


def build_raw_clip(folder: Path, seed: int = 0) -> Path:
    """A random transformers ``CLIPModel`` + ``CLIPProcessor`` folder (what ``openai/clip-*`` repos hold)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPProcessor
    from transformers import CLIPModel as HFCLIPModel

    tokenizer = clip_tokenizer()
    images = CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    config = CLIPConfig(
        text_config={**tower, "vocab_size": len(tokenizer), "max_position_embeddings": 32,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={**tower, "image_size": 16, "patch_size": 8},
        projection_dim=24,
    )
    torch.manual_seed(seed)
    HFCLIPModel(config).eval().save_pretrained(folder)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def build_st_clip(folder: Path, raw: Path) -> Path:
    """The sentence-transformers folder of ``raw``, saved by sentence-transformers itself."""
    import logging

    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers >= 5.4 moved it; the old path still works there, with a warning
        from sentence_transformers.sentence_transformer.modules import CLIPModel as STCLIPModel
    except ImportError:
        from sentence_transformers.models import CLIPModel as STCLIPModel

    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)  # "CLIPModel is deprecated"
    SentenceTransformer(modules=[STCLIPModel(str(raw))], device="cpu").save(str(folder))
    manifest = json.loads((folder / "modules.json").read_text())
    if [m["type"].rsplit(".", 1)[-1] for m in manifest] != ["CLIPModel"]:
        raise RuntimeError(f"sentence-transformers saved an unexpected stack: {manifest}")
    return folder


def draw(colour: str, shape: str = "square", size: tuple[int, int] = (40, 32)):
    """A white picture holding one filled shape in ``colour`` (a PIL image)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, (255, 255, 255))
    pen = ImageDraw.Draw(image)
    box = (4, 4, size[0] - 4, size[1] - 4)
    if shape == "circle":
        pen.ellipse(box, fill=COLOURS[colour])
    else:
        pen.rectangle(box, fill=COLOURS[colour])
    return image
