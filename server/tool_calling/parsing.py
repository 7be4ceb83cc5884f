"""Reading tool calls out of a reply: whole (`parse_tool_calls`) or as it streams (`ToolCallStreamParser`)."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ._call_reader import CallReader
from .syntax import CallSyntax
from .types import ArgumentsDelta, CallStart, ContentDelta, ParsedMessage, StreamEvent, ToolCall, ToolSpec, new_call_id

__all__ = ["message_from_events"]


class ToolCallStreamParser:
    """Turns streamed reply text into content and call events, OpenAI's streaming order.

    ``feed`` each text delta, then ``finish`` once. Per call: a `CallStart` (index, id, name),
    then `ArgumentsDelta` pieces whose concatenation is the call's arguments. For every valid
    reply the events add up to `parse_tool_calls` of the whole text (ids aside).
    """

    def __init__(self, syntax: CallSyntax, tools: Sequence[ToolSpec],
                 make_id: Callable[[], str] = new_call_id):
        self._reader = CallReader(syntax, frozenset(tool.name for tool in tools), True, make_id)

    def feed(self, text: str) -> list[StreamEvent]:
        return self._reader.feed(text)

    def finish(self) -> list[StreamEvent]:
        return self._reader.finish()

    @property
    def num_calls(self) -> int:
        """Calls announced so far: the reply's ``finish_reason`` is ``tool_calls`` when > 0."""
        return self._reader.num_calls

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(self._reader.problems)


def parse_tool_calls(text: str, syntax: CallSyntax, tools: Sequence[ToolSpec],
                     make_id: Callable[[], str] = new_call_id) -> ParsedMessage:
    """A whole reply's content and calls; each invalid call stays text and is named in ``problems``."""
    reader = CallReader(syntax, frozenset(tool.name for tool in tools), False, make_id)
    events = reader.feed(text) + reader.finish()
    return message_from_events(events, reader.problems)


def message_from_events(events: Iterable[StreamEvent], problems: Iterable[str] = ()) -> ParsedMessage:
    """The message a sequence of stream events adds up to."""
    content: list[str] = []
    calls: list[tuple[str, str, list[str]]] = []
    for event in events:
        if isinstance(event, ContentDelta):
            content.append(event.text)
        elif isinstance(event, CallStart):
            calls.append((event.id, event.name, []))
        elif isinstance(event, ArgumentsDelta):
            calls[event.index][2].append(event.text)
    text = "".join(content)
    return ParsedMessage(
        content=None if calls and not text else text,
        tool_calls=tuple(ToolCall(call_id, name, "".join(pieces)) for call_id, name, pieces in calls),
        problems=tuple(problems),
    )
