"""TSDAE: the denoising auto-encoder loss and its data against sentence-transformers, and training it.

- Loss value and every gradient (encoder, shared and decoder-only parameters) equal
  sentence-transformers' ``DenoisingAutoEncoderLoss`` on the same tiny BERT, with the decoder tied
  to the encoder, untied, and a GPT-2 decoder with its own tokenizer (the re-tokenizing path).
- Deletion noise draws exactly like sentence-transformers' ``DenoisingAutoEncoderDataset.delete``
  (with a whitespace stand-in for nltk, which neither side has here).
- ``DenseTrainer`` trains it end to end: the loss goes down, the saved folder holds the encoder
  only and loads in this SDK and in sentence-transformers with identical embeddings.
- ``sdk train tsdae`` on a BEIR folder and on a text file.
"""

from __future__ import annotations

import json
import random
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sdk.core.errors import InputError
from sdk.encoders.dense import DenseEncoder
from sdk.training.denoising import (
    DenoisingAutoEncoderDataset,
    corpus_sentences,
    delete_words,
    split_sentences,
)
from sdk.training.losses.denoising import DenoisingAutoEncoderLoss
from tests.conftest import _WORDS, build_tiny_bert

st = pytest.importorskip("sentence_transformers")
datasets = pytest.importorskip("datasets")
from sentence_transformers.sentence_transformer.losses import DenoisingAutoEncoderLoss as STDenoisingLoss  # noqa: E402

WORDS = ("how do i install a python package list tuple debian database vector search query document "
         "sentence text model encode file data system user error set value table key run type").split()


def _sentences(n: int, seed: int, lo: int = 4, hi: int = 12) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) for _ in range(n)]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tsdae-bert"))


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer GPT-2 (width 32, like the tiny BERT) with a byte-level BPE of a few words."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    folder = tmp_path_factory.mktemp("tsdae-gpt2")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([" ".join(_WORDS)] * 4, vocab_size=300, min_frequency=1,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                  unk_token="<|endoftext|>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=64,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# -- the loss vs sentence-transformers --------------------------------------------------------------


def _grads(params: list[nn.Parameter]) -> list[torch.Tensor]:
    return [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]


@pytest.mark.parametrize("case", ["tied", "untied-same-model", "gpt2-decoder-retokenized"])
def test_loss_and_gradients_match_sentence_transformers(bert_dir: Path, gpt2_dir: Path, case: str) -> None:
    from sentence_transformers import SentenceTransformer

    kwargs = {"tied": {}, "untied-same-model": {"decoder_name_or_path": str(bert_dir), "tie_encoder_decoder": False},
              "gpt2-decoder-retokenized": {"decoder_name_or_path": str(gpt2_dir), "tie_encoder_decoder": False}}[case]
    # fresh models per case: tying replaces the encoder's parameters with the decoder's
    ours_model = DenseEncoder(bert_dir, device="cpu").eval()
    their_model = SentenceTransformer(str(bert_dir), device="cpu").eval()
    torch.manual_seed(0)  # the decoder's new weights (cross-attention, LM head) come from the same draws
    ours = DenoisingAutoEncoderLoss(ours_model, **kwargs)
    torch.manual_seed(0)
    theirs = STDenoisingLoss(their_model, **kwargs)
    assert ours.need_retokenization is theirs.need_retokenization is (case == "gpt2-decoder-retokenized")
    assert ours.get_config_dict() == theirs.get_config_dict()
    mine, ref = list(ours.parameters()), list(theirs.parameters())
    assert len(mine) == len(ref)
    for a, b in zip(mine, ref, strict=True):
        assert a.shape == b.shape and torch.equal(a.detach(), b.detach())
    shared = {id(p) for p in ours_model.parameters()} & {id(p) for p in ours.decoder.parameters()}
    assert bool(shared) is (case == "tied")

    originals = _sentences(6, seed=1)
    noisy = [delete_words(s, rng=np.random.RandomState(i)) for i, s in enumerate(originals)]
    our_features = [dict(ours_model.transformer.tokenize(t)) for t in (noisy, originals)]
    their_features = [dict(their_model.preprocess(t)) for t in (noisy, originals)]
    got = ours(our_features, None)
    got.backward()
    want = theirs(their_features, None)
    want.backward()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    got_grads, want_grads = _grads(mine), _grads(ref)
    assert all(g.abs().sum() > 0 for g in want_grads[:3]), "the reference produced no encoder gradient"
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_the_decoder_follows_the_encoders_train_mode(bert_dir: Path) -> None:
    model = DenseEncoder(bert_dir, device="cpu")
    loss = DenoisingAutoEncoderLoss(model)
    texts = _sentences(4, seed=2)
    features = [dict(model.transformer.tokenize(t)) for t in (texts, texts)]
    model.train()
    loss(features, None)
    assert loss.decoder.training
    model.eval()
    with torch.no_grad():
        loss(features, None)
    assert not loss.decoder.training


