"""VCD's visual distortion: the forward diffusion process applied to a preprocessed image tensor.

Visual contrastive decoding (Leng et al., 2024) contrasts the model's view of an image with its
view of the same image after ``t`` steps of DDPM forward diffusion, using the schedule of the
published implementation: 1000 steps, ``betas = sigmoid(linspace(-6, 6, 1000)) * (5e-3 - 1e-5)
+ 1e-5``, ``alpha_bar = cumprod(1 - betas)`` and

    x_t = sqrt(alpha_bar[t]) * x_0 + sqrt(1 - alpha_bar[t]) * eps,   eps ~ N(0, I)

(``t`` indexes ``alpha_bar`` from 0, as ``q_x(x_0, t)`` does there). ``eps`` is drawn on the CPU
from a generator seeded with the request's seed, or ``DEFAULT_NOISE_SEED``, so a request's noise
is reproducible on every device.
"""
from __future__ import annotations

import torch

__all__ = ["DEFAULT_NOISE_STEP", "NUM_NOISE_STEPS", "noise_image"]

NUM_NOISE_STEPS = 1000
DEFAULT_NOISE_STEP = 500
DEFAULT_NOISE_SEED = 0


def alpha_bar(num_steps: int = NUM_NOISE_STEPS) -> torch.Tensor:
    """[num_steps] float64 cumulative products of ``1 - beta`` for VCD's sigmoid schedule."""
    betas = torch.sigmoid(torch.linspace(-6, 6, num_steps, dtype=torch.float64)) * (0.5e-2 - 1e-5) + 1e-5
    return torch.cumprod(1 - betas, dim=0)


def noise_image(pixel_values: torch.Tensor, step: int, seed: int | None = None) -> torch.Tensor:
    """``pixel_values`` after ``step`` (0..999) forward-diffusion steps; same shape, dtype and device."""
    if not 0 <= step < NUM_NOISE_STEPS:
        raise ValueError(f"noise step must be in [0, {NUM_NOISE_STEPS}), got {step}")
    gen = torch.Generator().manual_seed(DEFAULT_NOISE_SEED if seed is None else seed)
    eps = torch.randn(pixel_values.shape, generator=gen, dtype=torch.float32)
    a = alpha_bar()[step]
    x0 = pixel_values.detach().to("cpu", torch.float32)
    noised = float(a.sqrt()) * x0 + float((1 - a).sqrt()) * eps
    return noised.to(pixel_values.device, pixel_values.dtype)
