"""The exact prompt boundary: the byte-level hand-off for a token-level model's prompt text.

A token-level model given "The capit" sees the tokens of "The capit", which its training data
almost never continued with "al"; what the user means is the text distribution conditioned on
the text "The capit". The model read at byte level (`ByteLM`) gives exactly that: the first
token sequence reaching past the prompt text is drawn from `continuation_choices` (the most
likely one when greedy), and the ordinary engine continues from the prompt tokens plus that
choice (`HandOff.prompt_ids`).

Only the prompt's last tokens are read at byte level: the prompt is split before its last
``_TAIL_TOKENS`` tokens (the context then ends at that boundary, checked by the canonicality
checker's ``left_context``); if the byte-level model gives the tail probability zero there (the
boundary could move), the whole prompt is read at byte level.

A `PromptBoundaryReader` belongs to the model registry: it takes the byte-level copy of a model
from the registry's `SourcePool` on first use (once per (path, dtype), shared with byte-level
engines serving the same weights), runs in the byte-level worker thread and releases its
sources on `close`.
"""
from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ...decoding.bytelevel import ByteLM, CanonicalityChecker, TransformersLM
from ...decoding.bytelevel.utf8 import split_incomplete_char
from ..base import EngineError
from .engine import run_in_worker
from .sources import LoadedSource, SourcePool

__all__ = ["HandOff", "PromptBoundaryReader"]

_TAIL_TOKENS = 2
_CHECKERS_KEPT = 8


@dataclass(frozen=True)
class HandOff:
    prompt_ids: list[int]  # what the engine continues from
    text: str              # completion text the chosen tokens add past the prompt
    ended: bool            # the text ends exactly where the prompt does: nothing to generate


class PromptBoundaryReader:
    """Hand-offs for prompt texts that may end mid-token, over the models it has loaded."""

    def __init__(self, pool: SourcePool) -> None:
        self._pool = pool
        self._sources: dict[tuple[str, str], LoadedSource] = {}
        self._checkers: OrderedDict[tuple[int, bytes], CanonicalityChecker] = OrderedDict()  # worker thread only
        self._lock = asyncio.Lock()

    async def hand_off(self, path: str, dtype: str, prompt: str, seed: int | None, greedy: bool) -> HandOff:
        """The hand-off for ``prompt`` on the model at ``path``; `EngineError` if the text has probability zero."""
        source = await self._source(path, dtype)
        return await run_in_worker(self._hand_off, source, prompt, seed, greedy)

    def close(self) -> None:
        for path, dtype in self._sources:
            self._pool.release(path, dtype)
        self._sources.clear()
        self._checkers.clear()

    async def _source(self, path: str, dtype: str) -> LoadedSource:
        key = (path, dtype)
        async with self._lock:
            if key not in self._sources:
                self._sources[key] = await asyncio.to_thread(self._pool.acquire, *key)
        return self._sources[key]

    def _checker(self, source: LoadedSource, left_context: bytes) -> CanonicalityChecker:
        """A checker for text after ``left_context`` (recent ones kept: ``n`` choices share a prompt)."""
        if not left_context:
            return source.checker
        key = (id(source), left_context)
        checker = self._checkers.pop(key, None) or CanonicalityChecker(source.tokenizer, source.vocab,
                                                                       left_context=left_context)
        self._checkers[key] = checker
        while len(self._checkers) > _CHECKERS_KEPT:
            self._checkers.popitem(last=False)
        return checker

    def _choices(self, source: LoadedSource, stable: tuple[int, ...], data: bytes):
        cut = len(source.vocab.decode(stable))
        checker = self._checker(source, data[:cut])
        lm = ByteLM(TransformersLM(source.model, vocab_size=source.model.config.vocab_size), source.vocab, checker,
                    context_ids=source.text_context + stable)
        return lm.continuation_choices(data[cut:])

    def _hand_off(self, source: LoadedSource, prompt: str, seed: int | None, greedy: bool) -> HandOff:
        data = prompt.encode("utf-8")
        ids = tuple(source.tokenizer.encode(prompt, add_special_tokens=False))
        stable = ids[:max(0, len(ids) - _TAIL_TOKENS)]
        if not all(source.vocab.token_bytes[t] for t in stable) or not data.startswith(source.vocab.decode(stable)):
            stable = ()
        choices = self._choices(source, stable, data)
        if not choices and stable:
            stable, choices = (), self._choices(source, (), data)
        if not choices:
            raise EngineError("the model gives this prompt text probability zero at byte level")
        logprobs = np.array([lp for *_, lp in choices])
        if greedy:
            pick = int(np.argmax(logprobs))
        else:
            probs = np.exp(logprobs)
            pick = int(np.random.default_rng(seed).choice(len(choices), p=probs / probs.sum()))
        chosen, ended, _ = choices[pick]
        full = stable + tuple(chosen)
        extra = source.vocab.decode(full)[len(data):]
        # a chosen token may stop inside a character: its bytes so far are spelled by the engine's
        # text stream once the character is complete
        complete, _ = split_incomplete_char(extra) or (extra, b"")
        return HandOff(list(source.text_context + full), complete.decode("utf-8", errors="replace"), ended)
