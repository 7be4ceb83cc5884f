"""Pure float64 functions: canonical masking, next-byte aggregation, the sampling steps
(bias, min_p, temperature / top-k / top-p warps).

Index 256 of a next-byte vector is END (the text ends here).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["END", "bias_logprobs", "min_p_logprobs", "warp_logprobs", "renormalized", "sample_bytes"]

END = 256


def logsumexp(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return -np.inf
    top = values.max()
    if not np.isfinite(top):
        return float(top)
    return float(top + np.log(np.exp(values - top).sum()))


def canonical_logprobs(logprobs: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mask tokens that would leave the canonical set and renormalize (all -inf if none is left)."""
    masked = np.where(valid, np.asarray(logprobs, dtype=np.float64), -np.inf)
    total = logsumexp(masked)
    return masked - total if np.isfinite(total) else masked


def aggregate_next_byte(inside_bytes: np.ndarray, inside_logq: np.ndarray, boundary_logq: np.ndarray,
                        boundary_token_logq: np.ndarray, first_byte: np.ndarray,
                        eos_ids) -> np.ndarray:
    """Normalized log P(next byte | prefix) over 256 bytes + END.

    ``inside_*``: branches whose text runs past the prefix (their next byte is fixed) and their
    log-mass; ``boundary_logq[i]`` + ``boundary_token_logq[i]``: branches whose text ends exactly
    at the prefix and their next-token log-probs; ``first_byte[t]`` (-1 for special tokens)
    groups tokens by the byte they start with; ``eos_ids`` columns give END.
    """
    scores = [np.asarray(inside_logq, dtype=np.float64).ravel()]
    joint = np.asarray(boundary_logq, dtype=np.float64)[:, None] + np.asarray(boundary_token_logq, dtype=np.float64)
    scores.append(joint.ravel())
    top = max((s.max() for s in scores if s.size), default=-np.inf)
    if not np.isfinite(top):
        raise ValueError("the prefix has probability zero")
    mass = np.zeros(257, dtype=np.float64)
    if len(inside_bytes):
        np.add.at(mass, np.asarray(inside_bytes, dtype=np.int64), np.exp(np.asarray(inside_logq) - top))
    if joint.size:
        weights = np.exp(joint - top)
        text = first_byte >= 0
        mass[:256] += np.bincount(first_byte[text], weights=weights[:, text].sum(0), minlength=256)
        mass[END] += weights[:, list(eos_ids)].sum()
    with np.errstate(divide="ignore"):
        logmass = np.log(mass)
    return logmass - np.log(mass.sum())


def renormalized(logprobs: np.ndarray, what: str) -> np.ndarray:
    """``logprobs`` shifted to sum to one; ``what`` names the step in the error if none is left."""
    total = logsumexp(logprobs)
    if not np.isfinite(total):
        raise ValueError(f"{what} leaves no byte possible")
    return logprobs - total


def bias_logprobs(logprobs: np.ndarray, bias: dict[int, float]) -> np.ndarray:
    """``logprobs[i] + bias[i]``, renormalized."""
    out = np.array(logprobs, dtype=np.float64)
    for symbol, value in bias.items():
        out[symbol] += value
    return renormalized(out, "logit_bias")


def min_p_logprobs(logprobs: np.ndarray, min_p: float) -> np.ndarray:
    """Drop symbols whose probability is below ``min_p`` times the largest; renormalized."""
    out = np.array(logprobs, dtype=np.float64)
    out[out < np.log(min_p) + out.max()] = -np.inf
    return renormalized(out, "min_p")


def warp_logprobs(logprobs: np.ndarray, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0) -> np.ndarray:
    """Temperature, then top-k (ties with the k-th kept), then nucleus (top-p) over the top-k
    renormalized, as vLLM's sampler does; returns normalized log-probs."""
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
        raise ValueError("need temperature >= 0, 0 < top_p <= 1, top_k >= 0")
    logprobs = np.asarray(logprobs, dtype=np.float64)
    if temperature == 0:
        out = np.full_like(logprobs, -np.inf)
        out[int(np.argmax(logprobs))] = 0.0
        return out
    scaled = logprobs / temperature
    scaled = scaled - logsumexp(scaled)
    order = np.argsort(-scaled, kind="stable")
    if 0 < top_k < len(scaled):
        order = order[scaled[order] >= scaled[order[top_k - 1]]]
    kept = np.exp(scaled[order])
    cumulative = np.cumsum(kept / kept.sum())
    n_nucleus = int(np.searchsorted(cumulative, top_p - 1e-12)) + 1
    keep = np.zeros_like(scaled, dtype=bool)
    keep[order[:n_nucleus]] = True
    keep &= np.isfinite(scaled)
    out = np.where(keep, scaled, -np.inf)
    return out - logsumexp(out)


def sample_bytes(next_byte_logprobs: Callable[[bytes], np.ndarray], prefix: bytes, max_bytes: int,
                 rng: np.random.Generator, temperature: float = 1.0, top_p: float = 1.0,
                 top_k: int = 0) -> tuple[bytes, bool]:
    """Sample a continuation of ``prefix`` byte by byte from any next-byte distribution:
    (bytes, ended with END)."""
    out = b""
    while len(out) < max_bytes:
        logprobs = warp_logprobs(next_byte_logprobs(prefix + out), temperature, top_k, top_p)
        symbol = int(rng.choice(257, p=np.exp(logprobs) / np.exp(logprobs).sum()))
        if symbol == END:
            return out, True
        out += bytes([symbol])
    return out, False
