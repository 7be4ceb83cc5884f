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
alphabet, every whitespace character, plus one generic completion) before pre-tokenizing; if
no such completion is a witness, the sequence is valid iff one of its extensions by a token
that carries on the character is (the canonical continuation has one), checked recursively.

Text that spells an added/special token is treated as plain text here.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .utf8 import generic_completion, split_incomplete_char
from .vocabulary import SPACE_MARKER, TokenVocabulary, backend_tokenizer, bytes_to_unicode
from ._witnesses import accept_by_encoding

__all__ = ["CanonicalityChecker"]

DEFAULT_PROBES = ("", " ", "\n", "\t", "a", "A", "s", "0", ".", "'", "-", "é", "中", "😀")
MAX_COMPLETIONS = 16
# Every Unicode whitespace character above ASCII (all lie below U+3001). Pre-tokenizers split
# whitespace runs with look-ahead rules (GPT-2's ``\s+(?!\S)``), so an unfinished character may
# be valid only as whitespace (after " ", U+1680 OGHAM SPACE MARK gives "Ġ" "á" "ļ" "Ģ" where a
# letter would merge "Ġá"): these are always tried as completions, on top of MAX_COMPLETIONS.
_WHITESPACE = tuple(c for c in map(chr, range(0x80, 0x3001)) if c.isspace())
# Extensions of an unfinished character tried per validity question. Without a bound the search
# is exponential in the missing bytes (tens of continuation tokens per byte) when no completion
# is a witness, e.g. after a token whose boundary no character could follow; past the bound the
# token counts as invalid.
MAX_EXTENSION_CHECKS = 64


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
        self._extension_budget, self._budget_hit = MAX_EXTENSION_CHECKS, False
        return self._is_valid(tuple(ids))

    def _is_valid(self, ids: tuple[int, ...]) -> bool:
        cached = self._valid_cache.get(ids)
        if cached is None:
            cached = self._valid_uncached(ids)
            if not self._budget_hit:  # an answer cut short by the budget is not cached
                self._valid_cache[ids] = cached
        return cached

    @property
    def cached_results(self) -> int:
        return len(self._valid_cache)

    def clear_cache(self) -> None:
        """Forget cached validity results (a long-running server bounds its memory with this)."""
        self._valid_cache = {(): True}
        self._piece_ids.cache_clear()

    def valid_next_tokens(self, ids, candidates) -> np.ndarray:
        """Boolean mask over ``candidates``: is ``ids + (t,)`` a valid prefix? ``ids`` itself must
        be one (as every cover branch is)."""
        ids = self._stable_suffix(tuple(ids))
        unknown = [int(t) for t in candidates if ids + (int(t),) not in self._valid_cache]
        if len(unknown) > 1 and not self.left_context and all(self.vocab.token_bytes[i] is not None for i in ids):
            for t in accept_by_encoding(self._backend, self.vocab.token_bytes, ids, unknown, self.probes,
                                        self._completions_for):
                self._valid_cache[ids + (t,)] = True
        return np.array([self.vocab.token_bytes[t] is not None and self.is_valid_prefix(ids + (int(t),))
                         for t in candidates], dtype=bool)

    # --- internals ----------------------------------------------------------------------
    def _stable_suffix(self, ids: tuple[int, ...]) -> tuple[int, ...]:
        """``ids`` without a leading part that ends at a segment boundary no continuation can move:
        a token boundary starting a segment under every probe, with two more such starts after it
        in the text, is out of the pre-tokenizer's look-ahead. The text before it is encoded on its
        own, so what may follow depends only on the rest, asked about (and cached) as a text of
        its own: checks cost the last few segments, not the whole text."""
        if self.left_context or len(ids) < 4 or any(self.vocab.token_bytes[i] is None for i in ids):
            return ids
        split = split_incomplete_char(self.vocab.decode(ids))
        if split is None:
            return ids
        head = split[0].decode("utf-8")
        common = None
        for probe in self.probes:
            found = self._boundaries(head + probe, len(split[0]), 0)
            starts = set(found[0]) if found is not None else set()
            common = starts if common is None else common & starts
        common = sorted(b for b in common if b < len(split[0]))
        ends = np.cumsum([len(self.vocab.token_bytes[i]) for i in ids]).tolist()
        cuts = [b for b in common[:-2] if b in ends]
        return ids[ends.index(cuts[-1]) + 1:] if cuts else ids

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
        if not self.left_context:  # a real witness for an extension proves ids valid (cheap, batched)
            extensions = accept_by_encoding(self._backend, self.vocab.token_bytes, ids, self._continuation_tokens,
                                            self.probes[:2], self._completions_for)
            self._valid_cache.update({ids + (t,): True for t in extensions})
            if extensions:
                return True
        if self._matches(ids, text, self._completions_for(tail), self.probes):
            return True  # a witness: finish the character, then end the segment
        # Otherwise the next token must carry on the unfinished character (the canonical
        # continuation's next token does): ids is valid iff some such extension is.
        for t in self._continuation_tokens:
            if self._extension_budget <= 0:
                self._budget_hit = True
                return False
            self._extension_budget -= 1
            if self._is_valid(ids + (int(t),)):
                return True
        return False

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
                found = self._boundaries(head.decode("utf-8") + completion + probe, len(head), left)
                if found is None or (completion, found) in seen:
                    continue
                seen.add((completion, found))
                bounds, added_spans = found
                if not set(bounds) <= token_ends:
                    continue
                cuts = (left,) + bounds + (len(text),)
                added_at = {a: (e, token) for a, e, token in added_spans}
                pieces = []
                for a, b in zip(cuts, cuts[1:]):
                    if a == b:
                        continue
                    if a in added_at:  # an added token is one piece; one that runs past the text is no witness
                        end, token = added_at[a]
                        piece = (token,) if end == b + (len(rest) if b == len(text) else 0) else None
                    else:
                        piece = self._piece_ids(text[a:b] + (rest if b == len(text) else b""))
                    if piece is None:
                        break
                    pieces.extend(piece)
                else:
                    if tuple(pieces[: len(ids)]) == ids and (tail or len(pieces) == len(ids)):
                        return True
        return False

    def _boundaries(self, full: str, limit: int, left: int):
        """(segment starts in ``(left, limit]``, added-token spans ``(start, end, id)``), byte offsets;
        None if ``left`` is not a segment start."""
        byte_at = _byte_offsets(full)
        starts, added, pos = set(), [], 0
        for a, e, token in self.vocab.added.spans(full) + [(len(full), len(full), None)]:
            if a > pos:  # the tokenizer normalizes and pre-tokenizes each piece between added tokens
                starts.update(pos + s for s in self._pre_token_starts(full[pos:a]))
            if token is not None:
                starts.add(a)
                added.append((int(byte_at[a]), int(byte_at[e]), token))
            pos = e
        byte_starts = byte_at[sorted(starts)].tolist()
        if left and left not in byte_starts and left < byte_at[-1]:
            return None
        return tuple(b for b in byte_starts if left < b <= limit), tuple(added)

    def _pre_token_starts(self, piece: str) -> list[int]:
        if self._normalizer is not None:
            normalized = self._normalizer.normalize_str(piece)
            if len(normalized) != len(piece):
                raise NotImplementedError("normalizers that change the text length are not supported")
            piece = normalized
        if self._pre_tokenizer is None:
            return [0]
        return [start for _, (start, _) in self._pre_tokenizer.pre_tokenize_str(piece)]

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
        self._space_completions: dict[bytes, list[str]] = {}
        for ch in sorted(c for c in chars if self._representable(c)):
            encoded = ch.encode("utf-8")
            for k in range(1, len(encoded)):
                table.setdefault(encoded[:k], []).append(ch)
        for ch in (c for c in _WHITESPACE if self._representable(c)):
            encoded = ch.encode("utf-8")
            for k in range(1, len(encoded)):
                self._space_completions.setdefault(encoded[:k], []).append(ch)
        return table

    def _completions_for(self, tail: bytes) -> list[str]:
        """Characters (representable by the vocabulary) whose UTF-8 starts with ``tail``."""
        chars = self._completions.get(tail, [])[:MAX_COMPLETIONS]
        chars = chars + [c for c in self._space_completions.get(tail, ()) if c not in chars]
        generic = generic_completion(tail)
        if generic is not None and generic not in chars and self._representable(generic):
            chars = chars + [generic]
        return chars


def _byte_offsets(text: str) -> np.ndarray:
    """int64 [len(text) + 1]: the UTF-8 byte offset of each character position."""
    if text.isascii():
        return np.arange(len(text) + 1)
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    sizes = 1 + (points >= 0x80) + (points >= 0x800) + (points >= 0x10000)
    return np.concatenate(([0], np.cumsum(sizes)))
