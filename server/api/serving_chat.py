"""/v1/chat/completions: messages -> the model's chat template -> completions."""
from __future__ import annotations

import time
import uuid
from typing import AsyncIterator

from ..prompts.chat_template import conversation, render_chat
from ..prompts.chat_vision import VisionChatPrompt
from ..engines.base import ChatConversation
from ..plans import Capability
from .errors import bad_request
from .generation import ChoiceEvent, ChoiceResult, collect, merge, stream_choice
from ..prompts.images import has_images
from .protocol import (ChatChoice, ChatChunkChoice, ChatCompletionChunk, ChatCompletionRequest,
                       ChatCompletionResponse, ChatLogprobs, ChatTokenLogprob, ChatTopLogprob,
                       DeltaMessage, UsageInfo, random_id)
from .serving_common import ServingBase, build_spec, check_context, token_text, usage_info
from ..prompts.method_prompts import ChatPrompt
from .sse import sse_events

__all__ = ["ChatServing", "render_chat"]


def _token_bytes(tokenizer, token_id: int, text: str) -> list[int]:
    """The token's own bytes where the tokenizer knows them (byte-level models), else its text's."""
    own = getattr(tokenizer, "token_bytes", None)
    return list(own(token_id)) if own is not None else list(text.encode())


def _chat_logprobs(tokenizer, logprobs, token_ids: list[int]) -> ChatLogprobs:
    content = []
    for token_id, entry in zip(token_ids, logprobs):
        text = token_text(tokenizer, token_id)
        top = [ChatTopLogprob(token=(t := token_text(tokenizer, tid)), logprob=lp,
                              bytes=_token_bytes(tokenizer, tid, t)) for tid, lp in entry.top]
        content.append(ChatTokenLogprob(token=text, logprob=entry.logprob, bytes=_token_bytes(tokenizer, token_id, text),
                                        top_logprobs=top))
    return ChatLogprobs(content=content)


class ChatServing(ServingBase):
    async def create(self, request: ChatCompletionRequest) -> ChatCompletionResponse | AsyncIterator[str]:
        served = self.admit(request, request.n)
        engine = served.engine
        chat = None
        if has_images(request.messages) and Capability.IMAGES in engine.capabilities:
            prompt = VisionChatPrompt(engine.processor, request.messages, request.add_generation_prompt,
                                      request.chat_template_kwargs)
        else:  # text (images on a text-only model are a 400 here)
            prompt = ChatPrompt(engine.tokenizer, conversation(request.messages), request.add_generation_prompt,
                                request.chat_template_kwargs)
            chat = ChatConversation(tuple(prompt.turns), request.add_generation_prompt, request.chat_template_kwargs)
        prompt_ids = prompt.token_ids
        if request.top_logprobs is not None and not request.logprobs:
            raise bad_request("top_logprobs requires logprobs=true", "top_logprobs")
        plan = request.to_decoding_plan(prompt, engine.capabilities)
        negative_tokens = plan.branch_prompt_tokens
        max_tokens = check_context(engine, max(len(prompt_ids), negative_tokens),
                                   request.max_completion_tokens or request.max_tokens)
        logprobs = (request.top_logprobs or 0) if request.logprobs else None
        arrival, base_id = time.monotonic(), uuid.uuid4().hex
        streams = [stream_choice(engine, request.model, i, f"{base_id}-{i}", prompt_ids,
                                 build_spec(request, engine, max_tokens, i, logprobs, None, plan),
                                 request.stop, self.metrics, arrival, chat=chat)
                   for i in range(request.n)]
        events = merge(streams)
        if request.stream:
            return sse_events(self._chunks(request, events, len(prompt_ids) + negative_tokens))
        results = await collect(events, request.n)
        return self._response(request, results, len(prompt_ids) + negative_tokens)

    def _response(self, request, results: list[ChoiceResult], prompt_tokens: int) -> ChatCompletionResponse:
        tokenizer = self.registry.get(request.model).engine.tokenizer
        choices = [
            ChatChoice(index=r.index, message={"content": r.text}, finish_reason=r.finish_reason,
                       logprobs=_chat_logprobs(tokenizer, r.logprobs, r.token_ids) if request.logprobs else None)
            for r in results
        ]
        completion_tokens = sum(len(r.token_ids) for r in results)
        return ChatCompletionResponse(model=request.model, choices=choices,
                                      usage=usage_info(prompt_tokens, completion_tokens))

    async def _chunks(self, request, events: AsyncIterator[ChoiceEvent],
                      prompt_tokens: int) -> AsyncIterator[ChatCompletionChunk]:
        tokenizer = self.registry.get(request.model).engine.tokenizer
        response_id, created = random_id("chatcmpl"), int(time.time())

        def chunk(choices: list[ChatChunkChoice], usage: UsageInfo | None = None) -> ChatCompletionChunk:
            return ChatCompletionChunk(id=response_id, created=created, model=request.model, choices=choices,
                                       usage=usage)

        for i in range(request.n):
            yield chunk([ChatChunkChoice(index=i, delta=DeltaMessage(role="assistant", content=""))])
        completion_tokens = 0
        async for event in events:
            completion_tokens += len(event.token_ids)
            logprobs = (_chat_logprobs(tokenizer, event.logprobs or [], event.token_ids)
                        if request.logprobs and event.token_ids else None)
            if event.text or event.finish_reason or logprobs is not None:
                yield chunk([ChatChunkChoice(index=event.index, delta=DeltaMessage(content=event.text or None),
                                             logprobs=logprobs, finish_reason=event.finish_reason)])
        if request.stream_options and request.stream_options.include_usage:
            yield chunk([], usage_info(prompt_tokens, completion_tokens))
