"""Cover logic on SmolLM2's real byte-level BPE tokenizer, over tricky text."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from braid.server.decoding.bytelevel import ByteLM, CanonicalityChecker, TokenVocabulary

TEXTS = ["Hello,  world!\n", "x = 12345+67;", "def f(a):\n    return a", "日本語のテキスト",
         "emoji 😀👍🏽 ok", "tab\t\tend  ", "it's  \n x"]


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from transformers import AutoTokenizer

    from braid.server.weights import resolve_source

    import platformdirs

    home = Path(os.environ.get("BRAID_HOME") or platformdirs.user_cache_dir("braid"))
    try:
        folder = resolve_source("smollm2-135m-instruct", home)
    except Exception as err:  # noqa: BLE001 - not installed or not convertible here
        pytest.skip(f"SmolLM2 is not available: {err}")
    return AutoTokenizer.from_pretrained(folder)


class SubstringLM:
    """Uniform over the tokens whose bytes occur in ``text``; the rest get probability zero."""

    def __init__(self, vocab: TokenVocabulary, text: bytes):
        self.vocab_size = vocab.size
        row = np.full(vocab.size, -np.inf)
        for i, piece in enumerate(vocab.token_bytes):
            if piece and piece in text or i in vocab.eos_ids:
                row[i] = 0.0
        self.row = torch.tensor(row).log_softmax(-1)

    def next_token_logprobs(self, prefixes):
        return self.row.expand(len(prefixes), -1).clone()


def test_canonical_tokenization_is_among_the_covers(smollm2_tokenizer):
    vocab = TokenVocabulary.from_tokenizer(smollm2_tokenizer)
    assert vocab.kind == "byte_level" and vocab.token_bytes[smollm2_tokenizer.convert_tokens_to_ids("Ġthe")] == b" the"
    checker = CanonicalityChecker(smollm2_tokenizer, vocab)
    for text in TEXTS:
        data = text.encode()
        canonical = tuple(smollm2_tokenizer.encode(text, add_special_tokens=False))
        assert checker.is_canonical(canonical) and checker.is_valid_prefix(canonical[:-1])
        lm = ByteLM(SubstringLM(vocab, data), vocab, checker, context_ids=(0,), min_token_prob=1e-9)
        for n in range(1, len(data) + 1):
            cover = lm.cover(data[:n])
            assert all(b.text.startswith(data[:n]) for b in cover)
            k = next(k for k in range(1, len(canonical) + 1) if len(vocab.decode(canonical[:k])) >= n)
            assert canonical[:k] in {b.ids for b in cover}, (text, n)
        assert np.isfinite(lm.logprob(data))


def test_invalid_utf8_has_no_cover(smollm2_tokenizer):
    vocab = TokenVocabulary.from_tokenizer(smollm2_tokenizer)
    checker = CanonicalityChecker(smollm2_tokenizer, vocab)
    for data in [b"a\xff", "中".encode()[:2] + b"a", b"ok\x80"]:
        lm = ByteLM(SubstringLM(vocab, data + "中".encode()), vocab, checker, context_ids=(0,), min_token_prob=1e-9)
        assert lm.cover(data) == []
        good = data[:-1]
        assert lm.cover(good) and np.exp(lm.next_byte_logprobs(good)[data[-1]]) == 0.0
