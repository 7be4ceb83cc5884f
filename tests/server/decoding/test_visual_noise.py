"""VCD's forward-diffusion noise against a hand computation of the published schedule."""
from __future__ import annotations

import math

import pytest
import torch

from braid.server.decoding.visual_noise import DEFAULT_NOISE_SEED, alpha_bar, noise_image


def hand_alpha_bar(t: int) -> float:
    """prod_{i<=t} (1 - beta_i), beta_i = sigmoid(-6 + 12 i / 999) * (5e-3 - 1e-5) + 1e-5, in plain floats."""
    prod = 1.0
    for i in range(t + 1):
        x = -6 + 12 * i / 999
        prod *= 1 - (1 / (1 + math.exp(-x)) * (0.5e-2 - 1e-5) + 1e-5)
    return prod


@pytest.mark.parametrize("step", [0, 1, 250, 500, 999])
def test_schedule_matches_hand_computation(step):
    assert float(alpha_bar()[step]) == pytest.approx(hand_alpha_bar(step), rel=1e-12)


def test_noise_is_the_forward_diffusion_of_the_seeded_gaussian():
    x0 = torch.linspace(-2, 2, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(123))
    a = hand_alpha_bar(500)
    want = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps
    got = noise_image(x0, 500, seed=123)
    assert got.shape == x0.shape and got.dtype == x0.dtype
    assert torch.allclose(got, want, atol=1e-6)
    # Step 500 of this schedule leaves a mix of image and noise, neither negligible.
    assert 0.3 < math.sqrt(a) < 0.95


def test_noise_is_reproducible_and_seeded():
    x0 = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    assert torch.equal(noise_image(x0, 500, seed=5), noise_image(x0, 500, seed=5))
    assert not torch.equal(noise_image(x0, 500, seed=5), noise_image(x0, 500, seed=6))
    assert torch.equal(noise_image(x0, 500), noise_image(x0, 500, seed=DEFAULT_NOISE_SEED))
    assert noise_image(x0, 10).abs().mean() < noise_image(x0, 900).abs().mean()  # more steps, more noise


def test_step_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="noise step"):
        noise_image(torch.zeros(1, 3, 2, 2), 1000)
