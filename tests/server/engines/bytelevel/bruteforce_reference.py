"""An independent brute-force reference for byte-level reading on real tokenizers.

Nothing here comes from braid: each token's bytes are read from the tokenizer's own vocabulary
(GPT-2's byte table for byte-level BPE, ``▁`` and ``<0xNN>`` for SentencePiece byte fallback),
canonicality and prefix validity are decided by the tokenizer's own ``encode``, and every
probability comes from a plain transformers forward pass over ``context + ids``.

The distribution computed is the one the byte-level README defines: ``Q`` is the model with
every step that leaves the canonical prefixes masked (EOS only after a canonical sequence) and
renormalized, and

    P(text starts with b) = sum over tokenizations s of a proper prefix b[:j] of b of
                            Q(s) * sum over tokens v whose bytes start with b[j:] of Q(v | s)

(the inner sum is the mass of the tokens that run past the end of ``b``, one softmax sum per
tokenization). The next-byte distribution after ``b`` groups the same sums by the byte at
``len(b)``, plus END = the mass of EOS after the tokenizations of ``b`` itself.

A token sequence ``t`` is a valid prefix when some text ``z`` makes the tokenizer encode
``text(t) + z`` starting with ``t``. The search for ``z`` here is a brute force over witness
strings: the empty string, every printable ASCII character, a list of non-ASCII characters and
two-character strings, and, when ``text(t)`` ends inside a UTF-8 character, every character
that finishes it (where there are more than `MAX_COMPLETIONS`, a deterministic sample plus one
character of each Unicode class, whitespace included) followed by a few probes. A witness
proves validity; a valid prefix whose only witnesses are missing from the list would be judged
invalid, which shows up as a disagreement with the server (to be looked into), not as a silent
pass. Zero-probability tokens never need a decision: only tokens the model gives positive
probability are checked, which is what keeps this affordable on real vocabularies. "Every
tokenization" is meant literally, except that one is dropped as soon as a step of it has
probability zero (it adds nothing).
"""
from __future__ import annotations

import string
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

END = 256

# witnesses appended after a text that ends on a whole character
_ASCII = [c for c in string.printable if c not in "\x0b\x0c\r"]
_OTHER = ["é", "ß", "ï", "€", "中", "语", "の", "😀", "ꙮ", "\u00a0", "Ω", "я"]
_DOUBLE = ["  ", " a", " A", " 1", " .", " (", "a ", "1 ", ". ", "\n\n", " \n", "\n ", "\t\t", "ab", "12", "..",
           "'s", "s ", "a.", "1.", "é ", " é", "中文", "\n\t", "<b", "</"]
WITNESSES = ["", *_ASCII, *_OTHER, *_DOUBLE]
# after a character finished by a completion
_AFTER_COMPLETION = ["", " ", "a", "1", "."]
MAX_COMPLETIONS = 256


def gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's printable character -> byte table (the inverse of its ``bytes_to_unicode``)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[chr(b)] = b
        else:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def vocabulary_bytes(tokenizer) -> list[bytes | None]:
    """Token id -> its bytes in the text; ``None`` for special tokens (they spell no text)."""
    backend = tokenizer.backend_tokenizer
    byte_level = type(backend.decoder).__name__ == "ByteLevel"
    byte_fallback = bool(getattr(backend.model, "byte_fallback", False))
    decoder = gpt2_byte_decoder()
    pieces: list[bytes | None] = [None] * len(tokenizer)
    for piece, i in backend.get_vocab(with_added_tokens=False).items():
        if byte_level:
            pieces[i] = bytes(decoder[c] for c in piece)
        elif byte_fallback and len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            pieces[i] = bytes([int(piece[3:5], 16)])
        else:
            pieces[i] = piece.replace("\u2581", " ").encode()
    for i, added in tokenizer.added_tokens_decoder.items():  # special ones spell nothing; the others are text
        pieces[i] = None if added.special else added.content.encode()
    return pieces


def utf8_state(data: bytes) -> tuple[bool, bytes]:
    """(possible, tail): ``possible`` is False when ``data`` cannot start any UTF-8 text;
    ``tail`` is the unfinished last character's bytes (empty when it ends on a whole character)."""
    try:
        data.decode("utf-8")
        return True, b""
    except UnicodeDecodeError as err:
        if err.reason != "unexpected end of data" or err.end != len(data):
            return False, b""
        return True, data[err.start:]


