"""Covers: the token-sequence prefixes whose text covers a byte prefix.

A branch ``ids`` covers the byte prefix ``b`` when ``text(ids[:-1])`` is a proper prefix of
``b`` and ``b`` is a prefix of ``text(ids)`` (the empty sequence covers the empty prefix). Every
token sequence whose text starts with ``b`` has exactly one covering prefix, so the mass of
"text starts with b" is the sum of the covers' masses. A branch whose text ends exactly at
``b`` is on the *boundary*: its next token decides the next byte. Others are *inside*: their
next byte is already fixed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Branch", "advance_cover", "split_cover"]


@dataclass(frozen=True)
class Branch:
    ids: tuple[int, ...]  # text tokens after the fixed context
    logq: float           # log-probability of this token prefix (canonicalized model)
    text: bytes           # bytes of ids


def split_cover(cover: list[Branch], prefix_len: int) -> tuple[list[Branch], list[Branch]]:
    """(inside branches, boundary branches) of a cover of a prefix of length ``prefix_len``."""
    inside = [b for b in cover if len(b.text) > prefix_len]
    boundary = [b for b in cover if len(b.text) == prefix_len]
    return inside, boundary


def advance_cover(cover: list[Branch], prefix_len: int, byte: int, token_logq: dict[tuple, np.ndarray],
                  token_bytes: list[bytes | None], tokens_by_first_byte: list[np.ndarray],
                  max_branches: int | None = None, targets: tuple[bytes, ...] = ()) -> list[Branch]:
    """The cover of ``prefix + bytes([byte])`` from the cover of ``prefix``.

    ``token_logq[ids]`` holds each boundary branch's next-token log-probs (-inf = not allowed).
    With ``max_branches`` the lowest-mass branches are dropped (then no longer exact). Branches
    whose text agrees with one of ``targets`` (texts being read) are all kept while the new byte is
    part of that text, and ``max_branches`` caps the others: else the most likely branches would
    be tokens running past the next bytes of the text, and the text would get probability zero.
    Past the end of the targets (generation) every branch counts against ``max_branches``.
    """
    inside, boundary = split_cover(cover, prefix_len)
    new = [b for b in inside if b.text[prefix_len] == byte]
    for branch in boundary:
        logq = token_logq[branch.ids]
        candidates = tokens_by_first_byte[byte]
        for t in candidates[np.isfinite(logq[candidates])]:
            t = int(t)
            new.append(Branch(branch.ids + (t,), branch.logq + float(logq[t]), branch.text + token_bytes[t]))
    if max_branches is not None and len(new) > max_branches:
        reading = [t for t in targets if prefix_len < len(t)]  # texts the new byte still belongs to
        kept, others = [], []
        for b in new:
            (kept if any(t.startswith(b.text) or b.text.startswith(t) for t in reading) else others).append(b)
        new = kept + sorted(others, key=lambda b: -b.logq)[:max_branches]
    return new
