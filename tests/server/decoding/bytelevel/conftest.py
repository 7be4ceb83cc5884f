"""Tiny tokenizers (byte-level BPE and SentencePiece-BPE with byte fallback), tiny float64
Llamas over them, and a brute-force enumeration of the canonicalized token distribution."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from bytelevel_alphabet import ALPHABET


def byte_level_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {"<eos>": 0, "<bos>": 1, "a": 2, "b": 3, "Ġ": 4, "Ċ": 5, "Ã": 6, "©": 7,
             "Ġa": 8, "ab": 9, "ĠĠ": 10, "ĠĊ": 11, "Ã©": 12, "ba": 13}
    merges = [("Ã", "©"), ("Ġ", "Ċ"), ("a", "b"), ("Ġ", "a"), ("Ġ", "Ġ"), ("b", "a")]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<eos>", "<bos>"])
    return tok


def sentencepiece_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {"<unk>": 0, "<eos>": 1, "<bos>": 2, "<0xC3>": 3, "<0xA9>": 4, "<0x0A>": 5, "▁": 6,
             "a": 7, "b": 8, "▁a": 9, "ab": 10, "▁▁": 11, "ba": 12, "▁b": 13}
    merges = [("a", "b"), ("▁", "a"), ("▁", "▁"), ("b", "a"), ("▁", "b")]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens(["<unk>", "<eos>", "<bos>"])
    return tok


def tiny_float64_llama(vocab_size: int, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                         max_position_embeddings=64, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).double().eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(40.0)  # peaky distributions: canonical vs not matters
    return model


def _ends_mid_char(x: bytes) -> bool:
    try:
        x.decode("utf-8")
        return False
    except UnicodeDecodeError as err:
        return err.reason == "unexpected end of data" and err.end == len(x)


@dataclass
class BruteForce:
    """Enumerates every canonical-prefix token sequence up to ``max_tokens`` with its Q mass."""

    tokenizer: object
    model: object
    bos: int
    eos: int
    token_bytes: list
    max_tokens: int
    raw: bool = False  # True: the plain model P, no canonical masking
    levels: list = field(default_factory=list)       # level n: {ids: log Q(ids)}
    text_mass: dict = field(default_factory=dict)    # text -> Q(text, EOS)
    ended: dict = field(default_factory=dict)        # ids -> Q(ids, EOS)

    def encode(self, text: str):
        cache = self.__dict__.setdefault("_encoded", {})
        if text not in cache:
            cache[text] = tuple(self.tokenizer.encode(text, add_special_tokens=False).ids)
        return cache[text]

    def text(self, ids) -> bytes:
        return b"".join(self.token_bytes[i] for i in ids)

    def is_canonical(self, ids) -> bool:
        try:
            return self.encode(self.text(ids).decode("utf-8")) == tuple(ids)
        except UnicodeDecodeError:
            return False

    def is_valid(self, ids) -> bool:
        """exists z over the alphabet, |z| <= 2: encode(text + z) starts with ids."""
        ids = tuple(ids)
        x = self.text(ids)
        tail = x[len(x.decode("utf-8", errors="ignore").encode()):] if _ends_mid_char(x) else b""
        finishes = [ch.encode()[len(tail):] for ch in ALPHABET if tail and ch.encode().startswith(tail)]
        for x in [x + f for f in finishes] if tail else [x]:
            if self._valid_with_probes(ids, x):
                return True
        return False

    def _valid_with_probes(self, ids, x: bytes) -> bool:
        for n in range(3):
            for z in itertools.product(ALPHABET, repeat=n):
                try:
                    full = (x + "".join(z).encode()).decode("utf-8")
                except UnicodeDecodeError:
                    continue
                if self.encode(full)[: len(ids)] == ids:
                    return True
        return False

    def run(self):
        text_tokens = [i for i, b in enumerate(self.token_bytes) if b is not None]
        level = {(): 0.0}
        for n in range(self.max_tokens + 1):
            self.levels.append(level)
            seqs = list(level)
            with torch.no_grad():
                inputs = torch.tensor([[self.bos, *s] for s in seqs])
                logp = self.model(input_ids=inputs).logits[:, -1].double().log_softmax(-1).numpy()
            nxt = {}
            for s, row in zip(seqs, logp):
                allowed = np.zeros_like(row, dtype=bool)
                for t in text_tokens:
                    allowed[t] = self.raw or self.is_valid(s + (t,))
                allowed[self.eos] = self.raw or self.is_canonical(s)
                masked = np.where(allowed, row, -np.inf)
                masked -= np.logaddexp.reduce(masked[allowed])
                end = level[s] + masked[self.eos]
                if np.isfinite(end):
                    x = self.text(s)
                    self.ended[s] = np.exp(end)
                    self.text_mass[x] = self.text_mass.get(x, 0.0) + np.exp(end)
                if n < self.max_tokens:
                    for t in text_tokens:
                        if np.isfinite(masked[t]):
                            nxt[s + (t,)] = level[s] + masked[t]
            level = nxt
        return self

    def prefix_mass(self, b: bytes) -> float:
        """P(text starts with b): every token sequence has either ended before len(b) tokens or
        has a len(b)-token prefix (each token has at least one byte)."""
        assert len(b) <= self.max_tokens
        tables = self.__dict__.setdefault("_tables", {})
        if len(b) not in tables:
            table = {}
            for s, lq in self.levels[len(b)].items():
                key = self.text(s)[: len(b)]
                table[key] = table.get(key, 0.0) + np.exp(lq)
            tables[len(b)] = table
        total = tables[len(b)].get(b, 0.0)
        total += sum(m for s, m in self.ended.items() if len(s) < len(b) and self.text(s).startswith(b))
        return total


@dataclass
class TinySetup:
    tokenizer: object
    vocab: object
    model: object
    bos: int
    eos: int

    def byte_lm(self, **kwargs):
        from braid.server.decoding.bytelevel import ByteLM, CanonicalityChecker, TransformersLM

        return ByteLM(TransformersLM(self.model), self.vocab, CanonicalityChecker(self.tokenizer, self.vocab),
                      context_ids=(self.bos,), **kwargs)

    def brute_force(self, max_tokens: int, raw: bool = False) -> BruteForce:
        return BruteForce(self.tokenizer, self.model, self.bos, self.eos, self.vocab.token_bytes,
                          max_tokens, raw).run()


def _setup(tokenizer, seed):
    from braid.server.decoding.bytelevel import TokenVocabulary

    eos, bos = tokenizer.token_to_id("<eos>"), tokenizer.token_to_id("<bos>")
    vocab = TokenVocabulary.from_tokenizer(tokenizer, eos_ids=(eos,))
    return TinySetup(tokenizer, vocab, tiny_float64_llama(vocab.size, seed), bos, eos)


@pytest.fixture(scope="session")
def byte_level_setup():
    return _setup(byte_level_tokenizer(), seed=1)


@pytest.fixture(scope="session")
def sentencepiece_setup():
    return _setup(sentencepiece_tokenizer(), seed=2)


@pytest.fixture(scope="session")
def byte_level_setup_b():
    """Another model over the byte-level tokenizer (a third member for ensembles and proxy-tuning)."""
    return _setup(byte_level_tokenizer(), seed=3)


@pytest.fixture(scope="session", params=["byte_level", "sentencepiece"])
def setup_and_brute_force(request, byte_level_setup, sentencepiece_setup):
    setup = byte_level_setup if request.param == "byte_level" else sentencepiece_setup
    return setup, setup.brute_force(max_tokens=4)
