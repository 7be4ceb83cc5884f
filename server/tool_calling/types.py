"""The values that cross the tool-calling boundary: tools, calls, parsed messages, stream events."""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Literal, Union

__all__ = ["ToolCallingError", "ToolSpec", "ToolCall", "ToolChoice", "ParsedMessage", "ContentDelta", "CallStart",
           "ArgumentsDelta"]


class ToolCallingError(ValueError):
    """A request tool calling cannot serve; ``param`` names the request field at fault (an HTTP 400)."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.message = message
        self.param = param


def _empty_object_schema() -> dict[str, Any]:
    return {"type": "object", "properties": {}}


@dataclass(frozen=True)
class ToolSpec:
    """One function tool as the request declared it; ``parameters`` is its JSON schema."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=_empty_object_schema)

    def to_openai(self) -> dict[str, Any]:
        """The ``{"type": "function", "function": {...}}`` shape (HF chat templates take it too)."""
        function: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            function["description"] = self.description
        function["parameters"] = self.parameters
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolCall:
    """A call the model made; ``arguments`` is a JSON object as text, as OpenAI sends it."""

    id: str
    name: str
    arguments: str

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class ToolChoice:
    """``tool_choice`` resolved against the tools: ``named`` carries the tool's ``name``."""

    mode: Literal["none", "auto", "required", "named"]
    name: str | None = None


@dataclass(frozen=True)
class ParsedMessage:
    """A finished reply split into text and calls; ``problems`` says why any call-like text stayed text."""

    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContentDelta:
    text: str


@dataclass(frozen=True)
class CallStart:
    index: int
    id: str
    name: str


@dataclass(frozen=True)
class ArgumentsDelta:
    index: int
    text: str


StreamEvent = Union[ContentDelta, CallStart, ArgumentsDelta]


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)
