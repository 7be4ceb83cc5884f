"""Independent references for contrastive decoding and attention steering.

A plain transformers model whose attention is an eager float64 implementation written here (no
Braid code): it can up-steer keys (``s + strength * |s|`` in chosen heads) or suppress each query
row's most attended steered keys (``s - strength * |s|`` on the top ``ceil(fraction * visible)``,
found by sorting in Python). Every decoding step re-runs both branches from scratch (no cache)
and combines them in float64.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from fractions import Fraction

import torch

ATTN = "braid_test_reference"
_state: dict = {}


@dataclass
class UpSteer:
    positions: list[int]
    heads: set[tuple[int, int]] | None  # None: every head
    strength: float


@dataclass
class Suppress:
    positions: list[int]
    strength: float = 1.0
    fraction: float = 0.1


def _modify(scores: torch.Tensor, layer: int, how) -> torch.Tensor:
    """``scores`` [H, n, n] float64, causal -inf above the diagonal."""
    heads, n = scores.shape[0], scores.shape[1]
    out = scores.clone()
    for h in range(heads):
        for q in range(n):
            visible = [k for k in how.positions if k <= q]
            if isinstance(how, UpSteer):
                if how.heads is not None and (layer, h) not in how.heads:
                    continue
                chosen = visible
                sign = 1.0
            else:
                take = math.ceil(Fraction(str(how.fraction)) * len(visible)) if visible else 0
                chosen = sorted(visible, key=lambda k: -float(scores[h, q, k]))[:take]
                sign = -1.0
            for k in chosen:
                s = float(scores[h, q, k])
                out[h, q, k] = s + sign * how.strength * abs(s)
    return out


def reference_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Eager attention for batch 1 with the active steering (``_state["how"]``) applied to the scores."""
    groups = query.shape[1] // key.shape[1]
    q = query[0].double()
    k = key[0].double().repeat_interleave(groups, 0)
    v = value[0].double().repeat_interleave(groups, 0)
    n = q.shape[1]
    scores = q @ k.transpose(-1, -2) * (module.scaling if scaling is None else scaling)
    scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), -math.inf)
    how = _state.get("how")
    if how is not None:
        scores = _modify(scores, module.layer_idx, how)
    out = scores.softmax(-1) @ v  # [H, n, D]
    return out.transpose(0, 1)[None].to(query.dtype), None


@contextlib.contextmanager
def one_thread():
    """Tiny models run fastest on one thread, and far faster on one when the CPU is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def steering(how):
    _state["how"] = how
    try:
        yield
    finally:
        _state.pop("how", None)


def load_reference_model(path):
    from transformers import AttentionInterface, AutoModelForCausalLM

    AttentionInterface.register(ATTN, reference_attention)
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=ATTN).eval()


@torch.no_grad()
def next_logprobs(model, ids: list[int], how=None) -> torch.Tensor:
    with steering(how):
        return model(torch.tensor([ids])).logits[0, -1].double().log_softmax(-1)


def combine(logp: torch.Tensor, logn: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """float64: (1 + alpha) log p - alpha log n, -inf where p < beta * max p."""
    keep = logp.exp() >= beta * logp.exp().max()
    return torch.where(keep, (1 + alpha) * logp - alpha * logn, torch.tensor(-math.inf, dtype=torch.float64))


@torch.no_grad()
def _greedy(step_logprobs, steps: int, eos: int | None):
    """Greedy decoding from ``step_logprobs(tokens so far) -> log-softmax [V]``: (tokens, per-step dists)."""
    tokens, dists = [], []
    with one_thread():
        for _ in range(steps):
            dist = step_logprobs(tokens)
            token = int(dist.argmax())
            tokens.append(token)
            dists.append(dist)
            if token == eos:
                break
    return tokens, dists


def contrastive_greedy(model, positive: list[int], negative: list[int], steps: int, eos: int | None,
                       alpha: float = 1.0, beta: float = 0.1, pos_how=None, neg_how=None):
    """Greedy contrastive decoding; returns (tokens, each step's combined log-softmax [V] float64)."""
    return _greedy(lambda tokens: combine(next_logprobs(model, positive + tokens, pos_how),
                                          next_logprobs(model, negative + tokens, neg_how), alpha, beta
                                          ).log_softmax(-1), steps, eos)


def steered_greedy(model, prompt: list[int], steps: int, eos: int | None, how=None):
    """Greedy decoding of one (possibly steered) sequence; returns (tokens, log-softmax per step)."""
    return _greedy(lambda tokens: next_logprobs(model, prompt + tokens, how), steps, eos)


async def run(engine, request_id, prompt, **sampling):
    """Drive one request through an engine: (its outputs, all generated token ids)."""
    from braid.server.engines.base import EngineRequest
    from braid.server.sampling import SamplingSpec

    outs = [o async for o in engine.generate(EngineRequest(request_id, list(prompt), SamplingSpec(**sampling)))]
    return outs, [t for o in outs for t in o.token_ids]
