"""Which token sequences the tokenizer itself could have produced.

A sequence ``ids`` (of text tokens, after a fixed left context) is

* **canonical** when it is exactly the tokenizer's encoding of its own text;
* a **valid prefix** when it is a prefix of the canonical encoding of *some* longer text,
  i.e. ``exists z: encode(text(ids) + z)[:len(ids)] == ids``.

The check works on the tokenizer's own parts instead of guessing ``z`` blindly. Pre-tokenization
(regex splitting, Metaspace) cuts the text into segments and BPE runs inside each segment.
BPE encodings are prefix-closed (the encoding of a prefix of a segment, cut at a token
boundary, is the prefix of the segment's encoding), so only the pre-tokenizer needs a view of
the future: the segment boundaries inside ``text(ids)`` can depend on what follows (GPT-2's
``\\s+(?!\\S)`` gives the last space of a run to the next word). We pre-tokenize the text
followed by each of a set of probe continuations (one per character class, plus the end of
text), and accept ``ids`` if, for one of the resulting segmentations, BPE of each segment (the
last one cut at the end of the text) concatenates to ``ids``. A text ending inside a UTF-8
character is completed with characters that start with those bytes (from the vocabulary's
alphabet, plus one generic completion) before pre-tokenizing; if no such completion is a
witness, the sequence is valid iff one of its extensions by a token that carries on the
character is (the canonical continuation has one), checked recursively.

Text that spells an added/special token is treated as plain text here.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .vocabulary import SPACE_MARKER, TokenVocabulary, backend_tokenizer, bytes_to_unicode

__all__ = ["CanonicalityChecker", "DEFAULT_PROBES", "split_incomplete_char"]

DEFAULT_PROBES = ("", " ", "\n", "\t", "a", "A", "s", "0", ".", "'", "-", "é", "中", "😀")
MAX_COMPLETIONS = 16


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


class CanonicalityChecker:
    def __init__(self, tokenizer, vocab: TokenVocabulary, left_context: bytes = b"",
                 probes: tuple[str, ...] = DEFAULT_PROBES):
        self._backend = backend_tokenizer(tokenizer)
        self.vocab = vocab
        self.left_context = left_context
        self.probes = probes if "" in probes else ("",) + tuple(probes)
        self._normalizer = self._backend.normalizer
        self._pre_tokenizer = self._backend.pre_tokenizer
        self._byte_token = {b[0]: i for i, b in enumerate(vocab.token_bytes)
                            if b is not None and len(b) == 1 and vocab.kind == "sentencepiece"}
        self._completions = self._completion_table()
        self._continuation_tokens = [i for i, b in enumerate(vocab.token_bytes) if b and 0x80 <= b[0] < 0xC0]
        self._piece_ids = lru_cache(maxsize=1 << 16)(self._piece_ids_uncached)
        self._valid_cache: dict[tuple[int, ...], bool] = {(): True}

    # --- public -------------------------------------------------------------------------
    def is_canonical(self, ids) -> bool:
        """Is ``ids`` the tokenizer's encoding of its own text (so EOS may follow)?"""
        text = self.left_context + self.vocab.decode(ids)
        split = split_incomplete_char(text)
        if split is None or split[1]:
            return False
        return self._matches(tuple(ids), text, [""], [""])

    def is_valid_prefix(self, ids) -> bool:
        """Can ``ids`` be continued into the canonical encoding of some text?"""
        ids = tuple(ids)
        cached = self._valid_cache.get(ids)
        if cached is None:
            cached = self._valid_uncached(ids)
            self._valid_cache[ids] = cached
        return cached

    def valid_next_tokens(self, ids, candidates) -> np.ndarray:
        """Boolean mask over ``candidates``: is ``ids + (t,)`` a valid prefix?"""
        ids = tuple(ids)
        return np.array([self.vocab.token_bytes[t] is not None and self.is_valid_prefix(ids + (int(t),))
                         for t in candidates], dtype=bool)

    # --- internals ----------------------------------------------------------------------
    def _valid_uncached(self, ids: tuple[int, ...]) -> bool:
        if any(self.vocab.token_bytes[i] is None for i in ids):
            return False
        text = self.left_context + self.vocab.decode(ids)
        split = split_incomplete_char(text)
        if split is None:
            return False
        head, tail = split
        if not tail:
            return self._matches(ids, text, [""], self.probes)
        if self._matches(ids, text, self._completions_for(tail), self.probes):
            return True  # a witness: finish the character, then end the segment
        # Otherwise the next token must carry on the unfinished character (the canonical
        # continuation's next token does): ids is valid iff some such extension is.
        return any(self.is_valid_prefix(ids + (int(t),)) for t in self._continuation_tokens)

    def _matches(self, ids, text: bytes, completions, probes) -> bool:
        left = len(self.left_context)
        head, tail = split_incomplete_char(text)
        token_ends = set(np.cumsum([len(self.vocab.token_bytes[i]) for i in ids]) + left)
        token_ends.add(left)
        seen = set()
        for completion in completions:
            # an unfinished last character is finished inside its segment, where BPE may merge it
            rest = completion.encode("utf-8")[len(tail):] if tail else b""
            for probe in probes:
                bounds = self._boundaries(head.decode("utf-8") + completion + probe, len(head), left)
                if bounds is None or (completion, bounds) in seen:
                    continue
                seen.add((completion, bounds))
                if not set(bounds) <= token_ends:
                    continue
                cuts = (left,) + bounds + (len(text),)
                pieces = []
                for a, b in zip(cuts, cuts[1:]):
                    piece = self._piece_ids(text[a:b] + (rest if b == len(text) else b""))
                    if piece is None:
                        break
                    pieces.extend(piece)
                else:
                    if tuple(pieces[: len(ids)]) == ids and (tail or len(pieces) == len(ids)):
                        return True
        return False

    def _boundaries(self, full: str, limit: int, left: int) -> tuple[int, ...] | None:
        """Segment starts (byte offsets) in ``(left, limit]``; None if ``left`` is not one."""
        if self._normalizer is not None:
            normalized = self._normalizer.normalize_str(full)
            if len(normalized) != len(full):
                raise NotImplementedError("normalizers that change the text length are not supported")
            full_for_split = normalized
        else:
            full_for_split = full
        if self._pre_tokenizer is None:
            starts = [0]
        else:
            starts = [start for _, (start, _) in self._pre_tokenizer.pre_tokenize_str(full_for_split)]
        byte_at = np.cumsum([0] + [len(c.encode("utf-8")) for c in full])
        byte_starts = {int(byte_at[s]) for s in starts}
        if left and left not in byte_starts and left < byte_at[-1]:
            return None
        return tuple(sorted(b for b in byte_starts if left < b <= limit))

    def _piece_ids_uncached(self, segment: bytes) -> tuple[int, ...] | None:
        model = self._backend.model
        if self.vocab.kind == "byte_level":
            table = bytes_to_unicode()
            return tuple(t.id for t in model.tokenize("".join(table[b] for b in segment)))
        head, tail = split_incomplete_char(segment)
        ids = [t.id for t in model.tokenize(head.decode("utf-8").replace(" ", SPACE_MARKER))] if head else []
        for b in tail:  # the unfinished character can only be spelled with byte-fallback tokens
            if b not in self._byte_token:
                return None
            ids.append(self._byte_token[b])
        return tuple(ids)

    def _representable(self, ch: str) -> bool:
        """Can the vocabulary spell ``ch`` at all (texts it cannot spell are out of scope)?"""
        encoded = ch.encode("utf-8")
        if self.vocab.kind == "sentencepiece":
            return encoded in self._single_chars or all(b in self._byte_token for b in encoded)
        return all(b in self._single_bytes for b in encoded)

    def _completion_table(self) -> dict[bytes, list[str]]:
        pieces = [p for p in self.vocab.token_bytes if p]
        self._single_bytes = {p[0] for p in pieces if len(p) == 1}
        self._single_chars = {p for p in pieces if len(p.decode("utf-8", errors="ignore")) == 1}
        chars = set("".join(self.probes))
        for piece in pieces:
            chars.update(piece.decode("utf-8", errors="ignore"))
        self.probes = tuple(p for p in self.probes if all(self._representable(c) for c in p))
        table: dict[bytes, list[str]] = {}
        for ch in sorted(c for c in chars if self._representable(c)):
            encoded = ch.encode("utf-8")
            for k in range(1, len(encoded)):
                table.setdefault(encoded[:k], []).append(ch)
        return table

    def _completions_for(self, tail: bytes) -> list[str]:
        """Characters (representable by the vocabulary) whose UTF-8 starts with ``tail``."""
        chars = self._completions.get(tail, [])[:MAX_COMPLETIONS]
        generic = _generic_completion(tail)
        if generic is not None and generic not in chars and self._representable(generic):
            chars = chars + [generic]
        return chars


def _generic_completion(tail: bytes) -> str | None:
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
