"""Added tokens that a tokenizer cuts out of the raw text before normalizing and BPE.

HF `tokenizers` splits the input at every occurrence of an added token (leftmost-longest, on
the raw text for tokens with ``normalized=False``) and runs the normalizer, the pre-tokenizer
and BPE only on the pieces in between. Gemma 3 has 135 such non-special tokens (runs of "\\n",
runs of "\\t", HTML tags such as "<b>"): "\\n\\n" is always that one token, never two "\\n"
tokens and never byte fallback. Special tokens are not split out here: text that spells one is
read as plain text (a documented limit).
"""
from __future__ import annotations

import re


class AddedTokens:
    """Non-special added tokens (text -> id) and the tokenizer's leftmost-longest split."""

    def __init__(self, tokens: dict[str, int]):
        self.ids = dict(tokens)
        by_length = sorted(self.ids, key=len, reverse=True)  # first alternative that matches = longest
        self._pattern = re.compile("|".join(map(re.escape, by_length))) if by_length else None

    @classmethod
    def from_spec(cls, added_tokens: list[dict]) -> "AddedTokens":
        """From ``tokenizer.json``'s ``added_tokens``; refuses options this split does not model."""
        tokens = {}
        for token in added_tokens:
            if token.get("special"):
                continue
            unsupported = [k for k in ("normalized", "single_word", "lstrip", "rstrip") if token.get(k)]
            if unsupported:
                raise NotImplementedError(
                    f"added token {token['content']!r} sets {', '.join(unsupported)}; only non-special added "
                    "tokens matched on the raw text without those options are supported")
            tokens[token["content"]] = int(token["id"])
        return cls(tokens)

    def __bool__(self) -> bool:
        return bool(self.ids)

    def spans(self, text: str) -> list[tuple[int, int, int]]:
        """(start, end, token id) of each added token cut out of ``text`` (character offsets)."""
        if self._pattern is None:
            return []
        return [(m.start(), m.end(), self.ids[m.group()]) for m in self._pattern.finditer(text)]
