"""Prompts that end mid-token: the byte-level LM conditions exactly; token-level decoding of
the prompt's own tokenization does not."""
from __future__ import annotations

import numpy as np
import pytest

from braid.server.decoding.bytelevel import END

from test_exactness import BYTES

PROMPTS = {"byte_level": [b"a", b" ", b"\xc3", b"b a"], "sentencepiece": [b"a", b" ", b"b", b"\xc3"]}


def _token_level_next_byte(setup, prompt: bytes) -> np.ndarray:
    """Next-byte distribution of plain token-level decoding after encode(prompt)."""
    ids = setup.tokenizer.encode(prompt.decode("utf-8", errors="ignore"), add_special_tokens=False).ids
    lm = setup.byte_lm()
    logq = lm.token_logq(tuple(ids))  # canonical masking, as favourable to token level as can be
    dist = np.zeros(257)
    for t in np.flatnonzero(np.isfinite(logq)):
        dist[END if t == setup.eos else setup.vocab.first_byte[t]] += np.exp(logq[t])
    return dist


def test_prompt_cut_mid_token_is_conditioned_exactly(setup_and_brute_force):
    setup, bf = setup_and_brute_force
    kind = setup.vocab.kind
    lm = setup.byte_lm()
    largest_gap = 0.0
    for prompt in PROMPTS[kind]:
        total = bf.prefix_mass(prompt)
        assert total > 0
        exact = np.zeros(257)
        for b in BYTES:
            exact[b] = bf.prefix_mass(prompt + bytes([b])) / total
        exact[END] = bf.text_mass.get(prompt, 0.0) / total
        assert np.exp(lm.next_byte_logprobs(prompt)) == pytest.approx(exact, abs=1e-6)
        for b in BYTES:  # whole continuations y of one byte: P(text = prompt + y | prompt)
            expected = bf.text_mass.get(prompt + bytes([b]), 0.0) / total
            assert np.exp(lm.logprob(bytes([b]), prefix=prompt)) == pytest.approx(expected, abs=1e-6)
        choices = lm.continuation_choices(prompt)
        assert np.exp([lp for *_, lp in choices]).sum() == pytest.approx(1.0, abs=1e-12)
        assert all(setup.vocab.decode(ids).startswith(prompt) for ids, _, _ in choices)
        if prompt.decode("utf-8", errors="ignore").encode() == prompt:  # token level can start
            largest_gap = max(largest_gap, 0.5 * np.abs(_token_level_next_byte(setup, prompt) - exact).sum())
    assert largest_gap > 0.05  # the prompt-boundary problem is real on these models
