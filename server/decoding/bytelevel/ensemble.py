"""Byte LMs made of other byte LMs: ensembles and proxy-tuning, across tokenizers.

Members are anything with ``next_byte_logprobs(prefix: bytes) -> float64 [257]`` (a `ByteLM`,
or another ensemble). They all speak bytes, so their tokenizers may differ. The combined model
is an LM over bytes in its own right, combined step by step (definitions in README.md):

    P(next = v | b) = combine(P_1(. | b), ..., P_n(. | b))[v]

A member whose own probability of ``b`` is zero has no conditional there and is never queried
at such a prefix: `mix` drops it and renormalizes the other weights; `product` never reaches
such a prefix (it rules out every byte a member with w_i > 0 rules out); proxy-tuning reaches
one only when both expert and anti-expert rule it out, and then continues with the base alone.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .combine import mix, product, proxy_tune, validate_weights
from .next_byte import END, sample_bytes

__all__ = ["ByteEnsemble", "ProxyTunedByteLM"]

MODES = ("mix", "product")


class NextByteLM(Protocol):
    def next_byte_logprobs(self, prefix: bytes = b"") -> np.ndarray:
        """float64 [257] normalized log-probs of the next byte (index 256 = END)."""


@dataclass
class _Step:
    member_logprobs: list[np.ndarray | None]  # None: impossible prefix for that member, or not used
    logprobs: np.ndarray | None  # the combination's; None: the prefix has probability zero under it


class _CombinedByteLM:
    """Caches each prefix's member and combined distributions; subclasses define `_combine`."""

    def __init__(self, members: Sequence[NextByteLM], used: Sequence[bool]):
        for i, member in enumerate(members):
            if not callable(getattr(member, "next_byte_logprobs", None)):
                raise TypeError(f"member {i} ({type(member).__name__}) has no next_byte_logprobs(prefix) method; "
                                "pass a ByteLM or another byte-level model")
        self.members = tuple(members)
        self._used = tuple(bool(u) for u in used)
        self._steps: dict[bytes, _Step] = {}

    def _combine(self, member_logprobs: list[np.ndarray | None]) -> np.ndarray | None:
        raise NotImplementedError

    # --- distributions ------------------------------------------------------------------
    def next_byte_logprobs(self, prefix: bytes = b"") -> np.ndarray:
        """float64 [257] normalized log-probs of the next byte (index 256 = END)."""
        logprobs = self._step(prefix).logprobs
        if logprobs is None:
            raise ValueError(f"the prefix {prefix!r} has probability zero")
        return logprobs

    def prefix_logprob(self, text: bytes) -> float:
        """log P(text starts with ``text``)."""
        if self._step(text).logprobs is None:
            return -np.inf
        return float(sum(self._steps[text[:n]].logprobs[text[n]] for n in range(len(text))))

    def logprob(self, text: bytes, prefix: bytes = b"") -> float:
        """log P(the whole text is ``prefix + text`` | it starts with ``prefix``), byte by byte."""
        total, full = 0.0, prefix + text
        for n in range(len(prefix), len(full) + 1):
            logprobs = self._step(full[:n]).logprobs
            if logprobs is None:
                return -np.inf
            total += float(logprobs[full[n] if n < len(full) else END])
        return total

    def sample(self, prefix: bytes = b"", max_bytes: int = 64, seed: int | None = None,
               temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
               rng: np.random.Generator | None = None) -> tuple[bytes, bool]:
        """Sample a continuation of ``prefix`` byte by byte: (bytes, ended with END)."""
        return sample_bytes(self.next_byte_logprobs, prefix, max_bytes, rng or np.random.default_rng(seed),
                            temperature, top_p, top_k)

    # --- internals ----------------------------------------------------------------------
    def _step(self, prefix: bytes) -> _Step:
        if b"" not in self._steps:
            self._steps[b""] = self._make_step(b"", [True] * len(self.members))
        start = len(prefix)
        while prefix[:start] not in self._steps:
            start -= 1
        for n in range(start, len(prefix)):
            parent, byte = self._steps[prefix[:n]], prefix[n]
            if parent.logprobs is None or not np.isfinite(parent.logprobs[byte]):
                step = _Step([None] * len(self.members), None)
            else:
                alive = [lp is not None and bool(np.isfinite(lp[byte])) for lp in parent.member_logprobs]
                step = self._make_step(prefix[: n + 1], alive)
            self._steps[prefix[: n + 1]] = step
        return self._steps[prefix]

    def _make_step(self, prefix: bytes, alive: list[bool]) -> _Step:
        member_logprobs = [member.next_byte_logprobs(prefix) if ok and used else None
                           for member, ok, used in zip(self.members, alive, self._used)]
        try:
            return _Step(member_logprobs, self._combine(member_logprobs))
        except ValueError as err:
            raise ValueError(f"after the prefix {prefix!r}: {err}") from err


class ByteEnsemble(_CombinedByteLM):
    """Two or more byte LMs (any tokenizers) combined per step by ``mode``:

    * ``"mix"``: sum_i w_i P_i(v | b), weights normalized to sum to one;
    * ``"product"``: prod_i P_i(v | b)^w_i, renormalized (weights used as given).
    """

    def __init__(self, members: Sequence[NextByteLM], weights: Sequence[float] | None = None, mode: str = "mix"):
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"members: an ensemble needs at least 2 members, got {len(members)}")
        if mode not in MODES:
            raise ValueError(f"mode: must be one of {MODES}, got {mode!r}")
        weights = [1.0] * len(members) if weights is None else weights
        self.weights = validate_weights(weights, len(members), normalize=mode == "mix")
        self.mode = mode
        super().__init__(members, used=self.weights > 0)

    def _combine(self, member_logprobs):
        used = [i for i, lp in enumerate(member_logprobs) if lp is not None]
        if self.mode == "mix":
            return mix([member_logprobs[i] for i in used], self.weights[used]) if used else None
        if len(used) < sum(self._used):  # a member that counts rules the prefix out
            return None
        return product([member_logprobs[i] for i in used], self.weights[used])


class ProxyTunedByteLM(_CombinedByteLM):
    """Proxy-tuning over bytes: log P(v | b) = base + alpha * (expert - anti_expert), renormalized.

    The three models may have three different tokenizers. Bytes impossible under the base stay
    impossible; so do bytes that exactly one of expert and anti-expert rules out (alpha != 0).
    """

    def __init__(self, base: NextByteLM, expert: NextByteLM, anti_expert: NextByteLM, alpha: float = 1.0):
        if not np.isfinite(alpha):
            raise ValueError(f"alpha: must be a finite number, got {alpha}")
        self.alpha = float(alpha)
        super().__init__([base, expert, anti_expert], used=[True, alpha != 0, alpha != 0])

    @property
    def base(self) -> NextByteLM:
        return self.members[0]

    def _combine(self, member_logprobs):
        base, expert, anti_expert = member_logprobs
        if base is None or (self.alpha != 0 and (expert is None) != (anti_expert is None)):
            return None
        if expert is None:  # both rule the prefix out (or alpha = 0): offset 0
            return proxy_tune(base, base, base, 0.0)
        return proxy_tune(base, expert, anti_expert, self.alpha)
