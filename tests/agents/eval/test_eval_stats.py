"""The eval statistics against independent references: Wilson's closed formula, and McNemar's exact
p-value as a brute-force sum over the binomial outcomes of the discordant pairs."""
from __future__ import annotations

import math
from fractions import Fraction

import pytest

from braid.agents.eval.stats import mcnemar, wilson

Z = 1.959963984540054  # the 97.5% normal quantile


def wilson_reference(k: int, n: int) -> tuple[float, float]:
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return centre - half, centre + half


def mcnemar_reference(b: int, c: int) -> float:
    """Two-sided exact test: the probability, under Binomial(b + c, 1/2), of every outcome no more likely
    than the observed one."""
    n = b + c
    if n == 0:
        return 1.0
    observed = math.comb(n, b)
    return float(min(Fraction(1), sum(Fraction(math.comb(n, i), 2**n) for i in range(n + 1)
                                      if math.comb(n, i) <= observed)))


@pytest.mark.parametrize(("k", "n"), [(0, 1), (1, 1), (0, 10), (3, 10), (7, 10), (10, 10), (31, 40), (500, 1000),
                                      (1, 997)])
def test_wilson_matches_the_closed_formula(k, n):
    result = wilson(k, n)
    low, high = wilson_reference(k, n)
    assert (result.successes, result.n) == (k, n)
    assert result.value == pytest.approx(k / n)
    assert result.low == pytest.approx(low, abs=1e-9)
    assert result.high == pytest.approx(high, abs=1e-9)
    assert 0.0 <= result.low <= k / n <= result.high <= 1.0


def test_wilson_of_no_items_is_undefined():
    result = wilson(0, 0)
    assert result.n == 0 and math.isnan(result.low) and math.isnan(result.high) and math.isnan(result.value)


@pytest.mark.parametrize(("b", "c"), [(0, 0), (1, 0), (0, 5), (3, 3), (7, 0), (2, 9), (10, 4), (25, 40), (60, 61)])
def test_mcnemar_matches_the_brute_force_binomial_sum(b, c):
    # Items: `b` only A right, `c` only B right, plus 5 both right and 4 neither (they must not matter).
    a_correct, b_correct = {}, {}
    for i in range(b):
        a_correct[f"b{i}"], b_correct[f"b{i}"] = True, False
    for i in range(c):
        a_correct[f"c{i}"], b_correct[f"c{i}"] = False, True
    for i in range(5):
        a_correct[f"s{i}"], b_correct[f"s{i}"] = True, True
    for i in range(4):
        a_correct[f"n{i}"], b_correct[f"n{i}"] = False, False
    result = mcnemar("A", a_correct, "B", b_correct)
    assert (result.only_a, result.only_b, result.both, result.neither, result.n) == (b, c, 5, 4, b + c + 9)
    assert result.p_value == pytest.approx(mcnemar_reference(b, c), rel=1e-9, abs=1e-15)


def test_mcnemar_pairs_only_items_both_arms_have():
    a = {"1": True, "2": True, "3": False, "only-in-a": True}
    b = {"1": False, "2": True, "3": True, "only-in-b": False}
    result = mcnemar("A", a, "B", b)
    assert (result.n, result.both, result.only_a, result.only_b, result.neither) == (3, 1, 1, 1, 0)
    assert result.p_value == pytest.approx(mcnemar_reference(1, 1))
