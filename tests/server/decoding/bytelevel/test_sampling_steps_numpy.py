"""The byte-level (numpy, float64) sampling steps against their formulas, written out in plain Python."""
from __future__ import annotations

import math

import numpy as np
import pytest

from braid.server.decoding.bytelevel.next_byte import bias_logprobs, min_p_logprobs, renormalized, warp_logprobs

# distinct probabilities, one impossible symbol, in no particular order
P = [0.05, 0.3, 0.0, 0.1, 0.2, 0.15, 0.02, 0.18]


def logprobs() -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.array(P))


def normalized(weights: list[float]) -> list[float]:
    return [w / sum(weights) for w in weights]


def assert_probs(got_logprobs: np.ndarray, want: list[float]) -> None:
    assert np.exp(got_logprobs).tolist() == pytest.approx(want, abs=1e-12)


def test_renormalized_sums_to_one_or_names_the_step():
    assert_probs(renormalized(np.log(np.array([1.0, 3.0])), "x"), [0.25, 0.75])
    with pytest.raises(ValueError, match="ignore_eos leaves no byte possible"):
        renormalized(np.full(3, -np.inf), "ignore_eos")


def test_bias_multiplies_probabilities_by_exp_bias():
    bias = {1: -1.0, 6: 2.0, 2: 5.0}
    assert_probs(bias_logprobs(logprobs(), bias), normalized([p * math.exp(bias.get(i, 0.0)) for i, p in enumerate(P)]))


@pytest.mark.parametrize("min_p", [0.1, 0.5, 1.0])
def test_min_p_keeps_probabilities_at_least_min_p_times_the_max(min_p):
    assert_probs(min_p_logprobs(logprobs(), min_p), normalized([p if p >= min_p * max(P) else 0.0 for p in P]))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_temperature_raises_probabilities_to_one_over_t(temperature):
    assert_probs(warp_logprobs(logprobs(), temperature), normalized([p ** (1 / temperature) for p in P]))


def test_temperature_zero_is_the_argmax():
    assert_probs(warp_logprobs(logprobs(), 0.0), [1.0 if p == max(P) else 0.0 for p in P])


def kept_top(count: int) -> list[float]:
    threshold = sorted(P, reverse=True)[count - 1]
    return normalized([p if p >= threshold and p > 0 else 0.0 for p in P])


@pytest.mark.parametrize("top_k", [1, 3, 6, 8])
def test_top_k_keeps_the_k_most_likely(top_k):
    assert_probs(warp_logprobs(logprobs(), top_k=top_k), kept_top(top_k))


def nucleus_size(top_p: float) -> int:
    """The fewest most-likely symbols whose probabilities add up to ``top_p``."""
    total = 0.0
    for n, p in enumerate(sorted(P, reverse=True), start=1):
        total += p
        if total >= top_p - 1e-12:
            return n
    return len(P)


@pytest.mark.parametrize("top_p", [0.2, 0.3, 0.5, 0.68, 0.9, 1.0])
def test_top_p_keeps_the_smallest_set_reaching_top_p(top_p):
    assert_probs(warp_logprobs(logprobs(), top_p=top_p), kept_top(nucleus_size(top_p)))


def test_top_k_and_top_p_keep_the_smaller_set():
    assert_probs(warp_logprobs(logprobs(), top_k=2, top_p=0.9), kept_top(2))
    assert_probs(warp_logprobs(logprobs(), top_k=5, top_p=0.5), kept_top(nucleus_size(0.5)))
