"""The sampling steps over logits, with vLLM's semantics (``vllm/v1/sample``), one copy each.

Every function works in place on ``logits`` and returns it. Bias and penalties take one row
[V] with that sequence's token lists; min_p, top-k and top-p take [..., V]. Filtered tokens
become ``-inf``. The transformers sampler and the vLLM contrastive-pair processor both call
these; the byte-level engine's numpy counterparts are in ``decoding/bytelevel/next_byte.py``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["apply_logit_bias", "apply_repetition_penalty", "apply_frequency_presence_penalties",
           "apply_min_p", "apply_top_k", "apply_top_p"]


def apply_logit_bias(logits: torch.Tensor, bias: dict[int, float]) -> torch.Tensor:
    """``logits[t] += bias[t]`` for one row [V]."""
    ids = torch.tensor(list(bias.keys()), dtype=torch.long, device=logits.device)
    logits.index_add_(0, ids, torch.tensor(list(bias.values()), dtype=logits.dtype, device=logits.device))
    return logits


def apply_repetition_penalty(logits: torch.Tensor, prompt_ids: Sequence[int], output_ids: Sequence[int],
                             penalty: float) -> torch.Tensor:
    """One row [V]: positive logits of tokens seen in the prompt or the output are divided by
    ``penalty``, negative ones multiplied by it."""
    seen = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    seen[torch.tensor([*prompt_ids, *output_ids], dtype=torch.long, device=logits.device)] = True
    factor = torch.where(seen, penalty, 1.0).to(logits.dtype)
    return logits.mul_(torch.where(logits > 0, 1.0 / factor, factor))


def apply_frequency_presence_penalties(logits: torch.Tensor, output_ids: Sequence[int], frequency: float,
                                       presence: float) -> torch.Tensor:
    """One row [V]: subtract ``frequency * count`` and ``presence * (count > 0)``, counting
    output tokens only."""
    vocab = logits.shape[-1]
    out = torch.tensor(list(output_ids), dtype=torch.long, device=logits.device)
    counts = torch.bincount(out, minlength=vocab)[:vocab].to(logits.dtype)
    logits.sub_(frequency * counts)
    return logits.sub_(presence * (counts > 0).to(logits.dtype))


def apply_min_p(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Drop tokens whose probability is below ``min_p`` times the row's largest."""
    probs = logits.softmax(dim=-1)
    return logits.masked_fill_(probs < probs.amax(dim=-1, keepdim=True) * min_p, float("-inf"))


def apply_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep tokens at or above the ``top_k``-th largest logit (ties with it kept); 0 disables."""
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits.masked_fill_(logits < kth, float("-inf"))
    return logits


def apply_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Drop the least likely tokens while their cumulative probability stays at or below
    ``1 - top_p``; the most likely token is always kept; 1.0 disables."""
    if top_p < 1.0:
        sorted_logits, idx = logits.sort(dim=-1, descending=False)
        drop = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= 1 - top_p
        drop[..., -1] = False
        logits.scatter_(-1, idx, sorted_logits.masked_fill_(drop, float("-inf")))
    return logits
