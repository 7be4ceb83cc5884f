"""Logits -> next tokens, with vLLM's order and semantics (``vllm/v1/sample/sampler.py``).

Order: logit_bias; repetition penalty (prompt + output tokens), frequency and presence
penalties (output tokens); greedy rows take the argmax here; the rest: temperature, min_p,
top_k and top_p (ties at the k-th value kept, at least one token kept), then the Gumbel-max
draw ``argmax(probs / Exp(1))`` with the row's own generator. Logprobs are the raw
log-softmax of the model's logits.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...decoding.sampling_steps import (apply_frequency_presence_penalties, apply_logit_bias, apply_min_p,
                                        apply_repetition_penalty, apply_top_k, apply_top_p)
from ...sampling import SamplingSpec
from ..base import TokenLogprob

_SAMPLING_EPS = 1e-5


@dataclass
class SamplingRow:
    """One sequence's sampling inputs for this step."""

    spec: SamplingSpec
    prompt_token_ids: list[int]
    output_token_ids: list[int]
    generator: torch.Generator | None = None

    @property
    def greedy(self) -> bool:
        return self.spec.greedy or self.spec.temperature < _SAMPLING_EPS


def process_logits(logits: torch.Tensor, rows: list[SamplingRow]) -> torch.Tensor:
    """Bias and penalties on a float32 copy of ``logits`` [B, V]: what greedy takes the argmax of."""
    logits = logits.float().clone()
    for i, row in enumerate(rows):
        s = row.spec
        if s.logit_bias:
            apply_logit_bias(logits[i], s.logit_bias)
        if s.repetition_penalty != 1.0:
            apply_repetition_penalty(logits[i], row.prompt_token_ids, row.output_token_ids, s.repetition_penalty)
        if s.frequency_penalty or s.presence_penalty:
            apply_frequency_presence_penalties(logits[i], row.output_token_ids, s.frequency_penalty,
                                               s.presence_penalty)
    return logits


def sampling_logits(logits: torch.Tensor, rows: list[SamplingRow]) -> torch.Tensor:
    """The final float32 logits [B, V] each row draws from: bias and penalties for all rows, then
    temperature, min_p, top_k and top_p for the non-greedy ones (filtered tokens are ``-inf``)."""
    logits = process_logits(logits, rows)
    for i, row in enumerate(rows):
        if row.greedy:
            continue
        s = row.spec
        x = logits[i].div_(s.temperature)
        if s.min_p > 0.0:
            apply_min_p(x, s.min_p)
        apply_top_k(x, s.top_k)
        apply_top_p(x, s.top_p)
    return logits


def sample(logits: torch.Tensor, rows: list[SamplingRow]) -> torch.Tensor:
    """``logits`` [B, V] raw model logits -> token ids [B] (long)."""
    logits = sampling_logits(logits, rows)
    tokens = logits.argmax(dim=-1)
    for i, row in enumerate(rows):
        if not row.greedy:
            probs = logits[i].softmax(dim=-1)
            noise = torch.empty_like(probs).exponential_(generator=row.generator)
            tokens[i] = probs.div_(noise).argmax()
    return tokens


def token_logprobs(logprobs: torch.Tensor, token_ids: torch.Tensor, num_top: int) -> list[TokenLogprob]:
    """``logprobs`` [N, V] (log-softmax), ``token_ids`` [N] -> the chosen token's and the top-N's."""
    chosen = logprobs.gather(-1, token_ids[:, None])[:, 0].tolist()
    ids = token_ids.tolist()
    if num_top > 0:
        top_v, top_i = logprobs.topk(num_top, dim=-1)
        tops = [tuple(zip(r_i, r_v)) for r_i, r_v in zip(top_i.tolist(), top_v.tolist())]
    else:
        tops = [()] * len(ids)
    return [TokenLogprob(t, lp, top) for t, lp, top in zip(ids, chosen, tops)]
