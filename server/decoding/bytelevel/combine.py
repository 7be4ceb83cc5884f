"""Pure float64 functions that combine next-byte log-prob vectors (256 bytes + END).

Every member's vector is over the same alphabet, so models with different tokenizers combine
directly. Vectors are stacked along a new first axis; the last axis is the alphabet (extra
middle axes broadcast). Definitions in README.md ("Combining byte LMs").
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["mix", "product", "proxy_tune"]


def validate_weights(weights: Sequence[float], n_members: int, normalize: bool) -> np.ndarray:
    """Weights as float64, checked: one per member, finite, >= 0, not all zero."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 1 or len(weights) != n_members:
        raise ValueError(f"weights: need one weight per member ({n_members}), got {weights.tolist()}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(f"weights: each must be finite and >= 0, got {weights.tolist()}")
    if weights.sum() <= 0:
        raise ValueError(f"weights: at least one must be > 0, got {weights.tolist()}")
    return weights / weights.sum() if normalize else weights


def _stack(logprobs_list) -> np.ndarray:
    if len(logprobs_list) == 0:
        raise ValueError("need at least one log-prob vector")
    return np.stack([np.asarray(lp, dtype=np.float64) for lp in logprobs_list])


def _renormalize(scores: np.ndarray, what: str) -> np.ndarray:
    total = np.logaddexp.reduce(scores, axis=-1, keepdims=True)
    if not np.all(np.isfinite(total)):
        raise ValueError(f"{what}: no byte (nor END) is possible under every member that counts, "
                         "so the combined distribution is undefined")
    return scores - total


def mix(logprobs_list: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """log sum_i w_i p_i with the weights normalized to sum to one (members with w_i = 0 drop out)."""
    stacked = _stack(logprobs_list)
    weights = validate_weights(weights, len(stacked), normalize=True)
    used = weights > 0
    log_w = np.log(weights[used]).reshape((-1,) + (1,) * (stacked.ndim - 1))
    return np.logaddexp.reduce(stacked[used] + log_w, axis=0)


def product(logprobs_list: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """sum_i w_i log p_i, renormalized. Weights are used as given (their scale acts as an inverse
    temperature); members with w_i = 0 drop out, so a byte is impossible iff some member with
    w_i > 0 rules it out. Raises if that leaves nothing possible."""
    stacked = _stack(logprobs_list)
    weights = validate_weights(weights, len(stacked), normalize=False)
    used = weights > 0
    w = weights[used].reshape((-1,) + (1,) * (stacked.ndim - 1))
    return _renormalize((w * stacked[used]).sum(axis=0), "product")


def proxy_tune(base: np.ndarray, expert: np.ndarray, anti_expert: np.ndarray, alpha: float) -> np.ndarray:
    """base + alpha * (expert - anti_expert), renormalized; alpha = 0 gives the base.

    Impossible (-inf) entries: bytes impossible under the base stay impossible. Where the expert
    and the anti-expert both rule a byte out they agree, and the offset is 0 (so expert ==
    anti_expert gives the base). Where exactly one rules it out, the formula gives -inf, or +inf
    for the other sign of alpha; the byte is made impossible either way. Raises if nothing is left.
    """
    if not np.isfinite(alpha):
        raise ValueError(f"alpha: must be a finite number, got {alpha}")
    base = np.asarray(base, dtype=np.float64)
    if alpha == 0:
        return _renormalize(base, "proxy_tune")
    expert = np.asarray(expert, dtype=np.float64)
    anti_expert = np.asarray(anti_expert, dtype=np.float64)
    expert_ok, anti_ok = np.isfinite(expert), np.isfinite(anti_expert)
    with np.errstate(invalid="ignore"):
        offset = np.where(expert_ok & anti_ok, expert - anti_expert, 0.0)
    scores = np.where(np.isfinite(base) & (expert_ok == anti_ok), base + alpha * offset, -np.inf)
    return _renormalize(scores, "proxy_tune")