@lru_cache(maxsize=None)
def completions(tail: bytes) -> list[str]:
    """Characters whose UTF-8 encoding starts with ``tail``: all of them where there are at most
    `MAX_COMPLETIONS`, else a deterministic spread sample plus the first character of each
    Unicode class (letter, mark, number, punctuation, symbol, other, and whitespace: pre-tokenizers
    split on these classes, so a witness may need one of a particular class)."""
    lead = tail[0]
    length = 2 if 0xC0 <= lead < 0xE0 else 3 if lead < 0xF0 else 4
    first = {2: 0x80, 3: 0x800, 4: 0x10000}[length]
    last = {2: 0x7FF, 3: 0xFFFF, 4: 0x10FFFF}[length]
    # the code points sharing the tail's bits, as a contiguous range
    shift = 6 * (length - len(tail))
    value = lead & (0x7F >> length)
    for b in tail[1:]:
        value = (value << 6) | (b & 0x3F)
    low, high = max(first, value << shift), min(last, ((value + 1) << shift) - 1)
    points = [p for p in range(low, high + 1) if not 0xD800 <= p <= 0xDFFF]
    if len(points) > MAX_COMPLETIONS:
        step = len(points) / MAX_COMPLETIONS
        chosen = {points[int(k * step)] for k in range(MAX_COMPLETIONS)} | {points[-1]}
        classes: dict[str, int] = {}
        for p in points:
            c = chr(p)
            classes.setdefault("space" if c.isspace() else unicodedata.category(c)[0], p)
        points = sorted(chosen | set(classes.values()))
    out = [chr(p) for p in points]
    assert all(c.encode().startswith(tail) for c in out), tail
    return out


class TokenizerOracle:
    """Canonicality and prefix validity, decided by the tokenizer's own encode (cached)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.token_bytes = vocabulary_bytes(tokenizer)
        self._valid: dict[tuple[int, ...], bool] = {(): True}
        self._canonical: dict[tuple[int, ...], bool] = {}
        self.encodes = 0

    def text(self, ids) -> bytes:
        return b"".join(self.token_bytes[i] for i in ids)

    def encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer.encode(text, add_special_tokens=False))

    def _encode_many(self, texts: list[str]) -> list[list[int]]:
        self.encodes += len(texts)
        return [e.ids for e in self.tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)]

    def is_canonical(self, ids) -> bool:
        """The tokenizer's own round trip: ``encode(decode(ids)) == ids``."""
        ids = tuple(ids)
        if ids not in self._canonical:
            data = self.text(ids)
            text = self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)
            # a decode that does not spell the bytes (an unfinished character) cannot round-trip
            self._canonical[ids] = text.encode() == data and self.encode(text) == ids
        return self._canonical[ids]

    def is_valid(self, ids) -> bool:
        ids = tuple(ids)
        if ids not in self._valid:
            self.valid_next(ids[:-1], [ids[-1]])
        return self._valid[ids]

    def valid_next(self, ids, candidates) -> np.ndarray:
        """For each token v of ``candidates``: is ``ids + (v,)`` a valid prefix (some witness z with
        ``encode(text + z)`` starting with it)? ``ids`` may be invalid (then so is every extension)."""
        ids = tuple(ids)
        seqs = [ids + (int(v),) for v in candidates]
        if not self.is_valid(ids):  # encode(text + z) starting with ids + (v,) starts with ids
            self._valid.update(dict.fromkeys(seqs, False))
            return np.zeros(len(seqs), dtype=bool)
        todo = [s for s in dict.fromkeys(seqs) if s not in self._valid]
        whole, partial = [], []
        for s in todo:
            possible, tail = utf8_state(self.text(s))
            if not possible:
                self._valid[s] = False
            else:
                (partial if tail else whole).append((s, tail))
        self._search(whole, lambda tail: [b""])
        probes = [z.encode() for z in WITNESSES[1:]]
        self._search([(s, t) for s, t in whole if s not in self._valid], lambda tail: probes)
        for after in _AFTER_COMPLETION:  # an unfinished character: finish it, then the probes
            self._search(partial, lambda tail: [c.encode()[len(tail):] + after.encode() for c in completions(tail)])
        for s, _ in whole + partial:
            self._valid.setdefault(s, False)
        return np.array([self._valid[s] for s in seqs], dtype=bool)

    def _search(self, items, witnesses) -> None:
        """Mark valid every sequence whose text plus one of its witnesses (bytes) the tokenizer
        encodes starting with it."""
        texts, owners = [], []
        for s, tail in items:
            if s in self._valid:
                continue
            head = self.text(s)
            for z in witnesses(tail):
                texts.append((head + z).decode("utf-8"))
                owners.append(s)
        if not texts:
            return
        for s, encoded in zip(owners, self._encode_many(texts)):
            if s not in self._valid and tuple(encoded[: len(s)]) == s:
                self._valid[s] = True


