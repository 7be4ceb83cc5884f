"""/v1/chat/completions: messages -> the model's chat template -> completions."""
from __future__ import annotations

import time
import uuid
from typing import AsyncIterator

from ..prompts.chat_template import conversation, render_chat
from ..prompts.chat_vision import VisionChatPrompt
from ..engines.base import ChatConversation, EngineRequest
from ..plans import Capability
from .errors import bad_request
from .generation import ChoiceEvent, ChoiceResult, collect, merge, stream_choice
from ..prompts.images import has_images
from .protocol import (ChatChoice, ChatChunkChoice, ChatCompletionChunk, ChatCompletionRequest,
                       ChatCompletionResponse, ChatLogprobs, ChatTokenLogprob, ChatTopLogprob,
                       DeltaMessage, UsageInfo, random_id)
from .serving_common import ServingBase, build_spec, check_context, json_logprob, token_text, usage_info
from .serving_tools import ToolDeltas, ToolUse, finish_with_calls, reply_message, structured_plan, tool_prompt, tool_use
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
        top = [ChatTopLogprob(token=(t := token_text(tokenizer, tid)), logprob=json_logprob(lp),
                              bytes=_token_bytes(tokenizer, tid, t)) for tid, lp in entry.top]
        content.append(ChatTokenLogprob(token=text, logprob=json_logprob(entry.logprob), bytes=_token_bytes(tokenizer, token_id, text),
                                        top_logprobs=top))
    return ChatLogprobs(content=content)


class ChatServing(ServingBase):
    async def create(self, request: ChatCompletionRequest) -> ChatCompletionResponse | AsyncIterator[str]:
        served = self.admit(request, request.n)
        engine = served.engine
        chat = None
        tools = tool_use(request, served.config.tool_call_format)
        if has_images(request.messages) and Capability.IMAGES in engine.capabilities:
            if tools is not None:
                raise bad_request("tool calling with image inputs is not supported yet", "tools")
            prompt = VisionChatPrompt(engine.processor, request.messages, request.add_generation_prompt,
                                      request.chat_template_kwargs)
        elif tools is not None:
            rendered = tool_prompt(request, tools, served.renders_tools)
            prompt = ChatPrompt(engine.tokenizer, list(rendered.messages), request.add_generation_prompt,
                                {**(request.chat_template_kwargs or {}), **rendered.template_kwargs})
        else:  # text (images on a text-only model are a 400 here)
            prompt = ChatPrompt(engine.tokenizer, conversation(request.messages), request.add_generation_prompt,
                                request.chat_template_kwargs)
            chat = ChatConversation(tuple(prompt.turns), request.add_generation_prompt, request.chat_template_kwargs)
        prompt_ids = prompt.token_ids
        if request.top_logprobs is not None and not request.logprobs:
            raise bad_request("top_logprobs requires logprobs=true", "top_logprobs")
        plan = request.to_decoding_plan(prompt, engine.capabilities, _constraint(request, tools))
        negative_tokens = plan.branch_prompt_tokens
        max_tokens = check_context(engine, max(len(prompt_ids), negative_tokens),
                                   request.max_completion_tokens or request.max_tokens)
        logprobs = (request.top_logprobs or 0) if request.logprobs else None
        arrival, base_id = time.monotonic(), uuid.uuid4().hex
        engine_requests = [EngineRequest(f"{base_id}-{i}", prompt_ids,
                                         build_spec(request, engine, max_tokens, i, logprobs, None, plan), chat)
                           for i in range(request.n)]
        engine.admit(engine_requests)
        streams = [stream_choice(engine, request.model, i, r, request.stop, self.metrics, arrival)
                   for i, r in enumerate(engine_requests)]
        events = merge(streams)
        reads_calls = tools if tools is not None and tools.reads_calls else None
        if request.stream:
            return sse_events(self._chunks(request, events, len(prompt_ids) + negative_tokens, reads_calls))
        results = await collect(events, request.n)
        return self._response(request, results, len(prompt_ids) + negative_tokens, reads_calls)

    def _response(self, request, results: list[ChoiceResult], prompt_tokens: int,
                  tools: ToolUse | None) -> ChatCompletionResponse:
        tokenizer = self.registry.get(request.model).engine.tokenizer
        choices = []
        for r in results:
            content, calls = reply_message(r.text, tools)
            choices.append(ChatChoice(
                index=r.index, message={"content": content, "tool_calls": calls},
                finish_reason=finish_with_calls(r.finish_reason, bool(calls)),
                logprobs=_chat_logprobs(tokenizer, r.logprobs, r.token_ids) if request.logprobs else None))
        completion_tokens = sum(len(r.token_ids) for r in results)
        return ChatCompletionResponse(model=request.model, choices=choices,
                                      usage=usage_info(prompt_tokens, completion_tokens))

    async def _chunks(self, request, events: AsyncIterator[ChoiceEvent], prompt_tokens: int,
                      tools: ToolUse | None) -> AsyncIterator[ChatCompletionChunk]:
        tokenizer = self.registry.get(request.model).engine.tokenizer
        response_id, created = random_id("chatcmpl"), int(time.time())

        def chunk(choices: list[ChatChunkChoice], usage: UsageInfo | None = None) -> ChatCompletionChunk:
            return ChatCompletionChunk(id=response_id, created=created, model=request.model, choices=choices,
                                       usage=usage)

        for i in range(request.n):
            yield chunk([ChatChunkChoice(index=i, delta=DeltaMessage(role="assistant", content=""))])
        completion_tokens = 0
        deltas = ToolDeltas(tools, request.n) if tools is not None else None
        async for event in events:
            completion_tokens += len(event.token_ids)
            logprobs = (_chat_logprobs(tokenizer, event.logprobs or [], event.token_ids)
                        if request.logprobs and event.token_ids else None)
            finish = event.finish_reason
            if deltas is None:
                delta = DeltaMessage(content=event.text or None)
            else:
                delta = deltas.feed(event.index, event.text, finish is not None) or DeltaMessage()
                finish = finish_with_calls(finish, deltas.has_calls(event.index))
            if delta.content or delta.tool_calls or finish or logprobs is not None:
                yield chunk([ChatChunkChoice(index=event.index, delta=delta, logprobs=logprobs,
                                             finish_reason=finish)])
        if request.stream_options and request.stream_options.include_usage:
            yield chunk([], usage_info(prompt_tokens, completion_tokens))


def _constraint(request: ChatCompletionRequest, tools: ToolUse | None):
    """The one output constraint of a chat request: its response_format / structured_outputs, or its
    tool calls (combining both is a 400: one grammar per reply)."""
    own = structured_plan(request)
    calls = tools.constraint() if tools is not None else None
    if own is not None and calls is not None:
        raise bad_request("response_format / structured_outputs cannot be combined with constrained tool calls; "
                          "send tool_choice 'none' or drop the response format", "response_format")
    return own or calls