def test_bad_setups_and_batches_raise_input_error(bert_dir: Path, gpt2_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer, BertConfig, BertModel

    from sdk.encoders.modules import Pooling, Transformer

    model = DenseEncoder(bert_dir, device="cpu")
    with pytest.raises(InputError, match="needs decoder_name_or_path"):
        DenoisingAutoEncoderLoss(model, tie_encoder_decoder=False)
    swapped = DenseEncoder(bert_dir, device="cpu")
    swapped.transformer.tokenizer = AutoTokenizer.from_pretrained(gpt2_dir)  # a vocabulary the decoder lacks
    with pytest.raises(InputError, match="one tokenizer"):
        DenoisingAutoEncoderLoss(swapped, tie_encoder_decoder=True)
    narrow = tmp_path / "narrow"
    tokenizer = model.tokenizer
    small = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=32, max_position_embeddings=64))
    DenseEncoder(modules=[Transformer(small, tokenizer, max_seq_length=32), Pooling(16, "mean")],
                 device="cpu").save(narrow)
    with pytest.raises(InputError, match="hidden size"):
        DenoisingAutoEncoderLoss(DenseEncoder(narrow, device="cpu"), str(bert_dir), tie_encoder_decoder=False)
    loss = DenoisingAutoEncoderLoss(model)
    one_column = [dict(model.transformer.tokenize(_sentences(2, seed=3)))]
    with pytest.raises(InputError, match="expects 2"):
        loss(one_column, None)


# -- deletion noise and the dataset --------------------------------------------------------------


@pytest.fixture()
def whitespace_nltk(monkeypatch: pytest.MonkeyPatch) -> None:
    """nltk is not installed: stand in for its tokenizer and detokenizer with whitespace ones."""
    nltk = types.ModuleType("nltk")
    nltk.word_tokenize = str.split  # type: ignore[attr-defined]
    tokenize = types.ModuleType("nltk.tokenize")
    treebank = types.ModuleType("nltk.tokenize.treebank")

    class TreebankWordDetokenizer:
        def detokenize(self, words: list[str]) -> str:
            return " ".join(words)

    treebank.TreebankWordDetokenizer = TreebankWordDetokenizer  # type: ignore[attr-defined]
    for name, module in (("nltk", nltk), ("nltk.tokenize", tokenize), ("nltk.tokenize.treebank", treebank)):
        monkeypatch.setitem(sys.modules, name, module)


def test_deletion_noise_draws_like_sentence_transformers(whitespace_nltk: None) -> None:
    from sentence_transformers.sentence_transformer.datasets.denoising_auto_encoder import (
        DenoisingAutoEncoderDataset as STDataset,
    )

    texts = _sentences(200, seed=4, lo=1, hi=20) + ["", "one"]
    for del_ratio in (0.6, 0.3, 0.95):
        np.random.seed(11)
        theirs = [STDataset.delete(t, del_ratio) for t in texts]
        np.random.seed(11)
        global_draws = [delete_words(t, del_ratio) for t in texts]
        seeded = DenoisingAutoEncoderDataset(texts, del_ratio=del_ratio, seed=11)
        assert global_draws == theirs
        assert [seeded[i]["noisy"] for i in range(len(texts))] == theirs


