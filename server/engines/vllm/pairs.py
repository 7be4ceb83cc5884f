"""The adapter's side of a contrastive pair on vLLM: the two branches' parameters and the token
stream that reaches the client (see ``contrastive`` for the engine side)."""
from __future__ import annotations

import secrets
from typing import Any, AsyncIterator

from ...sampling import SamplingSpec
from ..base import EngineOutput, EngineRequest
from .contrastive import NEGATIVE, POSITIVE, pair_args


class ContrastivePairSplit(RuntimeError):
    """The two branches of a contrastive request did not step together (a server-side failure)."""


def finish_reason(vllm_reason: str | None) -> str | None:
    if vllm_reason is None:
        return None
    return vllm_reason if vllm_reason in ("stop", "length") else "abort"


def pair_seed(spec: SamplingSpec) -> int:
    """The seed both branches share: the request's, or a random one (vLLM's unseeded draws differ per row)."""
    return spec.seed if spec.seed is not None else secrets.randbelow(1 << 31)


def branch_overrides(request: EngineRequest, pair_id: str, seed: int) -> list[dict[str, Any]]:
    """``SamplingParams`` overrides of the positive and negative branch. Both share one seed, so
    vLLM's sampler draws the same token from the identical rows the processor writes; logit bias
    and repetition penalty move into the processor, which applies them to the combined scores."""
    spec = request.sampling
    return [dict(seed=seed, logit_bias=None, repetition_penalty=1.0,
                 extra_args=pair_args(pair_id, role, spec.plan.contrastive, spec.logit_bias,
                                      spec.repetition_penalty))
            for role in (POSITIVE, NEGATIVE)]


async def verified_positive_stream(request: EngineRequest, positive, negative) -> AsyncIterator[EngineOutput]:
    """The positive branch's deltas, each released once the negative branch produced the same tokens.

    ``positive``/``negative`` are vLLM output collectors. In lock-step both branches get their tokens
    in the same engine step, so the wait is short; a split pair yields differing tokens (the
    processor forces that) or a negative branch that ends early, and raises ``ContrastivePairSplit``.
    """
    pos_tokens: list[int] = []
    neg_tokens: list[int] = []
    neg_finished = False
    while True:
        out = positive.get_nowait() or await positive.get()
        completion = out.outputs[0]
        start = len(pos_tokens)
        pos_tokens += completion.token_ids
        while len(neg_tokens) < len(pos_tokens) and not neg_finished:
            neg_out = negative.get_nowait() or await negative.get()
            neg_tokens += neg_out.outputs[0].token_ids
            neg_finished = neg_out.finished
        if neg_tokens[start:len(pos_tokens)] != pos_tokens[start:]:
            raise ContrastivePairSplit(
                f"contrastive request {request.request_id!r}: its two branches stopped stepping together after "
                f"{start} tokens (positive {pos_tokens[start:]}, negative {neg_tokens[start:len(pos_tokens)]}); "
                "retry the request")
        yield EngineOutput(token_ids=pos_tokens[start:], num_prompt_tokens=len(request.prompt_token_ids),
                           finish_reason=finish_reason(completion.finish_reason))
        if out.finished:
            return
