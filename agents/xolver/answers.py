"""Reading a final numeric answer out of free text, and comparing answers as numbers."""
from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["extract_answer", "parse_number", "same_answer"]

_NUMBER = r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?"
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_HASHES = re.compile(rf"####\s*\$?\s*({_NUMBER})")
_SAYS = re.compile(rf"(?:final answer|the answer|answer)\s*(?:is|:|=)?\s*\$?\s*({_NUMBER})", re.I)
_ANY = re.compile(_NUMBER)


def parse_number(text: str | None) -> Fraction | None:
    """'1,234' -> 1234, '2.50' -> 5/2, '3/4' -> 3/4, '$18' -> 18; None when it is not one number."""
    if text is None:
        return None
    cleaned = text.strip().strip("$").replace(",", "").rstrip(".")
    if not re.fullmatch(r"-?\d+(?:\.\d+)?(?:/\d+)?", cleaned):
        return None
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def extract_answer(text: str | None) -> str | None:
    """The answer a solution states: \\boxed{..}, '#### N', 'the answer is N', else its last number."""
    if not text:
        return None
    for pattern in (_BOXED, _HASHES, _SAYS):
        found = pattern.findall(text)
        if found:
            value = found[-1].strip()
            inner = _ANY.findall(value)
            return inner[-1] if inner and parse_number(value) is None else value
    numbers = _ANY.findall(text)
    return numbers[-1] if numbers else None


def same_answer(a: str | None, b: str | None) -> bool:
    """Equal as numbers when both are numbers, else equal after trimming and case-folding."""
    if a is None or b is None:
        return False
    x, y = parse_number(a), parse_number(b)
    if x is not None and y is not None:
        return x == y
    return a.strip().casefold() == b.strip().casefold()
