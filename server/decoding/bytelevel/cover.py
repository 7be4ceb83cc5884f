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
                  max_branches: int | None = None, targets: tuple[bytes, ...] = (),
                  min_share: float = 0.0) -> list[Branch]:
    """The cover of ``prefix + bytes([byte])`` from the cover of ``prefix``.

    ``token_logq[ids]`` holds each boundary branch's next-token log-probs (-inf = not allowed).
    With ``min_share`` > 0, branches less likely than ``min_share`` times the most likely one are
    dropped (before they are built: a boundary branch can have tens of thousands of extensions);
    with ``max_branches`` the lowest-mass branches are dropped. Either makes the cover inexact.
    Branches whose text agrees with one of ``targets`` (texts being read) are all kept while the
    new byte is part of that text, and ``max_branches`` caps the others: else the most likely
    branches would be tokens running past the next bytes of the text, and the text would get
    probability zero. Past the end of the targets (generation) every branch counts against both.
    """
    inside, boundary = split_cover(cover, prefix_len)
    reading = [t for t in targets if prefix_len < len(t)]  # texts the new byte still belongs to

    def agrees(text: bytes) -> bool:
        return any(t.startswith(text) or text.startswith(t) for t in reading)

    new = [b for b in inside if b.text[prefix_len] == byte]
    extensions = []  # (branch, token ids, their branch masses)
    for branch in boundary:
        candidates = tokens_by_first_byte[byte]
        logq = token_logq[branch.ids][candidates]
        finite = np.isfinite(logq)
        extensions.append((branch, candidates[finite], branch.logq + logq[finite]))
    if min_share > 0:
        top = max([b.logq for b in new] + [float(m.max()) for _, _, m in extensions if m.size], default=-np.inf)
        floor = top + np.log(min_share)
        new = [b for b in new if b.logq >= floor or (reading and agrees(b.text))]
        kept = []
        for branch, ids, masses in extensions:
            keep = masses >= floor
            if reading:
                keep |= np.array([agrees(branch.text + token_bytes[t]) for t in ids], dtype=bool)
            kept.append((branch, ids[keep], masses[keep]))
        extensions = kept
    for branch, ids, masses in extensions:
        new.extend(Branch(branch.ids + (t,), m, branch.text + token_bytes[t]) for t, m in zip(ids.tolist(), masses.tolist()))
    if max_branches is not None and len(new) > max_branches:
        kept, others = [], []
        for b in new:
            (kept if agrees(b.text) else others).append(b)
        new = kept + sorted(others, key=lambda b: -b.logq)[:max_branches]
    return new
