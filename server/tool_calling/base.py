"""What a tool-call format is: how its calls read and stream, how they are constrained and rendered."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from ._constraint import call_constraint
from .parsing import ToolCallStreamParser, parse_tool_calls
from .syntax import CallSyntax
from .types import ParsedMessage, ToolCall, ToolChoice, ToolSpec

__all__ = ["ToolCallFormat"]


class ToolCallFormat(ABC):
    """One convention for tool calls, used on both sides of the model.

    Output side: `parse`, `stream_parser` and `call_constraint`. Prompt side, for chat templates
    that do not render tools themselves: `tools_instructions` (system text), `render_assistant`
    (a past reply with its calls) and `render_results` (tool results, sent as one user turn).
    """

    name: ClassVar[str]
    syntax: ClassVar[CallSyntax]
    trigger: ClassVar[str]
    """Text every constrained call starts with; in ``auto`` free text never contains it."""
    separator: ClassVar[str]
    """Text between calls when calls are forced."""
    free_text_excludes: ClassVar[tuple[str, ...]] = ()

    def parse(self, text: str, tools: Sequence[ToolSpec]) -> ParsedMessage:
        return parse_tool_calls(text, self.syntax, tools)

    def stream_parser(self, tools: Sequence[ToolSpec]) -> ToolCallStreamParser:
        return ToolCallStreamParser(self.syntax, tools)

    def call_constraint(self, tools: Sequence[ToolSpec], choice: ToolChoice,
                        parallel: bool = True) -> tuple[str, str] | None:
        """``(kind, spec)`` for a ``StructuredOutputPlan`` (see `_constraint.call_constraint`)."""
        return call_constraint(self, tools, choice, parallel)

    @abstractmethod
    def call_begin(self, tool_name: str) -> str:
        """A call's text before its arguments object, exactly as the constraint writes it."""

    @abstractmethod
    def call_end(self) -> str:
        """A call's text after its arguments object."""

    @abstractmethod
    def tools_instructions(self, tools: Sequence[ToolSpec]) -> str:
        """The tools and how to call them, for the system message."""

    def render_calls(self, calls: Sequence[ToolCall]) -> str:
        """Past calls as the model would have written them (arguments verbatim)."""
        return self.separator.join(self.call_begin(call.name) + call.arguments + self.call_end() for call in calls)

    def render_assistant(self, content: str, calls: Sequence[ToolCall]) -> str:
        rendered = self.render_calls(calls)
        return f"{content}\n{rendered}" if content and rendered else content + rendered

    @abstractmethod
    def render_results(self, results: Sequence[str]) -> str:
        """Consecutive tool results as the content of one user turn."""
