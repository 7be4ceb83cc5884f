"""The near-exact speed knobs: ``unchecked="keep"`` (tokens below ``min_token_prob`` allowed unchecked)
and ``min_branch_share`` (branches below a share of the most likely one dropped), against
references computed from plain model forwards, the brute-force validity and the exact cover."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from braid.server.decoding.bytelevel.cover import advance_cover, split_cover

TEXTS = [bytes(t) for t in itertools.product(b"ab ", repeat=2)] + [b"ab a", b" ba", b"a b"]


def reference_row(setup, brute, ids, min_token_prob):
    """log Q(next token | ids) with ``keep``: checked (by brute force) only at or above min_token_prob."""
    with torch.no_grad():
        row = setup.model(input_ids=torch.tensor([[setup.bos, *ids]])).logits[0, -1].double().log_softmax(-1).numpy()
    allowed = np.zeros(len(row), dtype=bool)
    for t, piece in enumerate(setup.vocab.token_bytes):
        if piece is not None:
            allowed[t] = row[t] < np.log(min_token_prob) or brute.is_valid(ids + (t,))
    allowed[setup.eos] = brute.is_canonical(ids)
    masked = np.where(allowed, row, -np.inf)
    return masked - np.logaddexp.reduce(masked[allowed])


@pytest.mark.parametrize("fixture", ["byte_level_setup", "sentencepiece_setup"])
def test_keep_allows_the_unchecked_tail_with_the_models_probabilities(fixture, request):
    setup = request.getfixturevalue(fixture)
    brute = setup.brute_force(max_tokens=0)
    min_token_prob = 0.05
    keep, mask = setup.byte_lm(min_token_prob=min_token_prob, unchecked="keep"), setup.byte_lm(min_token_prob=min_token_prob)
    exact = setup.byte_lm()
    kept_invalid = 0
    for ids in [(), *[(t,) for t, b in enumerate(setup.vocab.token_bytes) if b is not None]]:
        want = reference_row(setup, brute, ids, min_token_prob)
        got = keep.token_logq(ids)
        np.testing.assert_allclose(got, want, atol=1e-9)
        kept_invalid += int((np.isfinite(got) & ~np.isfinite(exact.token_logq(ids))).sum())
        assert (np.isfinite(mask.token_logq(ids)) <= np.isfinite(exact.token_logq(ids))).all()
    assert kept_invalid > 0, "some non-canonical tail token should be kept unchecked"


@pytest.mark.parametrize("fixture", ["byte_level_setup", "sentencepiece_setup"])
def test_branch_share_drops_exactly_the_branches_below_the_share(fixture, request):
    setup = request.getfixturevalue(fixture)
    exact = setup.byte_lm()
    share = 0.2
    dropped = 0
    for text in TEXTS:
        for n in range(len(text)):
            parent = exact.cover(text[:n])
            if not parent or not exact.cover(text[:n + 1]):
                continue
            exact._ensure_token_logq(split_cover(parent, n)[1])
            args = (parent, n, text[n], exact._token_logq, setup.vocab.token_bytes, exact._tokens_by_first_byte)
            full = advance_cover(*args)
            top = max(b.logq for b in full)
            want = {(b.ids, b.logq) for b in full if b.logq >= top + np.log(share)}
            got = {(b.ids, b.logq) for b in advance_cover(*args, min_share=share)}
            assert got == want
            dropped += len(full) - len(want)
    assert dropped > 0, "the share should drop some branches of the tiny model"


def test_branch_share_keeps_the_branches_of_a_text_being_read(byte_level_setup):
    setup = byte_level_setup
    exact, pruned = setup.byte_lm(), setup.byte_lm(min_branch_share=0.5)
    lost = [text for text in map(bytes, itertools.product(b"ab ", repeat=3)) if exact.cover(text) and not pruned.cover(text)]
    assert lost, "the tiny model should have texts that the pruned cover cannot spell"
    for text in lost:
        reading = setup.byte_lm(min_branch_share=0.5, always_check=text)
        steps = [reading.next_byte_logprobs(text[:n])[text[n]] for n in range(len(text))]
        assert np.isfinite(steps).all() and max(steps) <= 0, text


def test_knobs_are_validated(byte_level_setup):
    with pytest.raises(ValueError, match="unchecked"):
        byte_level_setup.byte_lm(unchecked="drop")
    with pytest.raises(ValueError, match="min_branch_share"):
        byte_level_setup.byte_lm(min_branch_share=1.0)
