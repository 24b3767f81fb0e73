"""TSDAE: a denoising auto-encoder loss that trains sentence embeddings from unlabelled text.

The encoder embeds a damaged sentence (words deleted, see ``sdk.training.denoising``); a causal
decoder whose cross-attention sees only that one pooled vector must rebuild the original sentence
token by token. The only path from input to output is the sentence embedding, so it has to carry
the sentence's content. Training needs no labels: a corpus's own text is the data.

Same constructor, defaults, decoder, weight tying and cross-entropy as sentence-transformers'
``DenoisingAutoEncoderLoss`` (``tests/training/test_denoising.py`` checks value and every gradient
against it). One deliberate difference: the decoder follows the encoder's train/eval mode (dropout
on while training, as sentence-transformers' older ``fit`` loop had it); its current Trainer leaves the
decoder in the eval mode ``from_pretrained`` returns. The decoder belongs to the loss, so saving the
trained encoder never writes it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from sdk.core.errors import InputError, ModelLoadError
from sdk.encoders.modules.transformer import Transformer
from sdk.training.losses.base import EncoderLoss, check_columns

__all__ = ["DenoisingAutoEncoderLoss", "tie_encoder_to_decoder"]

logger = logging.getLogger(__name__)


def tie_encoder_to_decoder(encoder: nn.Module, decoder: nn.Module) -> int:
    """Make each encoder parameter the decoder's parameter of the same name (shared storage).

    The decoder's values become the shared starting point; decoder-only parameters (the
    cross-attention) have no encoder twin and stay the decoder's own. Returns how many were tied.
    """
    modules = dict(encoder.named_modules())
    tied = 0
    for name, param in decoder.named_parameters():
        owner, _, attr = name.rpartition(".")
        target = modules.get(owner)
        if target is not None and hasattr(target, attr):
            setattr(target, attr, param)
            tied += 1
    return tied


class DenoisingAutoEncoderLoss(EncoderLoss):
    """Rebuild the original sentence from the embedding of its damaged copy (TSDAE).

    Rows are ``(damaged, original)``, e.g. ``DenoisingAutoEncoderDataset(sentences)``. The decoder is
    ``AutoModelForCausalLM`` loaded from ``decoder_name_or_path`` (with ``tie_encoder_decoder``: the
    encoder's own folder, weights shared with the encoder, which the paper found best and which
    halves the memory) as a decoder with cross-attention onto the sentence embedding.
    """

    def __init__(self, model: nn.Module, decoder_name_or_path: str | None = None,
                 tie_encoder_decoder: bool = True) -> None:
        super().__init__(model)
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        first = model[0] if isinstance(model, nn.Sequential) and len(model) else None
        if not isinstance(first, Transformer):
            raise InputError(
                f"DenoisingAutoEncoderLoss needs an encoder whose first module is a Transformer (its decoder is "
                f"built from that transformer); got {type(first).__name__}. Static-embedding and Router models "
                "cannot be trained with TSDAE")
        encoder_model = first.auto_model
        encoder_name = str(encoder_model.config._name_or_path)
        if decoder_name_or_path is None and not tie_encoder_decoder:
            raise InputError("DenoisingAutoEncoderLoss(tie_encoder_decoder=False) needs decoder_name_or_path, "
                             "the folder or hub id of the model to decode with")
        if tie_encoder_decoder:
            if decoder_name_or_path and decoder_name_or_path != encoder_name:
                logger.warning("tie_encoder_decoder=True: the decoder is the encoder's own model (%s), not %s",
                               encoder_name, decoder_name_or_path)
            decoder_name_or_path = encoder_name
        self.tokenizer_encoder = first.tokenizer
        try:
            self.tokenizer_decoder = AutoTokenizer.from_pretrained(decoder_name_or_path)
            config = AutoConfig.from_pretrained(decoder_name_or_path)
            config.is_decoder = True
            config.add_cross_attention = True
            self.decoder = AutoModelForCausalLM.from_pretrained(decoder_name_or_path, config=config)
        except ValueError as exc:  # no causal-LM head class for this architecture
            raise InputError(
                f"{decoder_name_or_path} cannot serve as a TSDAE decoder ({exc}); its architecture needs a causal-LM "
                "head class (e.g. BertLMHeadModel, GPT2LMHeadModel): pass tie_encoder_decoder=False and a "
                "decoder_name_or_path that has one") from exc
        except OSError as exc:
            raise ModelLoadError(f"cannot load the TSDAE decoder from {decoder_name_or_path}: {exc}") from exc
        self.need_retokenization = not isinstance(self.tokenizer_encoder, type(self.tokenizer_decoder))
        hidden, decoder_hidden = encoder_model.config.hidden_size, config.hidden_size
        if hidden != decoder_hidden:
            raise InputError(f"the encoder's hidden size ({hidden}) differs from the decoder's ({decoder_hidden}); "
                             "pick a decoder of the same width")
        if self.tokenizer_decoder.pad_token is None:  # GPT-2 and friends: pad with end-of-text
            self.tokenizer_decoder.pad_token = self.tokenizer_decoder.eos_token
            self.decoder.config.pad_token_id = self.decoder.config.eos_token_id
        if tie_encoder_decoder:
            self._tie(encoder_model, encoder_name)

    def _tie(self, encoder_model: nn.Module, encoder_name: str) -> None:
        from transformers import AutoTokenizer

        if self.need_retokenization:
            raise InputError("tie_encoder_decoder=True needs the encoder and decoder to share one tokenizer")
        if len(AutoTokenizer.from_pretrained(encoder_name)) != len(self.tokenizer_encoder):
            logger.warning("the encoder's vocabulary was changed after loading; the decoder takes the new one")
        if len(self.tokenizer_encoder) != len(self.tokenizer_decoder):
            self.tokenizer_decoder = self.tokenizer_encoder
            self.decoder.resize_token_embeddings(len(self.tokenizer_decoder))
        base = getattr(self.decoder, self.decoder.base_model_prefix)
        if not tie_encoder_to_decoder(encoder_model, base):
            logger.warning("no encoder weight was tied to the decoder; are they the same architecture?")

    def retokenize(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """Re-tokenize the original sentences with the decoder's tokenizer (different vocabularies)."""
        input_ids = features["input_ids"]
        texts = self.tokenizer_encoder.batch_decode(input_ids, skip_special_tokens=True,
                                                    clean_up_tokenization_spaces=True)
        tokens = self.tokenizer_decoder(texts, padding=True, truncation="longest_first", return_tensors="pt",
                                        max_length=None)
        return dict(tokens.to(input_ids.device))

    def forward(self, features: Sequence[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        features = list(features)
        check_columns(self, len(features), "2 (damaged, original)", len(features) == 2)
        source, target = features
        if self.need_retokenization:
            target = self.retokenize(target)
        if self.decoder.training != self.model.training:
            self.decoder.train(self.model.training)
        embeddings = self.embed(source)  # (batch, hidden)
        input_ids = target["input_ids"]
        outputs = self.decoder(
            input_ids=input_ids[:, :-1],  # teacher forcing: predict token t+1 from tokens <= t
            attention_mask=None,
            encoder_hidden_states=embeddings[:, None],  # a one-token "sequence": the sentence vector
            encoder_attention_mask=source["attention_mask"][:, :1],
            use_cache=False,
        )
        logits = outputs[0]
        cross_entropy = nn.CrossEntropyLoss(ignore_index=self.tokenizer_decoder.pad_token_id)
        return cross_entropy(logits.reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1))

    def get_config_dict(self) -> dict[str, Any]:
        return {"decoder_name_or_path": self.decoder.config._name_or_path,
                "need_retokenization": self.need_retokenization}

    @property
    def citation(self) -> str:
        return """
@inproceedings{wang-2021-TSDAE,
    title = "TSDAE: Using Transformer-based Sequential Denoising Auto-Encoderfor Unsupervised Sentence Embedding Learning",
    author = "Wang, Kexin and Reimers, Nils and Gurevych, Iryna",
    booktitle = "Findings of the Association for Computational Linguistics: EMNLP 2021",
    year = "2021",
    pages = "671--688",
    url = "https://arxiv.org/abs/2104.06979",
}
"""
