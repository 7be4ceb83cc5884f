"""/v1/completions: prompts (text or token ids) -> completions, streamed or whole."""
from __future__ import annotations

import time
import uuid
from typing import AsyncIterator

from ..engines.base import EngineRequest
from .errors import bad_request
from .generation import ChoiceEvent, ChoiceResult, collect, merge, stream_choice
from .protocol import (CompletionChoice, CompletionLogprobs, CompletionRequest, CompletionResponse, UsageInfo,
                       random_id)
from .serving_common import ServingBase, build_spec, check_context, json_logprob, token_text, usage_info
from ..prompts.method_prompts import CompletionPrompt
from .serving_boundary import boundary_choice, exact_boundary_prompts
from .serving_tools import structured_plan
from .sse import sse_events

__all__ = ["CompletionServing"]


def _prompts(request: CompletionRequest, tokenizer) -> list[CompletionPrompt]:
    prompt = request.prompt
    if isinstance(prompt, str) or all(isinstance(p, int) for p in prompt):
        return [CompletionPrompt(tokenizer, prompt)]
    return [CompletionPrompt(tokenizer, p) for p in prompt]


class _LogprobBuilder:
    """Accumulates the completions-API logprobs block (tokens, offsets, top alternatives)."""

    def __init__(self, tokenizer, offset: int = 0) -> None:
        self.tokenizer, self.offset = tokenizer, offset
        self.block = CompletionLogprobs()

    def add(self, logprobs, token_ids: list[int]) -> None:
        for token_id, entry in zip(token_ids, logprobs):
            text = token_text(self.tokenizer, token_id)
            self.block.tokens.append(text)
            self.block.text_offset.append(self.offset)
            self.offset += len(text)
            self.block.token_logprobs.append(None if entry is None else json_logprob(entry.logprob))
            self.block.top_logprobs.append(
                None if entry is None else {token_text(self.tokenizer, tid): json_logprob(lp) for tid, lp in entry.top})

    def since(self, start: int) -> CompletionLogprobs:
        block = self.block
        return CompletionLogprobs(tokens=block.tokens[start:], text_offset=block.text_offset[start:],
                                  token_logprobs=block.token_logprobs[start:], top_logprobs=block.top_logprobs[start:])


