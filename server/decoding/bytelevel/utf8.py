"""UTF-8 helpers for byte prefixes that may end inside a character."""
from __future__ import annotations

__all__ = ["split_incomplete_char"]


def split_incomplete_char(data: bytes) -> tuple[bytes, bytes] | None:
    """(complete UTF-8 part, trailing incomplete character) or None if ``data`` is not UTF-8."""
    for cut in range(len(data), max(len(data) - 4, -1), -1):
        head, tail = data[:cut], data[cut:]
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if not tail or _could_start_char(tail):
            return head, tail
    return None


def _could_start_char(tail: bytes) -> bool:
    try:
        tail.decode("utf-8")
        return False  # complete, so it would have been part of head
    except UnicodeDecodeError as err:
        return err.reason == "unexpected end of data"


def generic_completion(tail: bytes) -> str | None:
    """Some character whose UTF-8 starts with ``tail`` (None if no character does)."""
    for filler in range(0x80, 0xC0):
        for fill_rest in (0x80, 0xBF):
            candidate = tail + bytes([filler])
            for _ in range(3):
                try:
                    return candidate.decode("utf-8")
                except UnicodeDecodeError as err:
                    if err.reason != "unexpected end of data":
                        break
                    candidate += bytes([fill_rest])
    return None
