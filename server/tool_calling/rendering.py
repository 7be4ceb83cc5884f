"""Tools and tool-call history in the prompt: the chat template's own way if it has one, else the format's."""
from __future__ import annotations

import json
from itertools import groupby
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .base import ToolCallFormat
from .types import ToolCall, ToolCallingError, ToolSpec

__all__ = ["ToolPrompt", "template_renders_tools", "render_tool_prompt"]

_PROBE_CONVERSATION = [{"role": "user", "content": "Hello"}]
_PROBE_TOOL = ToolSpec("braid_probe_tool", "Probe.", {"type": "object", "properties": {}}).to_openai()


def template_renders_tools(tokenizer) -> bool:
    """Whether the tokenizer's chat template shows ``tools`` to the model (it renders a probe tool)."""
    try:
        plain = tokenizer.apply_chat_template(_PROBE_CONVERSATION, tokenize=False, add_generation_prompt=True)
        with_tool = tokenizer.apply_chat_template(_PROBE_CONVERSATION, tools=[_PROBE_TOOL], tokenize=False,
                                                  add_generation_prompt=True)
    except Exception:  # no template, or one that rejects the probe: it cannot render tools either
        return False
    return with_tool != plain and _PROBE_TOOL["function"]["name"] in with_tool


@dataclass(frozen=True)
class ToolPrompt:
    """Messages for ``tokenizer.apply_chat_template(list(messages), **template_kwargs)``."""

    messages: tuple[dict[str, Any], ...]
    tools: tuple[dict[str, Any], ...] = ()

    @property
    def template_kwargs(self) -> dict[str, Any]:
        return {"tools": list(self.tools)} if self.tools else {}


@dataclass(frozen=True)
class _Turn:
    role: str
    text: str
    calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    tool_name: str | None = None


def _text(content: Any, index: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, Sequence) and all(isinstance(p, Mapping) and p.get("type") == "text" for p in content):
        return "".join(str(part.get("text", "")) for part in content)
    raise ToolCallingError("with tools, message content must be text", f"messages[{index}].content")


def _calls(message: Mapping[str, Any], index: int) -> tuple[ToolCall, ...]:
    calls = []
    for j, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        arguments = function.get("arguments")
        if isinstance(arguments, Mapping):
            arguments = json.dumps(arguments, ensure_ascii=False)
        try:
            parsed = json.loads(arguments)
        except (TypeError, ValueError, RecursionError):
            parsed = None
        if not isinstance(parsed, dict):
            raise ToolCallingError("tool call arguments must be a JSON object encoded as a string",
                                   f"messages[{index}].tool_calls[{j}].function.arguments")
        if not isinstance(function.get("name"), str):
            raise ToolCallingError("a tool call needs a function name",
                                   f"messages[{index}].tool_calls[{j}].function.name")
        calls.append(ToolCall(str(call.get("id") or ""), function["name"], arguments))
    return tuple(calls)


def _checked_turns(messages: Sequence[Mapping[str, Any]]) -> list[_Turn]:
    """The conversation validated: call arguments are JSON objects, results answer earlier calls."""
    turns: list[_Turn] = []
    names_by_call_id: dict[str, str] = {}
    for i, message in enumerate(messages):
        role = "system" if message.get("role") == "developer" else str(message.get("role"))
        calls = _calls(message, i) if role == "assistant" else ()
        names_by_call_id.update((call.id, call.name) for call in calls if call.id)
        call_id = message.get("tool_call_id")
        if role == "tool" and call_id not in names_by_call_id:
            raise ToolCallingError(f"tool message answers tool_call_id {call_id!r}, which no earlier assistant "
                                   "message called", f"messages[{i}].tool_call_id")
        turns.append(_Turn(role, _text(message.get("content"), i), calls, call_id, names_by_call_id.get(call_id)))
    return turns


def _template_message(turn: _Turn) -> dict[str, Any]:
    if turn.role == "tool":
        return {"role": "tool", "content": turn.text, "tool_call_id": turn.tool_call_id, "name": turn.tool_name}
    message: dict[str, Any] = {"role": turn.role, "content": turn.text}
    if turn.calls:
        message["tool_calls"] = [{"id": call.id, "type": "function",
                                  "function": {"name": call.name, "arguments": json.loads(call.arguments)}}
                                 for call in turn.calls]
    return message


def _format_messages(turns: list[_Turn], tools: Sequence[ToolSpec], fmt: ToolCallFormat) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for are_results, group in groupby(turns, key=lambda turn: turn.role == "tool"):
        if are_results:
            messages.append({"role": "user", "content": fmt.render_results([turn.text for turn in group])})
        else:
            messages.extend({"role": turn.role, "content": fmt.render_assistant(turn.text, turn.calls)}
                            for turn in group)
    if tools:
        instructions = fmt.tools_instructions(tools)
        if messages and messages[0]["role"] == "system":
            system = messages[0]["content"]
            messages[0]["content"] = f"{system}\n\n{instructions}" if system else instructions
        else:
            messages.insert(0, {"role": "system", "content": instructions})
    return messages


def render_tool_prompt(messages: Sequence[Mapping[str, Any]], tools: Sequence[ToolSpec], fmt: ToolCallFormat,
                       renders_tools: bool) -> ToolPrompt:
    """OpenAI messages (with ``tool_calls`` and ``tool`` results) and tools, ready for the chat template.

    ``renders_tools`` (see `template_renders_tools`): pass tools and history in the Hugging Face
    convention. Otherwise the format writes them: instructions in the system message, past calls
    as the model's own call text, results as user turns. Raises `ToolCallingError` naming the field.
    """
    turns = _checked_turns(messages)
    if renders_tools:
        return ToolPrompt(tuple(_template_message(turn) for turn in turns), tuple(t.to_openai() for t in tools))
    return ToolPrompt(tuple(_format_messages(turns, tools, fmt)))
