"""OpenAI tool calling, independent of the engine: formats, parsing, constraints, prompt rendering.

A format (`get_tool_call_format`, by a model's ``tool_call_format``) reads calls out of replies
(`ToolCallFormat.parse`, `ToolCallFormat.stream_parser`), constrains them
(`ToolCallFormat.call_constraint` -> a structural tag for ``StructuredOutputPlan``) and, for chat
templates without tool support, writes tools, past calls and results into the prompt
(`render_tool_prompt`).
"""
from .base import ToolCallFormat
from .formats import DEFAULT_TOOL_CALL_FORMAT, TOOL_CALL_FORMATS, ToolCallFormatName, get_tool_call_format
from .parsing import message_from_events
from .rendering import ToolPrompt, render_tool_prompt, template_renders_tools
from .requests import parse_tools, resolve_tool_choice
from .types import (
    ArgumentsDelta,
    CallStart,
    ContentDelta,
    ParsedMessage,
    ToolCall,
    ToolCallingError,
    ToolChoice,
    ToolSpec,
)

__all__ = [
    "ToolCallFormat", "DEFAULT_TOOL_CALL_FORMAT", "TOOL_CALL_FORMATS", "ToolCallFormatName", "get_tool_call_format",
    "message_from_events",
    "ToolPrompt", "render_tool_prompt", "template_renders_tools",
    "parse_tools", "resolve_tool_choice",
    "ArgumentsDelta", "CallStart", "ContentDelta", "ParsedMessage",
    "ToolCall", "ToolCallingError", "ToolChoice", "ToolSpec",
]
