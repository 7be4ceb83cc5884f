"""How a format's calls look in text: what the shared reader needs to find and read them."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CallSyntax:
    """How a format's calls look in the model's text."""

    openers: tuple[str, ...]
    """Markers that begin a call without being part of it (``<tool_call>``)."""
    inline_openers: tuple[str, ...] = ()
    """Markers that are the start of the call object itself (``{"name"``)."""
    closer: str | None = None
    """Ends each call (``</tool_call>``); None: the object's closing brace does."""
    separator: str | None = None
    """Joins further calls to a call without a closer (``;``)."""
    argument_keys: tuple[str, ...] = ("arguments",)