def test_deletion_keeps_about_forty_percent_and_never_nothing() -> None:
    text = " ".join(f"w{i}" for i in range(5000))
    kept = delete_words(text, rng=np.random.RandomState(0)).split()
    assert 0.37 < len(kept) / 5000 < 0.43
    assert kept == [w for w in text.split() if w in set(kept)]  # order kept, nothing invented
    rng = np.random.RandomState(1)
    assert all(len(delete_words("a b", 0.99, rng).split()) == 1 for _ in range(50))
    assert delete_words("", rng=rng) == "" and delete_words("   ", rng=rng) == "   "


def test_dataset_rows_are_fresh_each_access_and_repeatable_with_a_seed() -> None:
    texts = _sentences(20, seed=5, lo=8, hi=12)
    a, b = DenoisingAutoEncoderDataset(texts, seed=3), DenoisingAutoEncoderDataset(texts, seed=3)
    first = [a[i] for i in range(20)]
    assert first == [b[i] for i in range(20)]
    assert [r["text"] for r in first] == texts and list(a.column_names) == ["noisy", "text"]
    assert [a[i]["noisy"] for i in range(20)] != [r["noisy"] for r in first]  # a new epoch, new noise
    assert a["text"] == texts and len(a["noisy"]) == 20
    assert DenoisingAutoEncoderDataset(["a b c"], noise_fn=str.upper)[0] == {"noisy": "A B C", "text": "a b c"}
    for bad in ({"sentences": []}, {"sentences": ["a", 3]}, {"sentences": ["a"], "del_ratio": 1.0}):
        with pytest.raises(InputError):
            DenoisingAutoEncoderDataset(**bad)


def _beir(folder: Path, n: int = 24) -> Path:
    """Documents of three sentences each, with queries and dev qrels for an evaluator."""
    rng = random.Random(6)
    (folder / "qrels").mkdir(parents=True)
    docs = []
    for i in range(n):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 9))).capitalize() + "."
                     for _ in range(3)]
        docs.append({"_id": f"d{i}", "title": "", "text": " ".join(sentences)})
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(
        json.dumps({"_id": f"q{i}", "text": " ".join(d["text"].split()[:3])}) + "\n" for i, d in enumerate(docs)))
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\td{i}\t1\n" for i in range(n)))
    return folder


def test_corpus_sentences_from_a_beir_folder_a_jsonl_and_a_text_file(tmp_path: Path) -> None:
    text = "Install the package. Then run it now!\nDebian 12 ships it, e.g. in main. Ok."
    assert split_sentences(text, min_words=1) == [
        "Install the package.", "Then run it now!", "Debian 12 ships it, e.g. in main.", "Ok."]
    assert split_sentences(text) == ["Then run it now!", "Debian 12 ships it, e.g. in main."]  # >= 4 words
    folder = _beir(tmp_path / "beir")
    sentences = corpus_sentences(folder)
    assert len(sentences) == len(set(sentences)) and 60 <= len(sentences) <= 72
    assert corpus_sentences(folder / "corpus.jsonl") == sentences
    sample = corpus_sentences(folder, max_sentences=10, seed=1)
    assert len(sample) == 10 and sample == [s for s in sentences if s in sample]
    assert sample == corpus_sentences(folder, max_sentences=10, seed=1)
    text_file = tmp_path / "sentences.txt"
    text_file.write_text("First line. Still the first line\n\nshort\nThe second useful line here\n")
    assert corpus_sentences(text_file) == ["First line. Still the first line", "The second useful line here"]
    for bad in (tmp_path / "missing", text_file.with_name("empty.txt")):
        if bad.suffix:
            bad.write_text("tiny\n")
        with pytest.raises(InputError):
            corpus_sentences(bad)


# -- training ------------------------------------------------------------------------------------


