"""Steering score functions against per-element float64 loops written out by hand."""
from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from braid.server.decoding.steering import most_attended, span_token_positions, steer_scores, suppress_scores


def causal_scores(heads: int, n: int, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    scores = torch.randn(heads, n, n, dtype=torch.float64) * 2
    return scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), -math.inf)


def test_span_token_positions_overlap_and_special_tokens():
    offsets = [(0, 0), (0, 3), (3, 4), (4, 9), (9, 10), (10, 10)]  # BOS and a trailing special token
    assert span_token_positions(offsets, [(3, 5)]) == [2, 3]
    assert span_token_positions(offsets, [(0, 1), (9, 10)]) == [1, 4]
    assert span_token_positions(offsets, [(10, 12)]) == []


@pytest.mark.parametrize("strength", [0.0, 0.625, 2.0])
def test_steer_scores_hand_loop(strength):
    scores = causal_scores(3, 6, 0)
    keys = torch.tensor([False, True, True, False, True, False])
    heads = torch.tensor([True, False, True])
    got = steer_scores(scores, keys, heads, strength)
    for h in range(3):
        for q in range(6):
            for k in range(6):
                s = float(scores[h, q, k])
                want = s + strength * abs(s) if heads[h] and keys[k] and math.isfinite(s) else s
                assert float(got[h, q, k]) == pytest.approx(want, abs=1e-12) or want == float(got[h, q, k])
    assert torch.equal(steer_scores(scores, keys, None, 0.0), scores)
    all_heads = steer_scores(scores, keys, None, strength)
    assert torch.equal(all_heads, steer_scores(scores, keys, torch.ones(3, dtype=torch.bool), strength))


def test_suppression_takes_the_top_tenth_of_visible_steered_keys_per_row():
    n = 30
    scores = causal_scores(2, n, 1)
    steered = [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 20, 21, 22]
    keys = torch.zeros(n, dtype=torch.bool)
    keys[steered] = True
    got_mask = most_attended(scores, keys, 0.1)
    got = suppress_scores(scores, keys, 1.0, 0.1)
    counts = set()
    for h in range(2):
        for q in range(n):
            visible = [k for k in steered if k <= q]
            take = math.ceil(Fraction(1, 10) * len(visible)) if visible else 0
            top = sorted(visible, key=lambda k: -float(scores[h, q, k]))[:take]
            counts.add(take)
            assert sorted(torch.nonzero(got_mask[h, q]).flatten().tolist()) == sorted(top)
            for k in range(n):
                s = float(scores[h, q, k])
                want = s - abs(s) if k in top else s
                assert float(got[h, q, k]) == want or float(got[h, q, k]) == pytest.approx(want, abs=1e-12)
    assert counts == {0, 1, 2}  # rows before the span, small and large visible sets


def test_suppression_fraction_one_hits_every_visible_steered_key():
    scores = causal_scores(1, 5, 2)
    keys = torch.tensor([True, False, True, True, False])
    mask = most_attended(scores, keys, 1.0)
    assert torch.equal(mask, keys[None, None, :] & torch.isfinite(scores))


def test_suppression_count_is_exact_where_floats_round_up():
    scores = torch.arange(100, dtype=torch.float64).reshape(1, 1, 100)
    keys = torch.ones(100, dtype=torch.bool)
    assert 0.07 * 100 > 7  # float error: a naive ceil would take 8 keys
    mask = most_attended(scores, keys, 0.07)
    assert torch.nonzero(mask[0, 0]).flatten().tolist() == list(range(93, 100))