class CompletionServing(ServingBase):
    async def create(self, request: CompletionRequest) -> CompletionResponse | AsyncIterator[str]:
        served = self.registry.get(request.model)
        engine = served.engine
        if request.suffix:
            raise bad_request("suffix is not supported", "suffix")
        method_prompts = _prompts(request, engine.tokenizer)
        prompts = [p.token_ids for p in method_prompts]
        served = self.admit(request, len(prompts) * request.n)
        scoring_only = request.echo and request.max_tokens == 0
        if request.max_tokens == 0 and not request.echo:
            raise bad_request("max_tokens must be at least 1 (or 0 together with echo=true)", "max_tokens")
        if scoring_only and (request.contrastive or request.steer):
            raise bad_request("contrastive/steer decode tokens; they cannot be used with max_tokens 0", "max_tokens")
        arrival = time.monotonic()
        base_id = uuid.uuid4().hex
        streams, engine_requests, prompt_tokens = [], [], 0
        boundary = exact_boundary_prompts(request, served)
        structured = structured_plan(request)
        if structured is not None and boundary is not None:
            raise bad_request("prompt_boundary 'exact' cannot be combined with an output constraint",
                              "prompt_boundary")
        for p, method_prompt in enumerate(method_prompts):
            prompt_ids = method_prompt.token_ids
            if not prompt_ids:
                raise bad_request("prompt must contain at least one token", "prompt")
            plan = request.to_decoding_plan(method_prompt, engine.capabilities, structured)
            longest = max(len(prompt_ids), plan.branch_prompt_tokens)
            max_tokens = check_context(engine, longest, 1 if scoring_only else request.max_tokens)
            prompt_tokens += len(prompt_ids) + plan.branch_prompt_tokens
            for i in range(request.n):
                index = p * request.n + i
                spec = build_spec(request, engine, max_tokens, i, request.logprobs,
                                  request.logprobs if request.echo and request.logprobs is not None else None, plan)
                if boundary is not None:  # prompt_boundary "exact": a byte-level hand-off, then the engine
                    streams.append(boundary_choice(served, boundary[p], index, f"{base_id}-{index}", spec,
                                                   request.stop, self.metrics, arrival))
                    continue
                engine_requests.append(EngineRequest(f"{base_id}-{index}", prompt_ids, spec))
                streams.append(stream_choice(engine, request.model, index, engine_requests[-1], request.stop,
                                             self.metrics, arrival))
        engine.admit(engine_requests)
        events = merge(streams)
        if request.stream:
            return self._stream(request, events, prompts, prompt_tokens)
        results = await collect(events, len(streams))
        return self._response(request, results, prompts, scoring_only, prompt_tokens)

    def _echo_prefix(self, request: CompletionRequest, prompt_ids: list[int]) -> str:
        return self.registry.get(request.model).engine.tokenizer.decode(prompt_ids) if request.echo else ""

    def _response(self, request, results: list[ChoiceResult], prompts, scoring_only: bool,
                  prompt_tokens: int) -> CompletionResponse:
        tokenizer = self.registry.get(request.model).engine.tokenizer
        choices = []
        for result in results:
            prompt_ids = prompts[result.index // request.n]
            text, token_ids, logprobs = result.text, result.token_ids, result.logprobs
            if scoring_only:
                text, token_ids, logprobs = "", [], []
            text = self._echo_prefix(request, prompt_ids) + text
            block = None
            if request.logprobs is not None:
                builder = _LogprobBuilder(tokenizer)
                if request.echo:
                    builder.add(result.prompt_logprobs or [None] * len(prompt_ids), prompt_ids)
                builder.add(logprobs, token_ids)
                block = builder.block
            choices.append(CompletionChoice(index=result.index, text=text, logprobs=block,
                                            finish_reason="length" if scoring_only else result.finish_reason))
        completion_tokens = 0 if scoring_only else sum(len(r.token_ids) for r in results)
        return CompletionResponse(model=request.model, choices=choices,
                                  usage=usage_info(prompt_tokens, completion_tokens))

    async def _stream(self, request, events: AsyncIterator[ChoiceEvent], prompts,
                      prompt_tokens: int) -> AsyncIterator[str]:
        tokenizer = self.registry.get(request.model).engine.tokenizer
        response_id, created = random_id("cmpl"), int(time.time())
        builders: dict[int, _LogprobBuilder] = {}
        completion_tokens = 0

        def chunk(choices: list[CompletionChoice], usage: UsageInfo | None = None) -> CompletionResponse:
            return CompletionResponse(id=response_id, created=created, model=request.model, choices=choices,
                                      usage=usage)

        async def body() -> AsyncIterator[CompletionResponse]:
            nonlocal completion_tokens
            async for event in events:
                prompt_ids = prompts[event.index // request.n]
                text = event.text
                block = None
                first = event.index not in builders
                if first:
                    builders[event.index] = _LogprobBuilder(tokenizer)
                    text = self._echo_prefix(request, prompt_ids) + text
                if request.logprobs is not None:
                    builder = builders[event.index]
                    start = len(builder.block.tokens)
                    if first and request.echo:
                        builder.add(event.prompt_logprobs or [None] * len(prompt_ids), prompt_ids)
                    builder.add(event.logprobs or [], event.token_ids)
                    block = builder.since(start)
                completion_tokens += len(event.token_ids)
                if text or event.finish_reason or block is not None:
                    yield chunk([CompletionChoice(index=event.index, text=text, logprobs=block,
                                                  finish_reason=event.finish_reason)])
            if request.stream_options and request.stream_options.include_usage:
                yield chunk([], usage_info(prompt_tokens, completion_tokens))

        async for line in sse_events(body()):
            yield line
