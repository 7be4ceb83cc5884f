"""Ensembles and proxy-tuning across tokenizers equal the formulas applied to the members'
brute-force next-byte distributions (each member enumerated on its own tokenizer)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from braid.server.decoding.bytelevel import END, ByteEnsemble, ProxyTunedByteLM

from test_exactness import BYTES

MAX_TOKENS = 3  # brute force depth: next-byte distributions are exact for prefixes up to 2 bytes


@pytest.fixture(scope="module")
def members(byte_level_setup, sentencepiece_setup, byte_level_setup_b):
    """Three tiny models over two tokenizers: their byte LMs (shared, so their caches are reused)
    and their brute-force enumerations."""
    setups = [byte_level_setup, sentencepiece_setup, byte_level_setup_b]
    return [s.byte_lm() for s in setups], [s.brute_force(MAX_TOKENS) for s in setups]


class UnigramByteLM:
    """A context-free byte LM that never produces ``banned``: a member with a smaller support."""

    def __init__(self, banned: int):
        p = np.zeros(257)
        p[list(BYTES)] = 1.0
        p[END] = 1.0
        p[banned] = 0.0
        with np.errstate(divide="ignore"):
            self.logprobs = np.log(p / p.sum())

    def next_byte_logprobs(self, prefix: bytes = b"") -> np.ndarray:
        return self.logprobs


def _brute_next_byte(bf, prefix: bytes) -> np.ndarray | None:
    """P(next byte | prefix) in probability space; None where the member gives the prefix no mass."""
    total = bf.prefix_mass(prefix)
    if total < 1e-13:
        return None
    dist = np.zeros(257)
    for b in BYTES:
        dist[b] = bf.prefix_mass(prefix + bytes([b])) / total
    dist[END] = bf.text_mass.get(prefix, 0.0) / total
    return dist


def _prefixes():
    for n in range(MAX_TOKENS):
        yield from (bytes(p) for p in itertools.product(BYTES, repeat=n))


def _expected_mix(dists, weights):
    alive = [(d, w) for d, w in zip(dists, weights) if d is not None and w > 0]
    return sum(w * d for d, w in alive) / sum(w for _, w in alive)


def _expected_product(dists, weights):
    if any(d is None for d in dists):
        return None
    unnormalized = np.prod([d ** w for d, w in zip(dists, weights)], axis=0)
    return unnormalized / unnormalized.sum()


def _expected_proxy(base, expert, anti, alpha):
    if expert is None and anti is None:
        return base
    keep = ((expert > 0) & (anti > 0)) | ((expert == 0) & (anti == 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((expert > 0) & (anti > 0), expert / anti, 1.0)
    unnormalized = np.where(keep, base * ratio ** alpha, 0.0)
    return unnormalized / unnormalized.sum()


def _check(model, expected_at, members_bf):
    """Every reachable prefix: the combination's next-byte distribution equals the formula."""
    checked = 0
    for prefix in _prefixes():
        if len(prefix) and not np.isfinite(model.prefix_logprob(prefix)):
            continue
        expected = expected_at([_brute_next_byte(bf, prefix) for bf in members_bf])
        got = np.exp(model.next_byte_logprobs(prefix))
        assert got.sum() == pytest.approx(1.0, abs=1e-12)
        assert got == pytest.approx(expected, abs=1e-6), prefix
        checked += 1
    assert checked >= 20
    return checked


def test_mix_of_two_tokenizers_matches_the_formula(members):
    lms, bfs = members
    ensemble = ByteEnsemble(lms[:2], (0.8, 0.2), mode="mix")
    _check(ensemble, lambda d: _expected_mix(d, (0.8, 0.2)), bfs[:2])


def test_product_of_two_tokenizers_matches_the_formula(members):
    lms, bfs = members
    ensemble = ByteEnsemble(lms[:2], (1.0, 0.5), mode="product")
    _check(ensemble, lambda d: _expected_product(d, (1.0, 0.5)), bfs[:2])


@pytest.mark.parametrize("alpha", [0.5, -1.0])
def test_proxy_tuning_across_tokenizers_matches_the_formula(members, alpha):
    lms, bfs = members
    tuned = ProxyTunedByteLM(lms[1], lms[0], lms[2], alpha)
    _check(tuned, lambda d: _expected_proxy(d[0], d[1], d[2], alpha), [bfs[1], bfs[0], bfs[2]])


def test_a_member_that_rules_a_prefix_out_drops_out_of_a_mix(members):
    lms, bfs = members
    b = ord("b")
    unigram = UnigramByteLM(banned=b)
    mixed = ByteEnsemble([lms[0], unigram], (0.25, 0.75), mode="mix")
    expected_b = 0.25 * _brute_next_byte(bfs[0], b"")[b]  # the unigram gives "b" nothing
    assert np.exp(mixed.next_byte_logprobs(b"")[b]) == pytest.approx(expected_b, abs=1e-6)
    # after "b" the unigram has no conditional: the mix is the other member's alone
    assert np.exp(mixed.next_byte_logprobs(b"b")) == pytest.approx(_brute_next_byte(bfs[0], b"b"), abs=1e-6)
    multiplied = ByteEnsemble([lms[0], unigram], mode="product")
    assert np.exp(multiplied.next_byte_logprobs(b"")[b]) == 0.0
    assert multiplied.prefix_logprob(b"b") == -np.inf
    with pytest.raises(ValueError, match="probability zero"):
        multiplied.next_byte_logprobs(b"b")


def test_combined_text_probabilities_chain_the_conditionals(members):
    lms, bfs = members
    ensemble = ByteEnsemble(lms[:2], (0.6, 0.4), mode="mix")
    for text in (b"ab", b" a", b"\xc3\xa9"):
        conditionals = [_expected_mix([_brute_next_byte(bf, text[:n]) for bf in bfs[:2]], (0.6, 0.4))
                        for n in range(len(text) + 1)]
        chained = np.prod([conditionals[n][text[n]] for n in range(len(text))])
        assert np.exp(ensemble.prefix_logprob(text)) == pytest.approx(chained, rel=1e-6)
        assert np.exp(ensemble.logprob(text)) == pytest.approx(chained * conditionals[-1][END], rel=1e-6)


def test_ensembles_nest_and_sample_reproducibly(members):
    lms, _ = members
    inner = ByteEnsemble(lms[:2], mode="product")
    outer = ByteEnsemble([inner, lms[2]], (0.5, 0.5), mode="mix")
    expected = np.logaddexp(inner.next_byte_logprobs(b"a") + np.log(0.5),
                            lms[2].next_byte_logprobs(b"a") + np.log(0.5))
    assert outer.next_byte_logprobs(b"a") == pytest.approx(expected, abs=1e-12)
    first = [outer.sample(max_bytes=4, seed=s, temperature=0.9) for s in range(3)]
    assert first == [outer.sample(max_bytes=4, seed=s, temperature=0.9) for s in range(3)]


def test_invalid_combinations_are_rejected(members):
    lm = members[0][0]
    with pytest.raises(ValueError, match="members"):
        ByteEnsemble([lm])
    with pytest.raises(ValueError, match="mode"):
        ByteEnsemble([lm, lm], mode="average")
    with pytest.raises(ValueError, match="weights"):
        ByteEnsemble([lm, lm], weights=(1.0, -1.0))
    with pytest.raises(TypeError, match="next_byte_logprobs"):
        ByteEnsemble([lm, object()])
    with pytest.raises(ValueError, match="alpha"):
        ProxyTunedByteLM(lm, lm, lm, alpha=float("nan"))
