"""The events of a reply being read, and the rule for whitespace around calls.

Whitespace around calls is dropped, except that text before and after calls stays apart as it
was before them: ``"Sure. <call> Done."`` has content ``"Sure. Done."``.
"""
from __future__ import annotations

from ._call_json import WHITESPACE
from .types import ArgumentsDelta, CallStart, ContentDelta, StreamEvent


class ReplyEvents:
    def __init__(self) -> None:
        self._events: list[StreamEvent] = []
        self._held_whitespace = ""
        self._gap_before_call = ""
        self._shown_any = False
        self.just_called = False
        """Nothing but whitespace since the last call: it is dropped."""

    def take(self) -> list[StreamEvent]:
        events, self._events = self._events, []
        return events

    def _emit(self, event: StreamEvent) -> None:
        last = self._events[-1] if self._events else None
        if isinstance(event, ContentDelta) and isinstance(last, ContentDelta):
            self._events[-1] = ContentDelta(last.text + event.text)
        elif isinstance(event, ArgumentsDelta) and isinstance(last, ArgumentsDelta) and last.index == event.index:
            self._events[-1] = ArgumentsDelta(event.index, last.text + event.text)
        else:
            self._events.append(event)

    def show(self, text: str, final: bool) -> None:
        """Content, but trailing whitespace waits (unless ``final``) to see whether a call follows."""
        if self.just_called and not text:
            if final:
                self._held_whitespace = ""
            return
        combined = self._held_whitespace + text
        shown = combined if final else combined.rstrip(WHITESPACE)
        self._held_whitespace = combined[len(shown):]
        if shown:
            self._emit(ContentDelta(shown))
            self.just_called, self._shown_any = False, True

    def show_before_call(self, text: str) -> str:
        """Content that a call-like region follows; returns the whitespace between them."""
        before = self._held_whitespace + text
        shown = before.rstrip(WHITESPACE)
        self._held_whitespace = ""
        self.show(shown, final=True)
        self._gap_before_call = before[len(shown):]
        return self._gap_before_call

    def start_call(self, index: int, call_id: str, name: str) -> None:
        self._emit(CallStart(index, call_id, name))
        self._held_whitespace = self._gap_before_call if self._shown_any else ""

    def arguments(self, index: int, text: str) -> None:
        if text:
            self._emit(ArgumentsDelta(index, text))
