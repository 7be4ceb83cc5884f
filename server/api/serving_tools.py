"""Tool calling and structured outputs in the serving layer: request fields -> prompt and constraint,
replies -> ``tool_calls``.

``response_format`` / ``structured_outputs`` become a `StructuredOutputPlan` enforced by the engine.
``tools`` are rendered into the prompt (the chat template's own way when it has one, else the model's
``tool_call_format``); ``tool_choice`` ``required`` or a named tool constrains the reply to valid calls,
``auto`` constrains a call once the model starts one (a structural tag). Replies are read back by the
same format: whole (`reply_message`) or as a stream (`ToolDeltas`).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from ..decoding.structured import StructuredOutputError, StructuredOutputPlan, validate_plan
from ..tool_calling import (ArgumentsDelta, CallStart, ContentDelta, ParsedMessage, ToolCallFormat,
                            ToolCallingError, ToolChoice, ToolPrompt, ToolSpec, get_tool_call_format, parse_tools,
                            render_tool_prompt, resolve_tool_choice)
from .errors import bad_request
from .protocol import ChatCompletionRequest, DeltaMessage, _SamplingFields
from .protocol_tools import DeltaFunctionCall, DeltaToolCall, FunctionCall, ToolCallItem


log = logging.getLogger(__name__)


def structured_plan(request: _SamplingFields) -> StructuredOutputPlan | None:
    """The request's own output constraint (``response_format`` or vLLM's ``structured_outputs``)."""
    fmt, so = request.response_format, request.structured_outputs
    if fmt is not None and fmt.type != "text" and so is not None:
        raise bad_request("give one output constraint: response_format or structured_outputs", "structured_outputs")
    if fmt is not None and fmt.type == "json_object":
        plan, param = StructuredOutputPlan.for_json_object(), "response_format"
    elif fmt is not None and fmt.type == "json_schema":
        schema = fmt.json_schema.json_schema
        if schema is None:
            raise bad_request("response_format.json_schema needs a `schema`", "response_format.json_schema.schema")
        plan, param = StructuredOutputPlan.from_json_schema(schema), "response_format.json_schema.schema"
    elif so is not None:
        plan, param = _from_structured_outputs(so)
    else:
        return None
    try:
        validate_plan(plan, param)
    except StructuredOutputError as exc:
        raise bad_request(str(exc), exc.param) from exc
    return plan


def _from_structured_outputs(so) -> tuple[StructuredOutputPlan, str]:
    if so.json_ is not None:
        try:
            schema = so.json_ if isinstance(so.json_, dict) else json.loads(so.json_)
        except ValueError as exc:
            raise bad_request(f"structured_outputs.json is not valid JSON: {exc}", "structured_outputs.json") from exc
        return StructuredOutputPlan.from_json_schema(schema), "structured_outputs.json"
    if so.json_object:
        return StructuredOutputPlan.for_json_object(), "structured_outputs.json_object"
    if so.regex is not None:
        return StructuredOutputPlan.from_regex(so.regex), "structured_outputs.regex"
    if so.choice is not None:
        return StructuredOutputPlan.from_choice(so.choice), "structured_outputs.choice"
    if so.grammar is not None:
        return StructuredOutputPlan.from_grammar(so.grammar), "structured_outputs.grammar"
    if so.structural_tag is not None:
        return StructuredOutputPlan.from_structural_tag(so.structural_tag), "structured_outputs.structural_tag"
    raise bad_request("structured_outputs.json_object must be true when it is the constraint",
                      "structured_outputs.json_object")


@dataclass(frozen=True)
class ToolUse:
    """A chat request's tools resolved for one model."""

    tools: tuple[ToolSpec, ...]
    choice: ToolChoice
    fmt: ToolCallFormat
    parallel: bool
    constrained: bool  # False: tool_call_constraint "none" (calls parsed, not enforced)

    @property
    def reads_calls(self) -> bool:
        return bool(self.tools) and self.choice.mode != "none"

    def constraint(self) -> StructuredOutputPlan | None:
        if not (self.reads_calls and self.constrained):
            return None
        made = self.fmt.call_constraint(self.tools, self.choice, self.parallel)
        if made is None:
            return None
        kind, spec = made
        plan = StructuredOutputPlan(kind, spec)
        try:
            validate_plan(plan, "tools")
        except StructuredOutputError as exc:
            raise bad_request(f"a tool's parameters cannot be enforced: {exc}", "tools") from exc
        return plan


