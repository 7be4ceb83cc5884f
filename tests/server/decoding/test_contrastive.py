"""contrastive_scores / plausible against float64 computations written out by hand."""
from __future__ import annotations

import math

import pytest
import torch

from braid.server.decoding.contrastive import contrastive_scores, plausible


def hand_scores(pos: list[float], neg: list[float], alpha: float, beta: float) -> list[float]:
    """Per token, with math only: log-softmax both rows, combine, mask by p >= beta * max p."""
    lse_p = math.log(sum(math.exp(x) for x in pos))
    lse_n = math.log(sum(math.exp(x) for x in neg))
    logp = [x - lse_p for x in pos]
    logn = [x - lse_n for x in neg]
    best = max(math.exp(lp) for lp in logp)
    return [(1 + alpha) * lp - alpha * ln if math.exp(lp) >= beta * best else -math.inf
            for lp, ln in zip(logp, logn)]


@pytest.mark.parametrize("alpha,beta", [(1.0, 0.1), (0.5, 0.0), (2.5, 0.3)])
def test_matches_hand_computation(alpha, beta):
    torch.manual_seed(0)
    pos, neg = torch.randn(3, 40) * 3, torch.randn(3, 40) * 3
    got = contrastive_scores(pos, neg, alpha, beta)
    assert got.dtype == torch.float32
    for row in range(3):
        want = hand_scores(pos[row].double().tolist(), neg[row].double().tolist(), alpha, beta)
        for g, w in zip(got[row].tolist(), want):
            assert (g == w == -math.inf) or g == pytest.approx(w, abs=1e-5)
        assert 0 < sum(math.isfinite(w) for w in want) <= 40


def test_per_row_parameters_equal_scalar_calls():
    torch.manual_seed(1)
    pos, neg = torch.randn(3, 30, dtype=torch.float64), torch.randn(3, 30, dtype=torch.float64)
    alphas, betas = [0.0, 1.0, 3.0], [0.1, 0.0, 0.5]
    got = contrastive_scores(pos, neg, torch.tensor(alphas), torch.tensor(betas))
    assert got.dtype == torch.float64
    for row, (a, b) in enumerate(zip(alphas, betas)):
        torch.testing.assert_close(got[row], contrastive_scores(pos[row], neg[row], a, b), rtol=0, atol=1e-12)


def test_alpha_zero_is_the_positive_log_softmax_exactly():
    torch.manual_seed(2)
    pos, neg = torch.randn(2, 50), torch.randn(2, 50)
    got = contrastive_scores(pos, neg, 0.0, 0.0)
    assert torch.equal(got, pos.log_softmax(-1))
    assert torch.equal(contrastive_scores(pos, neg, torch.tensor([0.0, 0.0]), 0.0), pos.log_softmax(-1))
    # With a plausibility cut the surviving entries are still untouched, the rest -inf.
    cut = contrastive_scores(pos, neg, 0.0, 0.2)
    keep = torch.isfinite(cut)
    assert torch.equal(cut[keep], pos.log_softmax(-1)[keep]) and not keep.all()


def test_plausibility_mask_excludes_what_it_should():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.04, 0.01], dtype=torch.float64)
    logp = probs.log()
    assert plausible(logp, 0.1).tolist() == [True, True, True, False, False]  # 0.04 < 0.05
    assert plausible(logp, 0.5).tolist() == [True, True, False, False, False]  # 0.3 >= 0.25
    assert plausible(logp, 0.0).all()
    # A token the negative branch finds absurd would get the best contrast score, but p is too small.
    neg = torch.tensor([0.5, 0.3, 0.15, 0.04, 1e-9], dtype=torch.float64).log()
    scores = contrastive_scores(logp, neg, 1.0, 0.1)
    unmasked = contrastive_scores(logp, neg, 1.0, 0.0)
    assert int(unmasked.argmax()) == 4 and int(scores.argmax()) != 4
    assert torch.isinf(scores[3:]).all() and torch.isfinite(scores[:3]).all()


def test_low_precision_inputs_are_combined_in_float32():
    torch.manual_seed(3)
    pos, neg = torch.randn(2, 20), torch.randn(2, 20)
    got = contrastive_scores(pos.bfloat16(), neg.bfloat16(), 1.0, 0.1)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, contrastive_scores(pos.bfloat16().float(), neg.bfloat16().float(), 1.0, 0.1))