@dataclass
class Rule:
    """Which next tokens are allowed after a text token sequence.

    Exact (the default): every valid one, EOS after a canonical sequence. ``min_token_prob`` > 0:
    only tokens at least that likely are checked; the rest are dropped (``unchecked="mask"``) or
    allowed unchecked (``"keep"``); tokens that spell the next piece of a ``targets`` text (one
    being scored) are checked whatever their probability."""

    min_token_prob: float = 0.0
    unchecked: str = "mask"
    targets: tuple[bytes, ...] = ()


@dataclass
class BruteForce:
    """One model read at byte level after ``context`` (the tokens the engine starts a text with)."""

    oracle: TokenizerOracle
    model: object
    context: tuple[int, ...]
    eos_ids: tuple[int, ...]
    rule: Rule = field(default_factory=Rule)
    _raw: dict = field(default_factory=dict, repr=False)
    _rows: dict = field(default_factory=dict, repr=False)
    forward_passes: int = 0
    threshold_margin: float = np.inf  # closest |log P(v) - log min_token_prob| met (a near-tie could flip)

    @property
    def token_bytes(self):
        return self.oracle.token_bytes

    def with_rule(self, rule: Rule) -> "BruteForce":
        """The same model (sharing forward passes and validity) under another rule."""
        return BruteForce(self.oracle, self.model, self.context, self.eos_ids, rule, self._raw)

    @torch.no_grad()
    def raw_row(self, ids) -> np.ndarray:
        """log P(next token | context + ids): a plain forward pass, float64 log-softmax."""
        ids = tuple(ids)
        if ids not in self._raw:
            logits = self.model(input_ids=torch.tensor([[*self.context, *ids]])).logits[0, -1]
            self._raw[ids] = logits.double().log_softmax(-1).numpy()
            self.forward_passes += 1
        return self._raw[ids]

    def row(self, ids) -> np.ndarray:
        """log Q(next token | ids): the allowed tokens renormalized, -inf elsewhere."""
        ids = tuple(ids)
        if ids not in self._rows:
            raw = self.raw_row(ids)
            positive = np.flatnonzero(np.isfinite(raw))
            text = np.array([self.token_bytes[v] is not None and len(self.token_bytes[v]) > 0 for v in positive], bool)
            tokens = positive[text]
            allowed = np.zeros(len(raw), dtype=bool)
            checked = tokens
            if self.rule.min_token_prob > 0:
                gap = np.abs(raw[tokens] - np.log(self.rule.min_token_prob))
                self.threshold_margin = min(self.threshold_margin, float(gap.min(initial=np.inf)))
                checked = tokens[(raw[tokens] >= np.log(self.rule.min_token_prob)) | self._spell_target(ids, tokens)]
                if self.rule.unchecked == "keep":
                    allowed[tokens] = True
            allowed[checked] = self.oracle.valid_next(ids, checked)
            if self.oracle.is_canonical(ids):
                allowed[[e for e in self.eos_ids if np.isfinite(raw[e])]] = True
            masked = np.where(allowed, raw, -np.inf)
            self._rows[ids] = masked - np.logaddexp.reduce(masked[allowed]) if allowed.any() else masked
        return self._rows[ids]

    def _spell_target(self, ids, tokens) -> np.ndarray:
        """Tokens whose text after ``ids`` agrees with a target (is a prefix of it, or runs past its end)."""
        head = self.oracle.text(ids)
        out = np.zeros(len(tokens), dtype=bool)
        for target in self.rule.targets:
            if len(head) < len(target) and target.startswith(head):
                rest = target[len(head):]
                out |= np.array([rest.startswith(self.token_bytes[v]) or self.token_bytes[v].startswith(rest)
                                 for v in tokens], dtype=bool)
        return out

    # --- the enumeration -------------------------------------------------------------------
    def tokenizations(self, text: bytes) -> list[tuple[tuple[int, ...], float]]:
        """Every tokenization ``s`` of every prefix of ``text`` (the empty one included) with
        log Q(s) > -inf, found by trying every vocabulary token that spells the next bytes."""
        by_bytes: dict[bytes, list[int]] = {}
        for v, piece in enumerate(self.token_bytes):
            if piece and piece in text:
                by_bytes.setdefault(piece, []).append(v)
        found, stack = [], [((), 0.0)]
        while stack:
            ids, logq = stack.pop()
            found.append((ids, logq))
            at = len(self.oracle.text(ids))
            if at == len(text):
                continue
            row = self.row(ids)
            for end in range(at + 1, len(text) + 1):
                for v in by_bytes.get(text[at:end], ()):
                    if np.isfinite(row[v]):
                        stack.append((ids + (v,), logq + row[v]))
        return found

    def next_byte_masses(self, text: bytes) -> np.ndarray:
        """log of the joint mass P(text starts with ``text + x``) for x in 0..255, and at END
        P(the text is exactly ``text``): one softmax sum per tokenization, grouped by byte."""
        mass = np.zeros(257)
        for ids, logq in self.tokenizations(text):
            at = len(self.oracle.text(ids))
            rest = text[at:]
            row = self.row(ids)
            for v in np.flatnonzero(np.isfinite(row)):
                piece = self.token_bytes[v]
                if v in self.eos_ids:
                    if not rest:
                        mass[END] += np.exp(logq + row[v])
                elif len(piece) > len(rest) and piece.startswith(rest):
                    mass[piece[len(rest)]] += np.exp(logq + row[v])
        with np.errstate(divide="ignore"):
            return np.log(mass)

    def dead_ends(self, text: bytes) -> list[tuple[int, ...]]:
        """Tokenizations of prefixes of ``text`` with positive mass after which nothing is allowed
        (every valid next token has probability zero, and EOS is not allowed). A full-support
        model has none; with one, mass leaves the text distribution and the chain rule
        (P(b + x) = P(b) P(x | b)) breaks for both the reference and the server."""
        return [ids for ids, _ in self.tokenizations(text) if not np.isfinite(self.row(ids)).any()]

    def next_byte_logprobs(self, text: bytes) -> np.ndarray:
        masses = self.next_byte_masses(text)
        return masses - np.logaddexp.reduce(masses)

    def prefix_logprob(self, text: bytes) -> float:
        """log P(text starts with ``text``)."""
        return float(np.logaddexp.reduce(self.next_byte_masses(text)))

    def continuation_choices(self, text: bytes) -> dict[tuple[tuple[int, ...], bool], float]:
        """The first token sequences reaching past ``text`` (or ending exactly there, then EOS):
        {(ids, ended): log-prob given that the text starts with ``text``}."""
        choices = {}
        for ids, logq in self.tokenizations(text):
            rest = text[len(self.oracle.text(ids)):]
            row = self.row(ids)
            for v in np.flatnonzero(np.isfinite(row)):
                v = int(v)
                if v in self.eos_ids:
                    if not rest:
                        choices[(ids, True)] = logq + row[v]
                elif len(self.token_bytes[v]) > len(rest) and self.token_bytes[v].startswith(rest):
                    choices[(ids + (v,), False)] = logq + row[v]
        total = np.logaddexp.reduce(list(choices.values()))
        return {k: float(lp - total) for k, lp in choices.items()}


