"""``prompt_boundary: "exact"`` on /v1/completions: condition exactly on a prompt that ends mid-token.

A token-level model given "The capit" sees the tokens of "The capit", which its training data
almost never continued with "al"; what the user means is the text distribution conditioned on
the text "The capit". The model read at byte level (`ByteLM`) gives exactly that: the first
token sequence reaching past the prompt text is drawn from `continuation_choices` (the most
likely one when greedy), and the ordinary engine continues from the prompt tokens plus that
choice. The completion text is what the choice adds past the prompt, then the engine's text.

Only the prompt's last tokens are read at byte level: the prompt is split before its last
``_TAIL_TOKENS`` tokens (the context then ends at that boundary, checked by the canonicality
checker's ``left_context``); if the byte-level model gives the tail probability zero there (the
boundary could move), the whole prompt is read at byte level. The byte-level copy of the model
is loaded in the API process on first use (once per source) and runs in the byte-level worker.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import AsyncIterator

import numpy as np

from .models.config import BYTE_KINDS
from .decoding.bytelevel import ByteLM, CanonicalityChecker, TransformersLM
from .decoding.bytelevel.utf8 import split_incomplete_char
from .engines.bytelevel.engine import run_in_worker
from .engines.bytelevel.sources import LoadedSource, acquire_source
from .api.errors import bad_request
from .api.generation import ChoiceEvent, stream_choice
from .sampling import SamplingSpec

__all__ = ["HandOff", "exact_boundary_prompts", "boundary_choice", "hand_off"]

_TAIL_TOKENS = 2
_CHECKERS_KEPT = 8
_sources: dict[tuple[str, str], LoadedSource] = {}
_checkers: OrderedDict[tuple[int, bytes], CanonicalityChecker] = OrderedDict()  # used in the worker thread only
_lock = asyncio.Lock()


@dataclass(frozen=True)
class HandOff:
    prompt_ids: list[int]  # what the engine continues from
    text: str              # completion text the chosen tokens add past the prompt
    ended: bool            # the text ends exactly where the prompt does: nothing to generate


def exact_boundary_prompts(request, served) -> list[str] | None:
    """The prompt texts when the request asks for the exact boundary on a token-level model, else None."""
    if request.prompt_boundary != "exact" or served.config.kind in BYTE_KINDS:
        return None  # byte-level models always condition on the exact prompt text
    prompts = [request.prompt] if isinstance(request.prompt, str) else list(request.prompt)
    if not all(isinstance(p, str) and p for p in prompts):
        raise bad_request("prompt_boundary 'exact' needs text prompts (not token ids)", "prompt")
    if request.contrastive is not None or request.steer is not None:
        raise bad_request("prompt_boundary 'exact' cannot be combined with contrastive or steer", "prompt_boundary")
    if request.echo or request.logprobs is not None:
        raise bad_request("prompt_boundary 'exact' does not support echo or logprobs; use a byte-level model "
                          "(kind: bytelevel) to score text", "prompt_boundary")
    return prompts


async def _source(served) -> LoadedSource:
    key = (served.path, served.config.dtype)
    async with _lock:
        if key not in _sources:
            _sources[key] = await asyncio.to_thread(acquire_source, *key)
    return _sources[key]


async def hand_off(served, prompt: str, seed: int | None, greedy: bool) -> HandOff:
    source = await _source(served)
    return await run_in_worker(_hand_off, source, prompt, seed, greedy)


def _checker(source: LoadedSource, left_context: bytes) -> CanonicalityChecker:
    """A checker for text after ``left_context`` (recent ones kept: ``n`` choices share a prompt)."""
    if not left_context:
        return source.checker
    key = (id(source), left_context)
    checker = _checkers.pop(key, None) or CanonicalityChecker(source.tokenizer, source.vocab,
                                                              left_context=left_context)
    _checkers[key] = checker
    while len(_checkers) > _CHECKERS_KEPT:
        _checkers.popitem(last=False)
    return checker


def _choices(source: LoadedSource, stable: tuple[int, ...], data: bytes):
    cut = len(source.vocab.decode(stable))
    checker = _checker(source, data[:cut])
    lm = ByteLM(TransformersLM(source.model, vocab_size=source.model.config.vocab_size), source.vocab, checker,
                context_ids=source.text_context + stable)
    return lm.continuation_choices(data[cut:])


def _hand_off(source: LoadedSource, prompt: str, seed: int | None, greedy: bool) -> HandOff:
    data = prompt.encode("utf-8")
    ids = tuple(source.tokenizer.encode(prompt, add_special_tokens=False))
    stable = ids[:max(0, len(ids) - _TAIL_TOKENS)]
    if not all(source.vocab.token_bytes[t] for t in stable) or not data.startswith(source.vocab.decode(stable)):
        stable = ()
    choices = _choices(source, stable, data)
    if not choices and stable:
        stable, choices = (), _choices(source, (), data)
    if not choices:
        raise bad_request("the model gives this prompt text probability zero at byte level", "prompt")
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


async def boundary_choice(served, prompt: str, index: int, request_id: str, spec: SamplingSpec, stop: list[str],
                          metrics, arrival: float) -> AsyncIterator[ChoiceEvent]:
    """One completion choice with the exact prompt boundary: the hand-off, then the engine."""
    handoff = await hand_off(served, prompt, spec.seed, spec.greedy)
    n_prompt = len(handoff.prompt_ids)
    if handoff.ended:
        yield ChoiceEvent(index, "", [], None, finish_reason="stop", num_prompt_tokens=n_prompt)
        return
    hits = [handoff.text.find(s) for s in stop if s in handoff.text]
    if hits:
        yield ChoiceEvent(index, handoff.text[:min(hits)], [], None, finish_reason="stop", num_prompt_tokens=n_prompt)
        return
    events = stream_choice(served.engine, served.config.id, index, request_id, handoff.prompt_ids, spec, stop,
                           metrics, arrival, initial_text=handoff.text)
    async with contextlib.aclosing(events) as choice_events:
        async for event in choice_events:
            yield event