def test_dense_trainer_trains_tsdae_and_saves_only_the_encoder(tmp_path: Path, bert_dir: Path) -> None:
    from safetensors import safe_open
    from sentence_transformers import SentenceTransformer

    from sdk.training import DenseTrainer, DenseTrainingArguments

    model = DenseEncoder(bert_dir, device="cpu")
    loss = DenoisingAutoEncoderLoss(model)
    sentences = _sentences(48, seed=7, lo=6, hi=10)
    train = DenoisingAutoEncoderDataset(sentences, seed=0)
    rng = np.random.RandomState(1)  # evaluation sees one fixed damaged copy per sentence
    held = datasets.Dataset.from_dict({"noisy": [delete_words(s, rng=rng) for s in sentences], "text": sentences})
    args = DenseTrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, learning_rate=1e-3,
                                  max_steps=12, logging_steps=1, report_to=[], disable_tqdm=True,
                                  save_strategy="no", seed=3)
    trainer = DenseTrainer(model=model, args=args, train_dataset=train, eval_dataset=held, loss=loss)
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    assert after < before - 0.1, (before, after)
    decoder_only = [p for p in loss.decoder.parameters() if all(p is not q for q in model.parameters())]
    assert decoder_only and all(p.grad is None or not p.grad.any() for p in decoder_only)  # zeroed after each step

    out = tmp_path / "trained"
    trainer.save_model(str(out))
    with safe_open(str(out / "model.safetensors"), "pt") as fh:
        keys = list(fh.keys())
    with safe_open(str(bert_dir / "model.safetensors"), "pt") as fh:
        assert sorted(keys) == sorted(fh.keys())  # the encoder's weights, no decoder or LM head
    assert "DenoisingAutoEncoderLoss" in (out / "README.md").read_text()
    texts = _sentences(5, seed=8)
    ours = model.encode(texts)
    np.testing.assert_allclose(DenseEncoder(out, device="cpu").encode(texts), ours, atol=1e-6)
    np.testing.assert_allclose(SentenceTransformer(str(out), device="cpu").encode(texts), ours, atol=1e-5)
    assert not np.allclose(DenseEncoder(bert_dir, device="cpu").encode(texts), ours, atol=1e-3)  # it did train


def test_sdk_train_tsdae_cli_on_a_beir_folder_and_a_text_file(tmp_path: Path, bert_dir: Path, capsys) -> None:
    from sdk.cli.main import main

    folder = _beir(tmp_path / "beir")
    out = tmp_path / "tsdae"
    code = main(["train", "tsdae", "--dataset", str(folder), "--dev-split", "dev", "--base", str(bert_dir),
                 "--output", str(out), "--max-steps", "3", "--max-sentences", "30", "--learning-rate", "1e-3",
                 "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["loss"] == "DenoisingAutoEncoderLoss" and summary["train_rows"] == 30 and summary["steps"] == 3
    assert summary["primary_metric"] in summary["trained_metrics"]
    assert (out / "modules.json").is_file()
    DenseEncoder(out, device="cpu").encode(["it loads"])

    text_file = tmp_path / "sentences.txt"
    text_file.write_text("".join(s + "\n" for s in _sentences(20, seed=9, lo=5, hi=8)))
    assert main(["train", "tsdae", "--dataset", str(text_file), "--base", str(bert_dir), "--output",
                 str(tmp_path / "from-text"), "--max-steps", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["train_rows"] == 20 and summary["steps"] == 2
    assert summary["epochs"] == 0.667  # 2 of the 3 batches of 8 (the default) over 20 sentences
    assert main(["train", "tsdae", "--dataset", str(text_file), "--dev-split", "dev", "--base", str(bert_dir),
                 "--output", str(tmp_path / "x")]) == 1
    assert "BEIR folder" in capsys.readouterr().err
    assert main(["train", "tsdae", "--dataset", str(text_file), "--base", str(bert_dir), "--output",
                 str(tmp_path / "y"), "--loss", "mnrl"]) == 1
    assert "tsdae --loss" in capsys.readouterr().err