def pruned_next_byte_logprobs(bf: BruteForce, text: bytes, min_branch_share: float = 0.0,
                              max_branches: int | None = None) -> list[np.ndarray]:
    """The next-byte distributions after ``text[:n]`` (n = 0..len(text)) when covers are pruned
    as documented: reading byte n, the branches covering ``text[:n+1]`` (those of ``text[:n]``
    whose text goes on with that byte, and the extensions by one allowed token of those that end
    there) less likely than ``min_branch_share`` times the most likely one are dropped, and with
    ``max_branches`` only that many of the most likely are kept; branches that agree with a text
    being read (one of ``bf.rule.targets`` the new byte belongs to) are always kept."""
    cover = [((), 0.0)]
    out = []
    for n in range(len(text) + 1):
        mass = np.zeros(257)
        for ids, logq in cover:
            piece = bf.oracle.text(ids)
            if len(piece) > n:
                mass[piece[n]] += np.exp(logq)
                continue
            row = bf.row(ids)
            for v in np.flatnonzero(np.isfinite(row)):
                symbol = END if v in bf.eos_ids else bf.token_bytes[v][0]
                mass[symbol] += np.exp(logq + row[v])
        with np.errstate(divide="ignore"):
            out.append(np.log(mass) - np.log(mass.sum()))
        if n == len(text):
            break
        new = []
        for ids, logq in cover:
            piece = bf.oracle.text(ids)
            if len(piece) > n:
                if piece[n] == text[n]:
                    new.append((ids, logq))
                continue
            row = bf.row(ids)
            new += [(ids + (int(v),), logq + row[v]) for v in np.flatnonzero(np.isfinite(row))
                    if v not in bf.eos_ids and bf.token_bytes[v][0] == text[n]]
        reading = [t for t in bf.rule.targets if n < len(t)]

        def agrees(ids) -> bool:
            piece = bf.oracle.text(ids)
            return any(t.startswith(piece) or piece.startswith(t) for t in reading)

        if min_branch_share > 0 and new:
            floor = max(logq for _, logq in new) + np.log(min_branch_share)
            new = [(ids, logq) for ids, logq in new if logq >= floor or agrees(ids)]
        if max_branches is not None and len(new) > max_branches:
            own = [b for b in new if agrees(b[0])]
            others = sorted((b for b in new if not agrees(b[0])), key=lambda b: -b[1])
            new = own + others[:max_branches]
        cover = new
    return out
