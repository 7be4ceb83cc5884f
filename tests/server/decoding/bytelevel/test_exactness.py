"""The byte-level LM equals the brute-force text marginal of the canonicalized token LM."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from braid.server.decoding.bytelevel import END, CanonicalityChecker

from bytelevel_alphabet import ALPHABET

BYTES = sorted({b for ch in ALPHABET for b in ch.encode()})


def _prefixes(max_len):
    for n in range(max_len + 1):
        yield from (bytes(p) for p in itertools.product(BYTES, repeat=n))


def test_validity_matches_brute_force(setup_and_brute_force):
    setup, bf = setup_and_brute_force
    checker = CanonicalityChecker(setup.tokenizer, setup.vocab)
    text_tokens = [i for i, b in enumerate(setup.vocab.token_bytes) if b]
    for n in (1, 2, 3):
        for ids in itertools.product(text_tokens, repeat=n):
            assert checker.is_valid_prefix(ids) == bf.is_valid(ids), ids
            assert checker.is_canonical(ids) == bf.is_canonical(ids), ids


def test_prefix_and_text_probabilities_match_brute_force(setup_and_brute_force):
    setup, bf = setup_and_brute_force
    lm = setup.byte_lm()
    impossible = 0
    for prefix in _prefixes(3):
        expected = bf.prefix_mass(prefix)
        assert np.exp(lm.prefix_logprob(prefix)) == pytest.approx(expected, abs=1e-9), prefix
        if expected > 0:
            chained = sum(lm.next_byte_logprobs(prefix[:n])[prefix[n]] for n in range(len(prefix)))
            assert np.exp(chained) == pytest.approx(expected, abs=1e-9), prefix
            assert np.exp(lm.logprob(prefix)) == pytest.approx(bf.text_mass.get(prefix, 0.0), abs=1e-9)
        else:  # the byte that makes the text impossible gets exactly zero probability after a possible prefix
            first = next(n for n in range(len(prefix)) if bf.prefix_mass(prefix[:n + 1]) == 0)
            assert lm.next_byte_logprobs(prefix[:first])[prefix[first]] == -np.inf, prefix
            assert lm.prefix_logprob(prefix) == -np.inf, prefix
            impossible += 1
    assert impossible > 0


def test_next_byte_distributions_match_brute_force(setup_and_brute_force):
    setup, bf = setup_and_brute_force
    lm = setup.byte_lm()
    checked = 0
    for prefix in _prefixes(3):
        total = bf.prefix_mass(prefix)
        if total < 1e-12:
            continue
        dist = np.exp(lm.next_byte_logprobs(prefix))
        assert dist.sum() == pytest.approx(1.0, abs=1e-12)
        for b in BYTES:
            assert dist[b] == pytest.approx(bf.prefix_mass(prefix + bytes([b])) / total, abs=1e-6), (prefix, b)
        assert dist[END] == pytest.approx(bf.text_mass.get(prefix, 0.0) / total, abs=1e-6)
        outside = [b for b in range(256) if b not in BYTES]
        assert dist[outside].sum() == pytest.approx(0.0, abs=1e-12)
        checked += 1
    assert checked > 30
