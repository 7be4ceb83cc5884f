"""Each torch sampling step against its formula, written out in plain Python (vLLM's semantics)."""
from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from braid.server.decoding.sampling_steps import (apply_frequency_presence_penalties, apply_logit_bias, apply_min_p,
                                                  apply_repetition_penalty, apply_top_k, apply_top_p)

# ties at 0.5 and at -1.0, a zero logit, one clear maximum
LOGITS = [2.0, 0.5, 0.5, -1.0, 1.0, -1.0, 3.0, 0.0]
ROWS = [LOGITS, LOGITS[::-1]]  # [..., V] steps see the ties at other positions too
INF = -math.inf


def probs(x: list[float]) -> list[float]:
    z = sum(math.exp(v) for v in x)
    return [math.exp(v) / z for v in x]


def assert_row(got: torch.Tensor, want: list[float]) -> None:
    assert got.tolist() == pytest.approx(want, abs=1e-6)


def test_logit_bias_adds():
    bias = {1: 5.0, 3: -2.0, 7: 0.25}
    x = torch.tensor(LOGITS)
    assert apply_logit_bias(x, bias) is x
    assert_row(x, [v + bias.get(i, 0.0) for i, v in enumerate(LOGITS)])


def test_repetition_penalty_divides_positive_and_multiplies_other_seen_logits():
    prompt, output, penalty = [0, 2, 2], [5, 7, 0], 1.7
    want = list(LOGITS)
    for t in set(prompt) | set(output):
        want[t] = want[t] / penalty if want[t] > 0 else want[t] * penalty
    x = torch.tensor(LOGITS)
    assert apply_repetition_penalty(x, prompt, output, penalty) is x
    assert_row(x, want)


def test_frequency_and_presence_penalties_count_output_tokens():
    output, frequency, presence = [3, 3, 3, 4, 6], 0.8, -0.5
    count = Counter(output)
    want = [v - frequency * count[i] - presence * (count[i] > 0) for i, v in enumerate(LOGITS)]
    x = torch.tensor(LOGITS)
    assert apply_frequency_presence_penalties(x, output, frequency, presence) is x
    assert_row(x, want)


@pytest.mark.parametrize("min_p", [0.0, 0.1, 0.2, 1.0])
def test_min_p_drops_tokens_below_min_p_times_the_max(min_p):
    x = torch.tensor(ROWS)
    assert apply_min_p(x, min_p) is x
    for got, row in zip(x, ROWS):
        p = probs(row)
        assert_row(got, [INF if p[i] < min_p * max(p) else v for i, v in enumerate(row)])


@pytest.mark.parametrize("top_k", [0, 1, 2, 4, 5, 7, 8])
def test_top_k_keeps_ties_at_the_kth_value(top_k):
    x = torch.tensor(ROWS)
    assert apply_top_k(x, top_k) is x
    for got, row in zip(x, ROWS):
        kth = sorted(row, reverse=True)[top_k - 1] if top_k else -math.inf
        assert_row(got, [v if v >= kth else INF for v in row])


@pytest.mark.parametrize("top_p", [1.0, 0.97, 0.8, 0.5, 1e-6])
def test_top_p_drops_the_least_likely_tail_and_keeps_the_top_token(top_p):
    x = torch.tensor(ROWS)
    assert apply_top_p(x, top_p) is x
    for got, row in zip(x, ROWS):
        p = probs(row)
        ascending = sorted(range(len(row)), key=lambda i: p[i])
        cumulative, dropped = 0.0, set()
        for i in ascending[:-1]:
            cumulative += p[i]
            if cumulative <= 1 - top_p:
                dropped.add(i)
        assert_row(got, [INF if i in dropped else v for i, v in enumerate(row)])
    assert (torch.isfinite(x).sum(-1) >= 1).all()
