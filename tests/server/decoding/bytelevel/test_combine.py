"""mix / product / proxy_tune against the formulas written out in probability space."""
from __future__ import annotations

import numpy as np
import pytest

from braid.server.decoding.bytelevel.combine import mix, product, proxy_tune, validate_weights


def _random_logprobs(rng, zeros: int = 40) -> np.ndarray:
    p = rng.dirichlet(np.full(257, 0.3))
    p[rng.choice(257, zeros, replace=False)] = 0.0
    with np.errstate(divide="ignore"):
        return np.log(p / p.sum())


@pytest.fixture
def vectors():
    rng = np.random.default_rng(7)
    return [_random_logprobs(rng) for _ in range(3)]


def test_mix_is_the_weighted_average_of_probabilities(vectors):
    weights = [2.0, 1.0, 0.5]
    expected = sum(w * np.exp(v) for w, v in zip(weights, vectors)) / sum(weights)
    got = mix(vectors, weights)
    assert np.exp(got) == pytest.approx(expected, abs=1e-12)
    assert np.exp(got).sum() == pytest.approx(1.0, abs=1e-12)
    # a byte is impossible only if every member with weight > 0 rules it out
    assert np.array_equal(np.isfinite(got), expected > 0)


def test_mix_with_a_zero_weight_ignores_that_member(vectors):
    assert mix(vectors, [1.0, 0.0, 1.0]) == pytest.approx(mix([vectors[0], vectors[2]], [1.0, 1.0]))


def test_product_is_the_renormalized_weighted_geometric_mean(vectors):
    weights = [1.0, 0.5, 2.0]
    unnormalized = np.prod([np.exp(v) ** w for w, v in zip(weights, vectors)], axis=0)
    expected = unnormalized / unnormalized.sum()
    got = product(vectors, weights)
    assert np.exp(got) == pytest.approx(expected, abs=1e-12)
    assert np.exp(got).sum() == pytest.approx(1.0, abs=1e-12)
    assert np.array_equal(np.isfinite(got), expected > 0)


def test_product_weights_act_as_inverse_temperature(vectors):
    one = np.exp(product([vectors[0]], [1.0]))
    two = np.exp(product([vectors[0]], [2.0]))
    assert one == pytest.approx(np.exp(vectors[0]), abs=1e-12)
    assert two == pytest.approx(one ** 2 / (one ** 2).sum(), abs=1e-12)


def test_product_with_disjoint_supports_is_an_error():
    a = np.full(257, -np.inf)
    b = np.full(257, -np.inf)
    a[:10], b[10:20] = np.log(0.1), np.log(0.1)
    with pytest.raises(ValueError, match="no byte"):
        product([a, b], [1.0, 1.0])


def test_proxy_tune_is_base_times_expert_over_anti_expert_to_the_alpha(vectors):
    base, expert, anti = vectors
    for alpha in (0.5, 1.0, -0.7):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where((np.exp(expert) > 0) & (np.exp(anti) > 0), np.exp(expert) / np.exp(anti), np.nan)
            # both rule the byte out: no offset; exactly one: the byte is impossible
            ratio = np.where((np.exp(expert) == 0) & (np.exp(anti) == 0), 1.0, ratio)
        unnormalized = np.where(np.isnan(ratio), 0.0, np.exp(base) * np.nan_to_num(ratio, nan=1.0) ** alpha)
        expected = unnormalized / unnormalized.sum()
        got = proxy_tune(base, expert, anti, alpha)
        assert np.exp(got) == pytest.approx(expected, abs=1e-12), alpha
        assert np.exp(got).sum() == pytest.approx(1.0, abs=1e-12)


def test_proxy_tune_special_cases(vectors):
    base, expert, anti = vectors
    assert proxy_tune(base, expert, anti, 0.0) == pytest.approx(base)
    assert proxy_tune(base, expert, expert, 3.0) == pytest.approx(base)  # expert == anti-expert: no change
    with pytest.raises(ValueError, match="alpha"):
        proxy_tune(base, expert, anti, float("inf"))


def test_combinations_broadcast_over_a_batch(vectors):
    batch = np.stack([vectors[0], vectors[1]])
    other = np.stack([vectors[2], vectors[0]])
    got = mix([batch, other], [1.0, 3.0])
    assert got[1] == pytest.approx(mix([vectors[1], vectors[0]], [1.0, 3.0]))


@pytest.mark.parametrize("weights, message", [
    ([1.0], "one weight per member"),
    ([1.0, -1.0], ">= 0"),
    ([1.0, float("nan")], "finite"),
    ([1.0, float("inf")], "finite"),
    ([0.0, 0.0], "at least one"),
])
def test_weights_are_validated(weights, message):
    with pytest.raises(ValueError, match=message):
        validate_weights(weights, 2, normalize=True)
    with pytest.raises(ValueError, match="weights"):
        mix([np.zeros(257), np.zeros(257)], weights)


def test_weights_normalize_only_when_asked():
    assert validate_weights([1.0, 3.0], 2, normalize=True) == pytest.approx([0.25, 0.75])
    assert validate_weights([1.0, 3.0], 2, normalize=False) == pytest.approx([1.0, 3.0])
