"""Accepting candidate next tokens by real witnesses, in one batched tokenizer call.

``ids + (t,)`` is a valid prefix when ``encode(text(ids + (t,)) + z)`` starts with it for some
continuation ``z``: that is the definition, so a ``z`` that does it proves validity. We encode
the text of every candidate followed by every probe (after finishing an unfinished last
character with each of its completions) in one `encode_batch` call, which runs in the
tokenizer's Rust code; typically most candidates are accepted there. The others go on to the
checker's own analysis, which may still accept them (a witness of a probe's character class
that does not merge into the text's last token) or reject them. The answers are the same with
or without this step; only the time differs.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from .utf8 import split_incomplete_char


def accept_by_encoding(backend, token_bytes: Sequence[bytes | None], ids: tuple[int, ...], candidates,
                       probes: Sequence[str], completions_for: Callable[[bytes], list[str]]) -> set[int]:
    """The candidates ``t`` for which some probe (after a completion) is a real witness for ``ids + (t,)``."""
    accepted: set[int] = set()
    for stage in (tuple(probes[:1]), tuple(probes[1:4])):  # most are accepted at the end of the text
        remaining = [t for t in candidates if t not in accepted]
        if stage and remaining:
            accepted |= _accepted(backend, token_bytes, ids, remaining, stage, completions_for)
    return accepted


def _accepted(backend, token_bytes, ids, candidates, probes, completions_for) -> set[int]:
    base = b"".join(token_bytes[i] for i in ids)
    strings, owners = [], []
    for t in candidates:
        piece = token_bytes[t]
        if piece is None:
            continue
        text = base + piece
        split = split_incomplete_char(text)
        if split is None:
            continue
        tail = split[1]
        rests = [c.encode("utf-8")[len(tail):] for c in completions_for(tail)] if tail else [b""]
        for rest in rests:
            finished = (text + rest).decode("utf-8")
            strings.extend(finished + probe for probe in probes)
            owners.extend([t] * len(probes))
    accepted: set[int] = set()
    if not strings:
        return accepted
    n = len(ids) + 1
    for t, encoding in zip(owners, backend.encode_batch(strings, add_special_tokens=False)):
        if t not in accepted and tuple(encoding.ids[:n]) == ids + (t,):
            accepted.add(t)
    return accepted