def tool_use(request: ChatCompletionRequest, format_name: str) -> ToolUse | None:
    """None for a request with neither tools nor tool-call history."""
    history = any(m.tool_calls or m.role == "tool" for m in request.messages)
    if request.tools is None and request.tool_choice is None and not history:
        return None
    choice = request.tool_choice
    try:
        tools = parse_tools([t.model_dump(exclude_none=True) for t in request.tools or []])
        resolved = resolve_tool_choice(choice if isinstance(choice, str) or choice is None else choice.model_dump(),
                                       tools)
    except ToolCallingError as exc:
        raise bad_request(exc.message, exc.param) from exc
    return ToolUse(tools, resolved, get_tool_call_format(format_name), request.parallel_tool_calls,
                   request.tool_call_constraint != "none")


def tool_prompt(request: ChatCompletionRequest, use: ToolUse, renders_tools: bool) -> ToolPrompt:
    """The conversation and template arguments with the tools and the call history rendered."""
    messages = [m.model_dump(exclude_none=True) for m in request.messages]
    for message in messages:
        if message.get("role") == "developer":
            message["role"] = "system"
    try:
        return render_tool_prompt(messages, use.tools, use.fmt, renders_tools)
    except ToolCallingError as exc:
        raise bad_request(exc.message, exc.param) from exc


def reply_message(text: str, use: ToolUse | None) -> tuple[str | None, list[ToolCallItem] | None]:
    """(content, tool_calls) of a finished reply."""
    if use is None or not use.reads_calls:
        return text, None
    parsed: ParsedMessage = use.fmt.parse(text, use.tools)
    _log_problems(parsed.problems)
    calls = [ToolCallItem(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments))
             for c in parsed.tool_calls]
    return parsed.content, calls or None


def finish_with_calls(finish_reason: str | None, has_calls: bool) -> str | None:
    """OpenAI's ``tool_calls`` for a reply that ended normally with calls; a cut-off stays ``length``."""
    return "tool_calls" if has_calls and finish_reason == "stop" else finish_reason


def _log_problems(problems) -> None:
    for problem in problems:
        log.warning("tool call left as text: %s", problem)


class ToolDeltas:
    """Per choice, the streamed text as OpenAI deltas: content, then each call's id and name, then
    its arguments in pieces."""

    def __init__(self, use: ToolUse, choices: int) -> None:
        self._use = use
        self._parsers = [use.fmt.stream_parser(use.tools) for _ in range(choices)]

    def feed(self, index: int, text: str, final: bool) -> DeltaMessage | None:
        parser = self._parsers[index]
        events = parser.feed(text) if text else []
        if final:
            events += parser.finish()
            _log_problems(parser.problems)
        return _delta(events)

    def has_calls(self, index: int) -> bool:
        return self._parsers[index].num_calls > 0


def _delta(events) -> DeltaMessage | None:
    content, calls = "", []
    for event in events:
        if isinstance(event, ContentDelta):
            content += event.text
        elif isinstance(event, CallStart):
            calls.append(DeltaToolCall(index=event.index, id=event.id, type="function",
                                       function=DeltaFunctionCall(name=event.name, arguments="")))
        elif isinstance(event, ArgumentsDelta):
            if calls and calls[-1].index == event.index:
                calls[-1].function.arguments += event.text
            else:
                calls.append(DeltaToolCall(index=event.index, function=DeltaFunctionCall(arguments=event.text)))
    if not content and not calls:
        return None
    return DeltaMessage(content=content or None, tool_calls=calls or None)
