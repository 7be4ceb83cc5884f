"""Accuracy with its 95% Wilson interval, and the exact McNemar test between two arms."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from scipy.stats import binomtest

__all__ = ["McNemar", "Proportion", "mcnemar", "wilson"]


@dataclass(frozen=True)
class Proportion:
    successes: int
    n: int
    low: float
    high: float
    """95% Wilson score interval; NaN when n = 0."""

    @property
    def value(self) -> float:
        return self.successes / self.n if self.n else math.nan


def wilson(successes: int, n: int) -> Proportion:
    if n == 0:
        return Proportion(0, 0, math.nan, math.nan)
    ci = binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return Proportion(successes, n, float(ci.low), float(ci.high))


@dataclass(frozen=True)
class McNemar:
    """Two arms on the items both have a result for: `only_a` (b) items only arm A got right,
    `only_b` (c) only B; p-value of the exact (binomial) two-sided test that b and c are equally likely."""

    arm_a: str
    arm_b: str
    n: int
    both: int
    only_a: int
    only_b: int
    neither: int
    p_value: float


def mcnemar(arm_a: str, a: Mapping[str, bool], arm_b: str, b: Mapping[str, bool]) -> McNemar:
    """`a` and `b` map item ids to correctness; items missing from either are left out."""
    shared = a.keys() & b.keys()
    both = sum(a[i] and b[i] for i in shared)
    only_a = sum(a[i] and not b[i] for i in shared)
    only_b = sum(b[i] and not a[i] for i in shared)
    discordant = only_a + only_b
    p_value = binomtest(only_a, discordant, 0.5).pvalue if discordant else 1.0
    return McNemar(arm_a, arm_b, len(shared), both, only_a, only_b, len(shared) - both - discordant,
                   float(p_value))
