"""Contrastive decoding as a pure function over two branches' logits.

Every contrastive variant (ICD, VCD, ASCD) runs a positive and a negative branch over the same
generated tokens and combines their next-token distributions each step:

    score = (1 + alpha) * log p - alpha * log n,   where p < beta * max(p): score = -inf

The second line is the adaptive plausibility constraint: only tokens the positive branch itself
finds plausible may win, so the contrast cannot promote tokens both branches consider absurd.
The variants differ only in how the negative branch is built. Ordinary sampling (penalties,
temperature, top-k/top-p, greedy) then treats ``score`` as its logits.
"""
from __future__ import annotations

import torch

__all__ = ["DEFAULT_ALPHA", "DEFAULT_BETA", "DEFAULT_DISTURBANCE", "contrastive_scores", "plausible"]

DEFAULT_ALPHA = 1.0
DEFAULT_BETA = 0.1
# ICD's negative branch: this instruction before the prompt (completions) or as the system message (chat).
DEFAULT_DISTURBANCE = "You are a confused assistant who gives a fuzzy, unreliable impression of the question."


def _per_row(value: float | torch.Tensor, like: torch.Tensor) -> float | torch.Tensor:
    """A scalar stays a scalar; a ``[B]`` tensor becomes ``[B, 1]`` to broadcast over the vocabulary."""
    if isinstance(value, torch.Tensor):
        return value.to(device=like.device, dtype=like.dtype).reshape(-1, 1) if like.dim() > 1 else value.to(like)
    return value


def plausible(logprobs_pos: torch.Tensor, beta: float | torch.Tensor) -> torch.Tensor:
    """Bool mask, True where ``p >= beta * max(p)`` along the last dim (``logprobs_pos`` log-softmaxed)."""
    probs = logprobs_pos.exp()
    return probs >= _per_row(beta, probs) * probs.amax(dim=-1, keepdim=True)


def contrastive_scores(logits_pos: torch.Tensor, logits_neg: torch.Tensor, alpha: float | torch.Tensor = DEFAULT_ALPHA,
                       beta: float | torch.Tensor = DEFAULT_BETA) -> torch.Tensor:
    """``[..., V]`` logits of the positive and negative branch -> contrastive scores ``[..., V]``.

    ``alpha``/``beta`` are scalars or one value per row (``[B]`` for ``[B, V]`` logits). Computed
    in at least float32. ``alpha == 0`` returns ``log_softmax(logits_pos)`` exactly (plain
    decoding, up to the plausibility mask), ``beta == 0`` masks nothing. Excluded tokens are ``-inf``.
    """
    dtype = torch.promote_types(logits_pos.dtype, torch.float32)
    logprobs_pos = logits_pos.to(dtype).log_softmax(dim=-1)
    if isinstance(alpha, torch.Tensor) or alpha != 0:
        a = _per_row(alpha, logprobs_pos)
        logprobs_neg = logits_neg.to(dtype).log_softmax(dim=-1)
        # alpha == 0 rows must stay exact (and 0 * -inf would be NaN): keep their positive logprobs.
        scores = torch.where(torch.as_tensor(a == 0, device=logprobs_pos.device), logprobs_pos,
                             (1 + a) * logprobs_pos - a * logprobs_neg)
    else:
        scores = logprobs_pos.clone()
    return scores.masked_fill(~plausible(logprobs_pos, beta), float("-inf"))
