"""A token-level LM read as an exact LM over bytes.

Definition (see README.md). Let P be the model's distribution over token sequences after a
fixed context, and Q its canonicalized version: at each step, tokens that would make the
sequence stop being a valid prefix of a canonical tokenization are masked and the rest
renormalized; EOS is allowed only after a canonical sequence. Q puts all its mass on canonical
sequences, and a text has exactly one canonical tokenization, so Q(text = x) = Q(encode(x), EOS).
Then

    P(text starts with b)   = sum over covers c of b of Q(c)
    P(next byte = v | b)    = P(text starts with b+v) / P(text starts with b)
    P(END | b)              = Q(encode(b), EOS) / P(text starts with b)

which is exactly the byte marginal of Q. When the model already puts all its mass on canonical
tokenizations (trained LMs nearly do), Q = P and the text distribution is unchanged.
"""
from __future__ import annotations

import inspect

import numpy as np

from .canonicality import CanonicalityChecker
from .cover import Branch, advance_cover, split_cover
from .language_model import LanguageModel
from .next_byte import END, aggregate_next_byte, canonical_logprobs, logsumexp, sample_bytes
from .vocabulary import TokenVocabulary

__all__ = ["ByteLM", "END"]


class ByteLM:
    def __init__(self, lm: LanguageModel, vocab: TokenVocabulary, checker: CanonicalityChecker,
                 context_ids=(), min_token_prob: float = 0.0, max_branches: int | None = None,
                 always_check: bytes | tuple[bytes, ...] = b"", unchecked: str = "mask",
                 min_branch_share: float = 0.0, lookahead: int = 8, max_cached_rows: int = 64):
        """``context_ids``: fixed tokens before the text (BOS, a prompt), at least one token.

        Speed knobs, each trading exactness for speed (all off by default):

        * ``min_token_prob`` > 0 skips the canonicality check for tokens below that probability;
          ``unchecked`` says what they become: ``"mask"`` (not allowed) or ``"keep"`` (allowed
          with the model's probability: wrong only by the non-canonical part of that tail, which
          trained models keep tiny, where masking drops the whole tail);
        * ``min_branch_share`` > 0 drops cover branches less likely than that share of the most
          likely branch (with ``"keep"`` the cover holds the whole tail, so this is what bounds it);
        * ``max_branches`` caps the cover at the most likely branches.

        ``lookahead``: when a forward pass is needed anyway, it also runs (up to this many) branches
        that continuing along the most likely branch will need next, so that reading one token's
        bytes takes about one forward instead of one per boundary inside it. Cost only: the
        distributions are the same (0 turns it off).

        ``max_cached_rows``: next-token rows kept (each is a float64 vocabulary-sized vector: 0.4 MB
        for a 49k vocabulary, 2 MB for 262k); the oldest go first and are recomputed if asked
        for again, so a long text does not grow memory without bound.

        ``always_check``: a text to be scored (or several); its own tokens (those spelling a piece
        of it where a branch ends) are checked whatever their probability, so with
        ``min_token_prob`` > 0 it never gets probability zero just because one of its tokens is
        rare (the probabilities still sum to one), and ``max_branches`` keeps the branches that
        spell it (``min_branch_share`` too). No effect when exact.
        """
        if not context_ids:
            raise ValueError("context_ids needs at least one token (e.g. BOS)")
        if unchecked not in ("mask", "keep"):
            raise ValueError(f"unchecked must be 'mask' or 'keep', got {unchecked!r}")
        if not 0.0 <= min_branch_share < 1.0:
            raise ValueError(f"min_branch_share must be in [0, 1), got {min_branch_share}")
        if lookahead < 0:
            raise ValueError(f"lookahead must be >= 0, got {lookahead}")
        if max_cached_rows < 1:
            raise ValueError(f"max_cached_rows must be >= 1, got {max_cached_rows}")
        self.max_cached_rows = max_cached_rows
        self.unchecked, self.min_branch_share, self.lookahead = unchecked, min_branch_share, lookahead
        self.lm, self.vocab, self.checker = lm, vocab, checker
        self._lm_follows = "follow" in inspect.signature(lm.next_token_logprobs).parameters
        self.context_ids = tuple(context_ids)
        self.min_token_prob = min_token_prob
        self.max_branches = max_branches
        self._tokens_by_first_byte = [np.flatnonzero(vocab.first_byte == b) for b in range(256)]
        self.always_check = (always_check,) if isinstance(always_check, bytes) else tuple(always_check)
        self._ids_of_bytes: dict[bytes, list[int]] = {}
        if any(self.always_check) and min_token_prob > 0:
            for i, piece in enumerate(vocab.token_bytes):
                if piece:
                    self._ids_of_bytes.setdefault(piece, []).append(i)
        self._longest_token = max(map(len, self._ids_of_bytes), default=0)
        self._covers: dict[bytes, list[Branch]] = {b"": [Branch((), 0.0, b"")]}
        self._token_logq: dict[tuple[int, ...], np.ndarray] = {}
        self._lookahead_rows: dict[tuple[int, ...], np.ndarray] = {}  # next-token log-probs run ahead, unchecked

    # --- distributions ------------------------------------------------------------------
    def cover(self, prefix: bytes) -> list[Branch]:
        """Branches covering ``prefix`` (empty: the prefix has probability zero)."""
        start = len(prefix)
        while prefix[:start] not in self._covers:
            start -= 1
        for n in range(start, len(prefix)):
            parent = self._covers[prefix[:n]]
            inside, boundary = split_cover(parent, n)
            self._ensure_token_logq(boundary, inside)
            self._covers[prefix[: n + 1]] = advance_cover(
                parent, n, prefix[n], self._token_logq, self.vocab.token_bytes,
                self._tokens_by_first_byte, self.max_branches, tuple(t for t in self.always_check if t),
                self.min_branch_share)
        return self._covers[prefix]

    def next_byte_logprobs(self, prefix: bytes = b"") -> np.ndarray:
        """float64 [257] normalized log-probs of the next byte (index 256 = END)."""
        cover = self.cover(prefix)
        if not cover:
            raise ValueError(f"the prefix {prefix!r} has probability zero")
        inside, boundary = split_cover(cover, len(prefix))
        self._ensure_token_logq(boundary, inside)
        token_logq = np.stack([self._token_logq[b.ids] for b in boundary]) if boundary else np.zeros((0, self.vocab.size))
        return aggregate_next_byte(
            np.array([b.text[len(prefix)] for b in inside], dtype=np.int64),
            np.array([b.logq for b in inside]), np.array([b.logq for b in boundary]),
            token_logq, self.vocab.first_byte, self.vocab.eos_ids)

    def prefix_logprob(self, text: bytes) -> float:
        """log P(text starts with ``text``), as the sum of the covers' masses."""
        return logsumexp(np.array([b.logq for b in self.cover(text)]))

    def logprob(self, text: bytes, prefix: bytes = b"") -> float:
        """log P(the whole text is ``prefix + text`` | it starts with ``prefix``), byte by byte."""
        total, full = 0.0, prefix + text
        for n in range(len(prefix), len(full) + 1):
            if not self.cover(full[:n]):
                return -np.inf
            symbol = full[n] if n < len(full) else END
            total += float(self.next_byte_logprobs(full[:n])[symbol])
        return total

    # --- sampling -----------------------------------------------------------------------
    def sample(self, prefix: bytes = b"", max_bytes: int = 64, seed: int | None = None,
               temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
               rng: np.random.Generator | None = None) -> tuple[bytes, bool]:
        """Sample a continuation of ``prefix`` byte by byte: (bytes, ended with END)."""
        return sample_bytes(self.next_byte_logprobs, prefix, max_bytes, rng or np.random.default_rng(seed),
                            temperature, top_p, top_k)

    def continuation_choices(self, prefix: bytes) -> list[tuple[tuple[int, ...], bool, float]]:
        """Token-level hand-off after a prompt ending mid-token.

        Returns (ids, ended, log-prob) with ids the first token sequence that reaches past
        ``prefix`` (or ends exactly there, ``ended``), log-probs conditional on the prefix and
        summing to one. Sample one, then continue with ordinary token-level decoding from
        ``context_ids + ids``.
        """
        cover = self.cover(prefix)
        inside, boundary = split_cover(cover, len(prefix))
        self._ensure_token_logq(boundary, inside)
        choices = [(b.ids, False, b.logq) for b in inside]
        for b in boundary:
            logq = self._token_logq[b.ids]
            for t in np.flatnonzero(np.isfinite(logq)):
                t = int(t)
                ended = t in self.vocab.eos_ids
                choices.append((b.ids if ended else b.ids + (t,), ended, b.logq + float(logq[t])))
        total = logsumexp(np.array([c[2] for c in choices]))
        return [(ids, ended, lp - total) for ids, ended, lp in choices]

    # --- internals ----------------------------------------------------------------------
    def token_logq(self, ids: tuple[int, ...]) -> np.ndarray:
        """Canonicalized next-token log-probs after text tokens ``ids``."""
        self._ensure_token_logq([Branch(tuple(ids), 0.0, b"")])
        return self._token_logq[tuple(ids)]

    def _ensure_token_logq(self, branches: list[Branch], inside: list[Branch] = ()) -> None:
        """Next-token log-probs of ``branches``; ``inside``: the cover's other branches, whose
        most likely line the look-ahead follows."""
        missing = list(dict.fromkeys(b.ids for b in branches if b.ids not in self._token_logq))
        if not missing:
            return
        run = [ids for ids in missing if ids not in self._lookahead_rows]
        if run:
            ahead, line = self._ahead_of(inside, set(missing))
            rows = run + ahead
            follow = rows.index(line) if line in rows else None  # the row the text most likely extends next
            for ids, row in zip(rows, self._model_rows(rows, follow)):
                self._lookahead_rows[ids] = row
        for ids in missing:
            row = self._lookahead_rows.pop(ids)
            self._token_logq[ids] = canonical_logprobs(row, self._valid_next(ids, row))
        self._forget_old_rows(keep={b.ids for b in branches})
        if inside:  # rows run ahead for a line the text did not take are not needed any more
            alive = {b.ids for b in inside}
            self._lookahead_rows = {k: v for k, v in self._lookahead_rows.items() if k in alive}

    def _forget_old_rows(self, keep: set) -> None:
        """Drop the oldest next-token rows beyond ``max_cached_rows`` (never those in ``keep``)."""
        excess = len(self._token_logq) - self.max_cached_rows
        if excess <= 0:
            return
        for ids in [k for k in self._token_logq if k not in keep][:excess]:
            del self._token_logq[ids]

    def _ahead_of(self, inside: list[Branch], exclude: set) -> tuple[list[tuple[int, ...]], tuple[int, ...] | None]:
        """Branches running past the prefix whose text the most likely one continues (each will
        be on the boundary, and need its next-token distribution, as that text is read), and
        that most likely branch."""
        if not self.lookahead or not inside:
            return [], None
        top = max(inside, key=lambda b: b.logq)
        ahead = sorted((b for b in inside if top.text.startswith(b.text)), key=lambda b: len(b.text))
        ids = [b.ids for b in ahead
               if b.ids not in exclude and b.ids not in self._token_logq and b.ids not in self._lookahead_rows]
        return ids[: self.lookahead], top.ids

    def _model_rows(self, branch_ids: list[tuple[int, ...]], follow: int | None = None) -> np.ndarray:
        prefixes = [self.context_ids + ids for ids in branch_ids]
        hint = {"follow": follow} if follow is not None and self._lm_follows else {}
        logprobs = self.lm.next_token_logprobs(prefixes, **hint).numpy()
        if logprobs.shape[1] != self.vocab.size:  # model rows padded, or tokenizer-only added tokens
            fitted = np.full((len(branch_ids), self.vocab.size), -np.inf)
            n = min(self.vocab.size, logprobs.shape[1])
            fitted[:, :n] = logprobs[:, :n]
            logprobs = fitted
        return logprobs

    def _valid_next(self, ids: tuple[int, ...], logprobs: np.ndarray) -> np.ndarray:
        valid = np.zeros(self.vocab.size, dtype=bool)
        candidates = np.flatnonzero(self.vocab.first_byte >= 0)
        if self.min_token_prob > 0:
            if self.unchecked == "keep":
                valid[candidates] = True
            candidates = candidates[logprobs[candidates] >= np.log(self.min_token_prob)]
            candidates = np.union1d(candidates, self._tokens_of_target(ids)).astype(np.int64)
        valid[candidates] = self.checker.valid_next_tokens(ids, candidates)
        if self.checker.is_canonical(ids):
            valid[list(self.vocab.eos_ids)] = True
        return valid

    def _tokens_of_target(self, ids: tuple[int, ...]) -> list[int]:
        """Tokens that spell the next piece of an ``always_check`` text after the text of ``ids``."""
        if not self._ids_of_bytes:
            return []
        text, found = self.vocab.decode(ids), []
        for target in self.always_check:
            if not target.startswith(text) or len(text) == len(target):
                continue
            rest = target[len(text):]
            found += [i for k in range(1, min(len(rest), self._longest_token) + 1)
                      for i in self._ids_of_bytes.get(rest[:k], ())]
            if len(rest) < self._longest_token:  # tokens that reach past the end of the text
                found += [int(t) for t in self._tokens_by_first_byte[rest[0]]
                          if self.vocab.token_bytes[t].startswith(rest)]
        return found
