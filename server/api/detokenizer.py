"""Token ids -> text deltas, with stop strings that may span token boundaries.

Text is emitted only when it is final: an incomplete UTF-8 sequence is held back, and so is
any tail that could still grow into a stop string. A matched stop string is not emitted.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TextStream"]

REPLACEMENT = "\ufffd"


@dataclass
class TextDelta:
    text: str
    stopped: bool = False  # a stop string matched; generation should end


@dataclass
class TextStream:
    tokenizer: object
    stop: list[str] = field(default_factory=list)
    skip_special_tokens: bool = True
    prefix_ids: list[int] = field(default_factory=list)  # context (e.g. prompt tail) for decoding
    text: str = ""  # everything decoded so far (the stop string excluded once matched)
    _emitted: int = 0
    _ids: list[int] = field(default_factory=list)
    _decoded_upto: int = 0
    _stopped: bool = False

    def __post_init__(self) -> None:
        self._hold = max((len(s) for s in self.stop), default=1) - 1
        # Decoding a window that starts a few tokens back keeps prefix spaces right
        # (SentencePiece drops a leading space when a sequence is decoded from its start).
        self._context = list(self.prefix_ids[-4:])

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def add(self, token_ids: list[int]) -> TextDelta:
        if self._stopped:
            return TextDelta("", True)
        self._ids.extend(token_ids)
        window = self._context + self._ids[self._decoded_upto:]
        full = self._decode(window)
        new_text = _past(full, self._decode(self._context) if self._context else "")
        if new_text.endswith(REPLACEMENT):
            return TextDelta("")  # incomplete UTF-8: wait for the next token
        search_from = max(0, len(self.text) - self._hold)
        self.text += new_text
        self._context = window[-4:]
        self._decoded_upto = len(self._ids)
        for stop in self.stop:
            pos = self.text.find(stop, search_from)
            if pos != -1:
                self.text = self.text[:pos]
                self._stopped = True
                break
        return self._release()

    def finish(self) -> TextDelta:
        """Flush what was held back (the sequence ended without a stop string)."""
        if not self._stopped and self._decoded_upto < len(self._ids):
            tail = self._decode(self._context + self._ids[self._decoded_upto:])
            self.text += _past(tail, self._decode(self._context) if self._context else "")
            self._decoded_upto = len(self._ids)
        delta = self.text[self._emitted:]
        self._emitted = len(self.text)
        return TextDelta(delta, self._stopped)

    def _release(self) -> TextDelta:
        safe = len(self.text) if self._stopped else max(self._emitted, len(self.text) - self._hold)
        delta = self.text[self._emitted:safe]
        self._emitted = safe
        return TextDelta(delta, self._stopped)


def _past(full: str, base: str) -> str:
    """The text ``full`` adds to ``base`` (the decoded context it starts with). A context that ends
    inside a character (a prompt whose last token stops mid-UTF-8) decodes to replacement
    characters that ``full`` spells out: the whole character is new text."""
    if full.startswith(base):
        return full[len(base):]
    stripped = base.rstrip(REPLACEMENT)
    if stripped != base and full.startswith(stripped):
        return full[len(stripped):]
    return full
