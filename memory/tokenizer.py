"""The one tokenizer behind BM25: lowercase, then Unicode word runs.

``tokenize(text) == re.findall(r"\\w+", text.lower())``: letters, digits and underscore
(Unicode-aware, so "café" and "naïve" stay whole); everything else separates tokens. No
stemming, no stop-word list, no length limit. "ERR-4711" becomes ["err", "4711"]. Tokens are
stored per record in SQLite, so changing this function requires re-indexing (the store
records ``TOKENIZER_VERSION`` and refuses a mismatch).
"""
from __future__ import annotations

import re

__all__ = ["tokenize", "TOKENIZER_VERSION"]

TOKENIZER_VERSION = "lower-word-v1"
_WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """Split ``text`` into lowercase word tokens (see the module docstring)."""
    return _WORD.findall(text.lower())
