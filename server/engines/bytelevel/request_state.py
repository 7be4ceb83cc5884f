"""One request's byte-level decoding state: the prompt walk and the byte-by-byte steps.

Everything here runs in the byte-level worker thread. A completion prompt is the byte prefix
of the text (after each source's BOS), so the continuation is conditioned exactly on a prompt
that ends anywhere, even mid-token; walking it byte by byte also gives the prompt's per-byte
log-probs (echo). A chat conversation is each source's own template tokens, and the reply
starts as a fresh text (byte prefix empty).
"""
from __future__ import annotations

import numpy as np

from ...decoding.bytelevel.next_byte import END
from ...sampling import SamplingSpec
from ..base import EngineError, TokenLogprob
from .sampler import byte_logprob, choose_byte


class ByteRequestState:
    def __init__(self, model, prefix: bytes, spec: SamplingSpec, model_name: str):
        self.model, self.prefix, self.spec, self.model_name = model, prefix, spec, model_name
        self.rng = np.random.default_rng(spec.seed)
        self.generated = bytearray()
        self.walked = 0  # prompt bytes whose conditional log-prob is known
        self.finish_reason: str | None = None

    def _logprobs(self, prefix: bytes) -> np.ndarray:
        try:
            return self.model.next_byte_logprobs(prefix)
        except ValueError as exc:  # a zero-probability prefix, or a combination with nothing left
            raise EngineError(f"model {self.model_name!r}: {exc}") from exc

    def walk_prompt(self, count: int, top: int | None) -> list[TokenLogprob]:
        """Condition on the next ``count`` prompt bytes; their log-probs given the bytes before."""
        entries = []
        stop = min(len(self.prefix), self.walked + count)
        for n in range(self.walked, stop):
            logprobs = self._logprobs(self.prefix[:n])
            byte = self.prefix[n]
            if not np.isfinite(logprobs[byte]):
                raise EngineError(f"model {self.model_name!r} gives the prompt probability zero at byte {n} "
                                  f"({self.prefix[max(0, n - 8):n + 1]!r}): it cannot continue it")
            entries.append(byte_logprob(logprobs, byte, top))
        self.walked = stop
        return entries

    @property
    def prompt_done(self) -> bool:
        return self.walked >= len(self.prefix)

    def step(self) -> tuple[int, TokenLogprob]:
        """Choose the next byte (or END); sets ``finish_reason`` when the request is done."""
        logprobs = self._logprobs(self.prefix + bytes(self.generated))
        try:
            symbol = choose_byte(logprobs, self.spec, self.rng)
        except ValueError as exc:
            raise EngineError(f"model {self.model_name!r}: {exc}") from exc
        entry = byte_logprob(logprobs, symbol, self.spec.logprobs)
        if symbol != END:
            self.generated.append(symbol)
        if symbol == END or symbol in self.spec.stop_token_ids:
            self.finish_reason = "stop"
        elif len(self.generated) >= self.spec.max_tokens:
            self.finish_reason = "length"
        return symbol, entry
