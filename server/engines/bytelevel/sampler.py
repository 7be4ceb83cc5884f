"""Next-byte log-probs -> the byte to emit, under a request's sampling parameters (pure float64).

Order: ``logit_bias`` (added, renormalized), END masked when the request ignores EOS; then
greedy, or temperature, ``min_p``, top-k and top-p (`warp_logprobs`), and one draw with the
request's generator. Without bias and ``min_p`` this is exactly `ByteLM.sample`'s draw, so a
seeded request reproduces the library's ``sample(prompt, seed=...)``.
"""
from __future__ import annotations

import numpy as np

from ...decoding.bytelevel.next_byte import END, bias_logprobs, min_p_logprobs, renormalized, warp_logprobs
from ...sampling import SamplingSpec
from ..base import TokenLogprob


def sampling_logprobs(logprobs: np.ndarray, spec: SamplingSpec) -> np.ndarray:
    """The distribution a byte is drawn from (normalized log-probs over 256 bytes + END)."""
    out = np.asarray(logprobs, dtype=np.float64)
    if spec.logit_bias:
        out = bias_logprobs(out, spec.logit_bias)
    if END not in spec.stop_token_ids:  # ignore_eos: the text must go on
        out = out.copy()
        out[END] = -np.inf
        out = renormalized(out, "ignore_eos")
    if spec.greedy:
        return warp_logprobs(out, 0.0)
    if spec.min_p > 0:
        scaled = min_p_logprobs(renormalized(out / spec.temperature, "temperature"), spec.min_p)
        return warp_logprobs(scaled, 1.0, spec.top_k, spec.top_p)
    return warp_logprobs(out, spec.temperature, spec.top_k, spec.top_p)


def choose_byte(logprobs: np.ndarray, spec: SamplingSpec, rng: np.random.Generator) -> int:
    probs = np.exp(sampling_logprobs(logprobs, spec))
    return int(rng.choice(len(probs), p=probs / probs.sum()))


def byte_logprob(logprobs: np.ndarray, symbol: int, top: int | None) -> TokenLogprob:
    """``symbol``'s raw log-prob with the ``top`` most likely bytes (impossible ones left out)."""
    alternatives: tuple[tuple[int, float], ...] = ()
    if top:
        order = np.argsort(-logprobs, kind="stable")[:top]
        alternatives = tuple((int(i), float(logprobs[i])) for i in order if np.isfinite(logprobs[i]))
    return TokenLogprob(int(symbol), float(logprobs[symbol]), alternatives)
