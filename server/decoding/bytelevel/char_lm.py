"""Characters on top of a `ByteLM`: P(char | text) = product of its bytes' conditionals.

Byte sequences that are not UTF-8 get no mass from a canonicalized byte LM (canonical
tokenizations spell valid text), so the characters' probabilities, plus END, sum to one.
"""
from __future__ import annotations

import numpy as np

from .byte_lm import ByteLM
from .next_byte import END, logsumexp, warp_logprobs

__all__ = ["CharLM", "END_OF_TEXT"]

END_OF_TEXT = ""  # the key of the end-of-text outcome in a next-character distribution


class CharLM:
    def __init__(self, byte_lm: ByteLM):
        self.byte_lm = byte_lm

    def next_char_logprobs(self, prefix: str, min_logprob: float = -np.inf) -> dict[str, float]:
        """{character: log-prob} (END_OF_TEXT for the end), dropping branches below ``min_logprob``."""
        data = prefix.encode("utf-8")
        out: dict[str, float] = {}
        stack = [(b"", 0.0)]
        while stack:
            partial, logp = stack.pop()
            dist = self.byte_lm.next_byte_logprobs(data + partial)
            if not partial and np.isfinite(dist[END]) and dist[END] >= min_logprob:
                out[END_OF_TEXT] = float(dist[END])
            for byte in np.flatnonzero(np.isfinite(dist[:256])):
                total = logp + float(dist[byte])
                if total < min_logprob:
                    continue
                candidate = partial + bytes([int(byte)])
                try:
                    out[candidate.decode("utf-8")] = total
                except UnicodeDecodeError as err:
                    if err.reason == "unexpected end of data":
                        stack.append((candidate, total))
        return out

    def logprob(self, text: str, prefix: str = "") -> float:
        """log P(the whole text is prefix + text | it starts with prefix)."""
        return self.byte_lm.logprob(text.encode("utf-8"), prefix=prefix.encode("utf-8"))

    def sample(self, prefix: str = "", max_chars: int = 32, seed: int | None = None,
               temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0) -> tuple[str, bool]:
        rng = np.random.default_rng(seed)
        out = ""
        while len(out) < max_chars:
            dist = self.next_char_logprobs(prefix + out)
            chars = sorted(dist)
            logprobs = warp_logprobs(np.array([dist[c] for c in chars]) - logsumexp(np.array(list(dist.values()))),
                                     temperature, top_k, top_p)
            probs = np.exp(logprobs)
            choice = chars[int(rng.choice(len(chars), p=probs / probs.sum()))]
            if choice == END_OF_TEXT:
                return out, True
            out += choice
        return out, False
