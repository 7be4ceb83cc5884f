"""Byte-by-byte sampling gives the same text distribution as token-level sampling of the
canonicalized model; token-level sampling of the plain model (a wrong byte LM) does not."""
from __future__ import annotations

from collections import Counter

import numpy as np

MAX_BYTES = 2
SAMPLES = 3000


def _outcome(text: bytes, ended: bool):
    return (text[:MAX_BYTES], False) if len(text) >= MAX_BYTES else (text, ended)


def _token_level_samples(setup, byte_lm, rng, canonical: bool):
    outcomes = Counter()
    cache = {}
    for _ in range(SAMPLES):
        ids, ended = (), False
        while len(setup.vocab.decode(ids)) < MAX_BYTES:
            if ids not in cache:
                if canonical:
                    cache[ids] = np.exp(byte_lm.token_logq(ids))
                else:
                    cache[ids] = np.exp(byte_lm.lm.next_token_logprobs([byte_lm.context_ids + ids])[0].numpy())
                    cache[ids][[i for i, b in enumerate(setup.vocab.token_bytes) if b is None and i != setup.eos]] = 0
                    cache[ids] /= cache[ids].sum()
            t = int(rng.choice(len(cache[ids]), p=cache[ids]))
            if t == setup.eos:
                ended = True
                break
            ids += (t,)
        outcomes[_outcome(setup.vocab.decode(ids), ended)] += 1
    return outcomes


def _tv(counts: Counter, exact: dict) -> float:
    keys = set(counts) | set(exact)
    return 0.5 * sum(abs(counts.get(k, 0) / SAMPLES - exact.get(k, 0.0)) for k in keys)


def test_byte_sampling_matches_token_sampling(byte_level_setup):
    setup = byte_level_setup
    lm = setup.byte_lm()
    rng = np.random.default_rng(0)
    byte_counts = Counter(_outcome(*lm.sample(max_bytes=MAX_BYTES, rng=rng)) for _ in range(SAMPLES))
    # the exact outcome law, from the byte LM's own probabilities (checked against brute force elsewhere)
    exact = {}
    for key in {k for k in byte_counts} | {k for k in _token_level_samples(setup, lm, rng, True)}:
        text, ended = key
        exact[key] = np.exp(lm.logprob(text)) if ended else np.exp(lm.prefix_logprob(text))
    token_counts = _token_level_samples(setup, lm, np.random.default_rng(1), canonical=True)
    plain_counts = _token_level_samples(setup, lm, np.random.default_rng(2), canonical=False)
    tolerance = 0.05  # sampling noise here is ~0.02
    assert _tv(byte_counts, exact) < tolerance
    assert _tv(token_counts, exact) < tolerance
    assert 0.5 * sum(abs(byte_counts[k] - token_counts[k]) for k in set(byte_counts) | set(token_counts)) / SAMPLES < tolerance
    assert _tv(plain_counts, exact) > 2 * tolerance  # a byte LM ignoring canonicality would fail


def test_sampling_is_reproducible_with_a_seed(sentencepiece_setup):
    lm = sentencepiece_setup.byte_lm()
    first = [lm.sample(max_bytes=6, seed=s, temperature=0.8, top_p=0.9) for s in range(5)]
    again = [lm.sample(max_bytes=6, seed=s, temperature=0.8, top_p=0.9) for s in range(5)]
    assert first == again
