"""Running one choice of a request: engine deltas -> text deltas, stop strings, metrics.

Shared by /v1/completions and /v1/chat/completions. ``n`` choices run concurrently in the
engine; ``merge`` interleaves their events. Closing a stream (client gone, stop string hit)
closes the engine generator, which aborts the request and frees its slot.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import AsyncIterator

from .detokenizer import TextStream
from ..engines.base import Engine, EngineRequest, TokenLogprob
from .metrics import Metrics


@dataclass
class ChoiceEvent:
    index: int
    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob] | None
    prompt_logprobs: list[TokenLogprob | None] | None = None
    finish_reason: str | None = None
    num_prompt_tokens: int = 0


@dataclass
class ChoiceResult:
    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprob | None] | None = None
    finish_reason: str | None = None
    num_prompt_tokens: int = 0


async def stream_choice(engine: Engine, model: str, index: int, request: EngineRequest, stop: list[str],
                        metrics: Metrics, arrival: float, initial_text: str = "") -> AsyncIterator[ChoiceEvent]:
    """``initial_text``: completion text decided before the engine runs (the prompt-boundary hand-off)."""
    prompt_ids = request.prompt_token_ids
    text = TextStream(engine.tokenizer, stop=stop, prefix_ids=prompt_ids, text=initial_text)
    last = None
    generated = 0
    finish = None
    metrics.prompt_tokens.labels(model).inc(len(prompt_ids))
    async with contextlib.aclosing(engine.generate(request)) as outputs:
        async for out in outputs:
            now = time.monotonic()
            if out.token_ids:
                if last is None:
                    metrics.ttft.labels(model).observe(now - arrival)
                else:
                    metrics.itl.labels(model).observe((now - last) / len(out.token_ids))
                last = now
                generated += len(out.token_ids)
                metrics.generation_tokens.labels(model).inc(len(out.token_ids))
            delta = text.add(out.token_ids)
            finish = "stop" if delta.stopped else out.finish_reason
            if finish is not None and not delta.stopped:
                delta.text += text.finish().text
            yield ChoiceEvent(index, delta.text, out.token_ids, out.logprobs, out.prompt_logprobs,
                              "stop" if finish == "abort" else finish, out.num_prompt_tokens)
            if finish is not None:
                break
    metrics.e2e.labels(model).observe(time.monotonic() - arrival)


async def merge(streams: list[AsyncIterator[ChoiceEvent]]) -> AsyncIterator[ChoiceEvent]:
    """Interleave events of several choices as they come; cancel all if the consumer stops."""
    if len(streams) == 1:
        async with contextlib.aclosing(streams[0]) as only:
            async for event in only:
                yield event
        return
    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    async def pump(stream: AsyncIterator[ChoiceEvent]) -> None:
        try:
            async with contextlib.aclosing(stream) as events:
                async for event in events:
                    await queue.put(event)
        except BaseException as exc:  # forwarded to the consumer
            await queue.put(exc)
            return
        await queue.put(done)

    tasks = [asyncio.create_task(pump(s)) for s in streams]
    remaining = len(tasks)
    try:
        while remaining:
            item = await queue.get()
            if item is done:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def collect(events: AsyncIterator[ChoiceEvent], count: int) -> list[ChoiceResult]:
    results = [ChoiceResult(i) for i in range(count)]
    async for event in events:
        result = results[event.index]
        result.text += event.text
        result.token_ids += event.token_ids
        result.logprobs += event.logprobs or []
        result.num_prompt_tokens = event.num_prompt_tokens
        if event.prompt_logprobs is not None:
            result.prompt_logprobs = event.prompt_logprobs
        if event.finish_reason is not None:
            result.finish_reason = event.finish_reason
    return results
