"""``prompt_boundary: "exact"`` on /v1/completions: condition exactly on a prompt that ends mid-token.

The request is checked here; the hand-off (the token ids that reach past the prompt text, read
at byte level) comes from `ServedModel.exact_boundary` (see
``engines/bytelevel/prompt_boundary.py``). The completion text is what the hand-off adds past
the prompt, then the engine's text continuing from the hand-off's tokens.
"""
from __future__ import annotations

import contextlib
from typing import AsyncIterator

from ..engines.base import EngineError, EngineRequest
from ..models.config import BYTE_KINDS
from ..models.registry import ServedModel
from ..sampling import SamplingSpec
from .errors import bad_request
from .generation import ChoiceEvent, stream_choice


def exact_boundary_prompts(request, served: ServedModel) -> list[str] | None:
    """The prompt texts when the request asks for the exact boundary on a token-level model, else None."""
    if request.prompt_boundary != "exact" or served.config.kind in BYTE_KINDS:
        return None  # byte-level models always condition on the exact prompt text
    prompts = [request.prompt] if isinstance(request.prompt, str) else list(request.prompt)
    if not all(isinstance(p, str) and p for p in prompts):
        raise bad_request("prompt_boundary 'exact' needs text prompts (not token ids)", "prompt")
    if request.contrastive is not None or request.steer is not None:
        raise bad_request("prompt_boundary 'exact' cannot be combined with contrastive or steer", "prompt_boundary")
    if request.echo or request.logprobs is not None:
        raise bad_request("prompt_boundary 'exact' does not support echo or logprobs; use a byte-level model "
                          "(kind: bytelevel) to score text", "prompt_boundary")
    return prompts


async def boundary_choice(served: ServedModel, prompt: str, index: int, request_id: str, spec: SamplingSpec,
                          stop: list[str], metrics, arrival: float) -> AsyncIterator[ChoiceEvent]:
    """One completion choice with the exact prompt boundary: the hand-off, then the engine."""
    try:
        handoff = await served.exact_boundary(prompt, spec.seed, spec.greedy)
    except EngineError as exc:
        raise bad_request(str(exc), "prompt") from exc
    n_prompt = len(handoff.prompt_ids)
    if handoff.ended:
        yield ChoiceEvent(index, "", [], None, finish_reason="stop", num_prompt_tokens=n_prompt)
        return
    hits = [handoff.text.find(s) for s in stop if s in handoff.text]
    if hits:
        yield ChoiceEvent(index, handoff.text[:min(hits)], [], None, finish_reason="stop", num_prompt_tokens=n_prompt)
        return
    events = stream_choice(served.engine, served.config.id, index, EngineRequest(request_id, handoff.prompt_ids, spec),
                           stop, metrics, arrival, initial_text=handoff.text)
    async with contextlib.aclosing(events) as choice_events:
        async for event in choice_events:
            yield event
