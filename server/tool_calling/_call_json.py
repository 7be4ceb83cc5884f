"""The JSON object of one call: following it as its text arrives, recognising its head, judging it."""
from __future__ import annotations

import json
from typing import Final

WHITESPACE: Final = " \t\n\r"
_BARE_VALUE_CHARS: Final = frozenset("0123456789+-.eEtruefalsn")
_CLOSING: Final = {"}": "{", "]": "["}

NEED_MORE: Final = "need more"


class JsonObjectScanner:
    """Nesting, strings and escapes of one JSON object, one character at a time.

    Structural checks only (brackets, characters outside strings); ``json.loads`` judges the
    finished text. ``done`` once the outermost object closes, ``failed`` at the first character
    no JSON object could contain there.
    """

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.in_string = False
        self._escaped = False
        self.done = False
        self.failed = False

    @property
    def depth(self) -> int:
        return len(self.stack)

    def step(self, ch: str) -> None:
        if self.in_string:
            if self._escaped:
                self._escaped = False
            elif ch == "\\":
                self._escaped = True
            elif ch == '"':
                self.in_string = False
        elif not self.stack and ch != "{":
            self.failed = True
        elif ch == '"':
            self.in_string = True
        elif ch in "{[":
            self.stack.append(ch)
        elif ch in _CLOSING:
            if self.stack.pop() != _CLOSING[ch]:
                self.failed = True
            elif not self.stack:
                self.done = True
        elif ch not in ",:" and ch not in _BARE_VALUE_CHARS and ch not in WHITESPACE:
            self.failed = True


def json_safe_char(ch: str, in_string: bool) -> str:
    """``ch`` as strict JSON allows it: a raw control character inside a string becomes an escape.

    xgrammar 0.2.8 lets raw control characters into strings with ``maxLength``; clients'
    ``JSON.parse`` / ``json.loads`` reject them, so arguments carry them escaped.
    """
    return f"\\u{ord(ch):04x}" if in_string and ord(ch) < 0x20 else ch


def json_safe_value(text: str) -> str:
    """The JSON value at the start of ``text`` (an object), cut at its end, with `json_safe_char`."""
    scanner, out = JsonObjectScanner(), []
    for ch in text:
        out.append(json_safe_char(ch, scanner.in_string))
        scanner.step(ch)
        if scanner.done or scanner.failed:
            break
    return "".join(out)


def _skip_whitespace(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in WHITESPACE:
        pos += 1
    return pos


_NAME = object()
_ARGUMENT_KEY = object()


def match_call_head(text: str, argument_keys: tuple[str, ...]) -> tuple[str, int] | str | None:
    """``{"name": "<name>", "<argument key>": {`` at the start of ``text``, any whitespace between.

    Returns ``(name, index of the arguments' "{")``, `NEED_MORE` while ``text`` could still grow
    into such a head, or None when it cannot (other key order, escapes in the name, ...).
    """
    quoted_keys = tuple(f'"{key}"' for key in argument_keys)
    pos, name = 0, ""
    for piece in ("{", '"name"', ":", _NAME, ",", _ARGUMENT_KEY, ":", "{"):
        pos = _skip_whitespace(text, pos)
        if pos == len(text):
            return NEED_MORE
        if piece is _NAME:
            if text[pos] != '"':
                return None
            end = pos + 1
            while end < len(text) and text[end] not in '"\\':
                end += 1
            if end == len(text):
                return NEED_MORE
            if text[end] == "\\" or end == pos + 1:
                return None
            name, pos = text[pos + 1:end], end + 1
            continue
        options = quoted_keys if piece is _ARGUMENT_KEY else (piece,)
        rest = text[pos:]
        hit = next((option for option in options if rest.startswith(option)), None)
        if hit is None:
            return NEED_MORE if any(option.startswith(rest) for option in options) else None
        pos += len(hit)
    return name, pos - 1


def excerpt(text: str, limit: int = 200) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def judge_call(text: str, argument_keys: tuple[str, ...], tool_names: frozenset[str]
               ) -> tuple[str, str, str | None]:
    """``(name, arguments text, problem)`` for one call object's text; ``problem`` None if valid.

    Arguments in the canonical head order keep the model's own text (escaped as JSON requires),
    exactly what streaming sent; others are re-serialised.
    """
    try:
        call = json.loads(text, strict=False)
    except (ValueError, RecursionError) as exc:
        return "", "", f"tool call is not valid JSON ({exc}): {excerpt(text)}"
    if not isinstance(call, dict):
        return "", "", f"tool call is not a JSON object: {excerpt(text)}"
    head = match_call_head(text, argument_keys)
    name = head[0] if isinstance(head, tuple) else call.get("name")
    if not isinstance(name, str):
        return "", "", f"tool call without a string \"name\": {excerpt(text)}"
    if name not in tool_names:
        return name, "", f"call to unknown tool {name!r}: {excerpt(text)}"
    key = next((key for key in argument_keys if key in call), None)
    if key is None or not isinstance(call[key], dict):
        return name, "", f"tool call without a JSON object {argument_keys[0]!r}: {excerpt(text)}"
    if isinstance(head, tuple):
        return name, json_safe_value(text[head[1]:]), None
    return name, json.dumps(call[key], ensure_ascii=False), None
