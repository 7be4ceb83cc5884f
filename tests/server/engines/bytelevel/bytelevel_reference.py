"""The served byte-level recipes rebuilt in the test process straight from the library
(transformers + `braid.server.decoding.bytelevel`), with no engine code involved."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from braid.server.decoding.bytelevel import (ByteEnsemble, ByteLM, CanonicalityChecker, ProxyTunedByteLM,
                                             TokenVocabulary, TransformersLM)


@dataclass
class Reference:
    tokenizer: object
    model: object
    vocab: TokenVocabulary
    checker: CanonicalityChecker

    @classmethod
    def load(cls, folder: Path) -> "Reference":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64).eval()
        vocab = TokenVocabulary.from_tokenizer(tokenizer, eos_ids=(tokenizer.eos_token_id,))
        return cls(tokenizer, model, vocab, CanonicalityChecker(tokenizer, vocab))

    def byte_lm(self, messages: list[dict] | None = None) -> ByteLM:
        """After BOS (a completion prompt is then the byte prefix), or after this model's own
        rendering of ``messages`` with its chat template."""
        if messages is None:
            context = (self.tokenizer.bos_token_id,)
        else:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            context = tuple(self.tokenizer.encode(text, add_special_tokens=False))
        return ByteLM(TransformersLM(self.model), self.vocab, self.checker, context_ids=context)


class ReferenceSources:
    def __init__(self, tiny: Path, sentencepiece: Path, anti: Path):
        self._folders = {"tiny": tiny, "sentencepiece": sentencepiece, "anti": anti}

    @cached_property
    def tiny(self) -> Reference:
        return Reference.load(self._folders["tiny"])

    @cached_property
    def sentencepiece(self) -> Reference:
        return Reference.load(self._folders["sentencepiece"])

    @cached_property
    def anti(self) -> Reference:
        return Reference.load(self._folders["anti"])

    def model(self, model_id: str, messages: list[dict] | None = None):
        """A fresh library model equal to the served ``model_id`` (see the test server's config)."""
        if model_id == "bytes":
            return self.tiny.byte_lm(messages)
        if model_id == "duo":
            return ByteEnsemble([self.tiny.byte_lm(messages), self.sentencepiece.byte_lm(messages)], (0.7, 0.3), "mix")
        if model_id == "prod":
            return ByteEnsemble([self.tiny.byte_lm(messages), self.sentencepiece.byte_lm(messages)], (1.0, 0.5),
                                "product")
        if model_id == "px":
            return ProxyTunedByteLM(self.sentencepiece.byte_lm(messages), self.tiny.byte_lm(messages),
                                    self.anti.byte_lm(messages), alpha=0.5)
        raise KeyError(model_id)
