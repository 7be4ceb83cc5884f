"""The incremental reader every format shares: reply text in, content and call events out.

Text that may still become a call is held back, never shown as content. A call-like region that
turns out invalid before its call was announced is shown as content verbatim and reported in
``problems``; one that breaks after (possible only while arguments stream) is reported and the
rest of it dropped, since streamed text cannot be taken back.
"""
from __future__ import annotations

from collections.abc import Callable

from ._call_json import NEED_MORE, WHITESPACE, JsonObjectScanner, excerpt, json_safe_char, judge_call, match_call_head
from ._reply_events import ReplyEvents
from .syntax import CallSyntax
from .types import StreamEvent


def _partial_marker_length(text: str, markers: tuple[str, ...]) -> int:
    """Length of the longest end of ``text`` that is the beginning of a marker."""
    longest = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), longest, -1):
            if text.endswith(marker[:size]):
                longest = size
                break
    return longest


class CallReader:
    """A state machine over the reply text; each ``_<mode>`` step returns whether it made progress.

    ``stream_arguments``: announce a call as soon as its head ``{"name": ..., "arguments": `` is
    read and stream the arguments; otherwise announce each call once its object is complete.
    Either way a call's arguments are the same text (see `judge_call`).
    """

    def __init__(self, syntax: CallSyntax, tool_names: frozenset[str], stream_arguments: bool,
                 make_id: Callable[[], str]):
        self._syntax = syntax
        self._tool_names = tool_names
        self._stream_arguments = stream_arguments
        self._make_id = make_id
        self._markers = syntax.openers + syntax.inline_openers
        self._steps = {"content": self._content, "opened": self._opened, "head": self._head,
                       "object": self._object_text, "after_object": self._after_object,
                       "after_call": self._after_call, "separated": self._separated,
                       "skip_to_closer": self._skip_to_closer}
        self._mode = "content"
        self._pending = ""
        self._out = ReplyEvents()
        self._region: list[str] = []  # the call-like text so far, shown as content if it is no call
        self._object: list[str] = []
        self._scanner = JsonObjectScanner()
        self._started = False
        self._arguments_streaming = False
        self.problems: list[str] = []
        self.num_calls = 0

    def feed(self, text: str) -> list[StreamEvent]:
        self._pending += text
        return self._run(final=False)

    def finish(self) -> list[StreamEvent]:
        return self._run(final=True)

    def _run(self, final: bool) -> list[StreamEvent]:
        while self._steps[self._mode](final):
            pass
        if final:
            self._out.show("", final=True)
        return self._out.take()

    def _content(self, final: bool) -> bool:
        if self._out.just_called:
            self._pending = self._pending.lstrip(WHITESPACE)
        text = self._pending
        found = [(text.find(marker), marker) for marker in self._markers if marker in text]
        if not found:
            keep = 0 if final else _partial_marker_length(text, self._markers)
            self._out.show(text[:len(text) - keep], final)
            self._pending = text[len(text) - keep:]
            return False
        at, marker = min(found)
        self._region = [self._out.show_before_call(text[:at])]
        if marker in self._syntax.openers:
            self._region.append(marker)
            self._pending = text[at + len(marker):]
            self._mode = "opened"
        else:
            self._pending = text[at:]
            self._begin_object()
        return True

    def _opened(self, final: bool) -> bool:
        stripped = self._pending.lstrip(WHITESPACE)
        self._region.append(self._pending[:len(self._pending) - len(stripped)])
        self._pending = stripped
        if stripped.startswith("{"):
            self._begin_object()
            return True
        if stripped or final:
            self._abandon(f"no JSON object after {self._region[1]!r}")
            return True
        return False

    def _begin_object(self) -> None:
        self._object, self._scanner, self._mode = [], JsonObjectScanner(), "head"

    def _take(self, count: int) -> None:
        taken, self._pending = self._pending[:count], self._pending[count:]
        self._object.append(taken)
        if not self._started:
            self._region.append(taken)

    def _head(self, final: bool) -> bool:
        head = match_call_head(self._pending, self._syntax.argument_keys) if self._stream_arguments else None
        if head == NEED_MORE and not final:
            return False
        self._mode = "object"
        if isinstance(head, tuple) and head[0] in self._tool_names:
            name, arguments_at = head
            self._start_call(name)
            for ch in self._pending[:arguments_at]:
                self._scanner.step(ch)
            self._take(arguments_at)
            self._arguments_streaming = True
        return True

    def _object_text(self, final: bool) -> bool:
        scanner, consumed, arguments = self._scanner, 0, []
        for ch in self._pending:
            safe = json_safe_char(ch, scanner.in_string)
            scanner.step(ch)
            if scanner.failed:
                break
            consumed += 1
            if self._arguments_streaming:
                arguments.append(safe)
                self._arguments_streaming = scanner.depth > 1
            if scanner.done:
                break
        self._take(consumed)
        self._out.arguments(self.num_calls - 1, "".join(arguments))
        if scanner.failed or (final and not scanner.done):
            self._abandon(f"malformed or unterminated tool call {excerpt(''.join(self._object))}")
            return True
        if scanner.done:
            self._mode = "after_object"
        return scanner.done

    def _after_object(self, final: bool) -> bool:
        closer = self._syntax.closer
        if closer is not None:
            stripped = self._pending.lstrip(WHITESPACE)
            if stripped.startswith(closer):
                self._region.append(self._pending[:len(self._pending) - len(stripped) + len(closer)])
                self._pending = stripped[len(closer):]
            elif closer.startswith(stripped) and not final:
                return False
        self._mode = "after_call" if self._conclude() else "content"
        return True

    def _after_call(self, final: bool) -> bool:
        separator = self._syntax.separator
        if separator is not None:
            self._pending = self._pending.lstrip(WHITESPACE)
            if not self._pending:
                return False
            if self._pending.startswith(separator):
                self._pending = self._pending[len(separator):]
                self._mode = "separated"
                return True
        self._mode = "content"
        return True

    def _separated(self, final: bool) -> bool:
        self._pending = self._pending.lstrip(WHITESPACE)
        if not self._pending:
            return False
        if self._pending.startswith("{"):
            self._region = []
            self._begin_object()
        else:
            self._mode = "content"
        return True

    def _skip_to_closer(self, final: bool) -> bool:
        closer = self._syntax.closer
        at = self._pending.find(closer)
        if at >= 0:
            count = at + len(closer)
        else:
            count = len(self._pending) - (0 if final else _partial_marker_length(self._pending, (closer,)))
        self._region.append(self._pending[:count])
        self._pending = self._pending[count:]
        if at < 0 and not final:
            return False
        self._end_region()
        return True

    def _start_call(self, name: str) -> None:
        self._out.start_call(self.num_calls, self._make_id(), name)
        self.num_calls += 1
        self._started = True

    def _conclude(self) -> bool:
        """Judges the finished object: announces a valid call (unless it streamed), else reports it."""
        name, arguments, problem = judge_call("".join(self._object), self._syntax.argument_keys, self._tool_names)
        if problem is not None:
            self.problems.append(problem)
            self._end_region()
            return False
        if not self._started:
            self._start_call(name)
            self._out.arguments(self.num_calls - 1, arguments)
        self._region, self._started, self._out.just_called = [], False, True
        return True

    def _abandon(self, problem: str) -> None:
        self.problems.append(problem)
        self._arguments_streaming = False
        if self._syntax.closer is not None:
            self._mode = "skip_to_closer"
        else:
            self._end_region()

    def _end_region(self) -> None:
        """A region that is no (further) call: shown as content, unless its call was announced."""
        if self._started:
            self._out.just_called = True
        else:
            self._out.show("".join(self._region), final=False)
        self._region, self._started, self._mode = [], False, "content"
