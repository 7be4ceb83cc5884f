"""``ByteLevelEngine``: byte-level models, cross-tokenizer ensembles and proxy-tuning, served.

Its tokens are bytes (ids 0..255) and END (256, its EOS); see `tokenizer.py`. The model work
of every byte-level engine in the process runs in one worker thread, one step (a chunk of the
prompt, or one byte) at a time, so the event loop never blocks and the shared weights and
tokenizers are never used from two threads at once. Requests take turns whole, first come first
served: the worker has no batching, so interleaving them would only make every one of them late
(and no admission bound would hold). A request whose consumer goes away (client disconnect,
stop string) stops at its next step.
Requests the worker could not finish within ``max_backlog_s`` are refused up front (``backlog``).
"""
from __future__ import annotations

import asyncio
import logging
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator

from ...sampling import SamplingSpec
from ..base import Engine, EngineError, EngineOutput, EngineRequest, EngineStats, EngineUnavailable
from ..heap import release_free_memory
from .backlog import Backlog, ByteCost, Work
from .recipe import Recipe, describe, instantiate, leaves
from .request_state import ByteRequestState
from .sources import LoadedSource, SourcePool
from .tokenizer import END_ID, ByteTokenizer

__all__ = ["ByteLevelEngine", "run_in_worker"]

log = logging.getLogger(__name__)

_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="braid-bytelevel")
_TURNS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]" = weakref.WeakKeyDictionary()
_BACKLOG = Backlog()  # the work accepted for _WORKER, across every byte-level engine
_PROMPT_CHUNK = 64  # prompt bytes conditioned on per worker step


async def run_in_worker(fn, *args):
    """Run byte-level model work in the shared worker thread."""
    return await asyncio.get_running_loop().run_in_executor(_WORKER, fn, *args)


def _turn() -> asyncio.Lock:
    """The byte-level requests' turn (FIFO): one request at a time uses the worker."""
    loop = asyncio.get_running_loop()
    if loop not in _TURNS:
        _TURNS[loop] = asyncio.Lock()
    return _TURNS[loop]


class ByteLevelEngine(Engine):
    """Plain sampling only (no ``capabilities``): a decoding plan is refused."""

    def __init__(self, name: str, recipe: Recipe, pool: SourcePool, *, max_model_len: int | None = None,
                 max_num_seqs: int = 32, max_backlog_s: float | None = 60.0):
        self.name, self.recipe, self._pool = name, recipe, pool
        self.description = describe(recipe)
        self._max_model_len_cap = max_model_len
        self._max_backlog_s = max_backlog_s
        self._cost = ByteCost()
        self._leaves = leaves(recipe)
        self._sources: dict[tuple[str, str], LoadedSource] = {}
        self._slots = asyncio.Semaphore(max_num_seqs)
        self._running = self._waiting = 0
        self.tokenizer = ByteTokenizer()
        self.max_model_len = 0
        self._failure: str | None = None

    async def start(self) -> None:
        for leaf in self._leaves:
            if leaf.key not in self._sources:
                try:
                    self._sources[leaf.key] = await asyncio.to_thread(self._pool.acquire, leaf.path, leaf.dtype)
                except Exception as exc:
                    await self.shutdown()
                    raise RuntimeError(f"model {self.name!r}: cannot load {leaf.label!r} ({leaf.path}) for "
                                       f"byte-level decoding: {exc}") from exc
        sources = [self._sources[leaf.key] for leaf in self._leaves]
        first = sources[0].tokenizer
        self.tokenizer = ByteTokenizer(first, all(getattr(s.tokenizer, "chat_template", None) for s in sources))
        # A token spells at least one byte, so prompt + output bytes bound every member's tokens.
        limit = min(s.max_positions - len(s.text_context) - 1 for s in sources)
        self.max_model_len = min(limit, self._max_model_len_cap or limit)
        log.info("%s: byte-level model %s, max_model_len %d bytes", self.name, self.description, self.max_model_len)

    async def shutdown(self) -> None:
        for path, dtype in self._sources:
            self._pool.release(path, dtype)
        self._sources.clear()

    def failure(self) -> str | None:
        return self._failure

    def stats(self) -> EngineStats:
        return EngineStats(running=self._running, waiting=self._waiting)

    def validate(self, sampling: SamplingSpec) -> None:
        super().validate(sampling)
        for name, neutral in (("presence_penalty", 0.0), ("frequency_penalty", 0.0), ("repetition_penalty", 1.0)):
            if getattr(sampling, name) != neutral:
                raise EngineError(f"{name} is not supported by byte-level model {self.name!r}; leave it unset")
        if sampling.max_tokens < 1:
            raise EngineError("max_tokens must be at least 1")

    def admit(self, requests: list[EngineRequest]) -> None:
        works = {request.request_id: self._work(request) for request in requests}
        _BACKLOG.check(list(works.values()), self._max_backlog_s, self.name)
        for request_id, work in works.items():
            _BACKLOG.reserve(request_id, work)

    def _work(self, request: EngineRequest) -> Work:
        walked = 0 if request.chat is not None else len(request.prompt_token_ids)  # a chat's reply starts fresh
        return Work(self._cost, walked, request.sampling.max_tokens)

    async def generate(self, request: EngineRequest) -> AsyncIterator[EngineOutput]:
        work = _BACKLOG.claim(request.request_id, self._work(request))
        try:
            self.validate(request.sampling)
            if not self._sources:
                raise EngineError(f"engine {self.name!r} is not started")
            bad = [t for t in request.prompt_token_ids if not 0 <= t < END_ID]
            if bad:
                raise EngineError(f"prompt token ids of byte-level model {self.name!r} are bytes (0..255); "
                                  f"got {bad[:5]}")
            self._waiting += 1
            waiting = True
            try:
                async with self._slots, _turn():
                    self._waiting, waiting = self._waiting - 1, False
                    self._running += 1
                    try:
                        async for output in self._run(request, work):
                            yield output
                    finally:
                        self._running -= 1
            finally:
                if waiting:
                    self._waiting -= 1
        finally:
            _BACKLOG.remove(work)
            if _BACKLOG.idle():
                # A request's caches (logit rows, member KV) are tens of MiB; without this the process
                # keeps the peak of every burst resident.
                asyncio.get_running_loop().run_in_executor(_WORKER, release_free_memory)

    async def _run(self, request: EngineRequest, work: Work) -> AsyncIterator[EngineOutput]:
        spec, n_prompt = request.sampling, len(request.prompt_token_ids)
        state = await self._call(work, self._open, request)
        prompt_logprobs = [] if spec.prompt_logprobs is not None else None
        while not state.prompt_done:
            count = min(_PROMPT_CHUNK, len(state.prefix) - state.walked)
            entries = await self._timed(work, state.walk_prompt, count, count, spec.prompt_logprobs)
            work.prompt_left = len(state.prefix) - state.walked
            if prompt_logprobs is not None:
                prompt_logprobs += entries
        first = True
        while state.finish_reason is None:
            symbol, entry = await self._timed(work, state.step, 1)
            work.generated = len(state.generated)
            if state.finish_reason == "stop":  # a reply cut at max_tokens says nothing of its natural length
                self._cost.observe_output(len(state.generated))
            yield EngineOutput([symbol], n_prompt, [entry] if spec.logprobs is not None else None,
                               prompt_logprobs if first else None, state.finish_reason)
            first = False

    async def _timed(self, work: Work, fn, positions: int, *args):
        """``fn`` in the worker; the seconds it ran there (not the wait for the worker) are measured."""
        def timed():
            began = time.perf_counter()
            return fn(*args), time.perf_counter() - began

        result, seconds = await self._call(work, timed)
        self._cost.observe_step(seconds, positions)
        return result

    async def _call(self, work: Work, fn, *args):
        """One step in the worker. An ``EngineError`` is the request's fault; anything else is the
        engine's: it is marked failed, to be replaced, and this request ends with a 503."""
        if self._failure is not None:
            raise EngineUnavailable(f"model {self.name!r}: {self._failure}")
        try:
            return await run_in_worker(fn, *args)
        except EngineError:
            raise
        except Exception as exc:
            log.exception("%s: byte-level step failed", self.name)
            self._failure = f"the byte-level step failed: {type(exc).__name__}: {exc}"
            raise EngineUnavailable(f"model {self.name!r}: {self._failure}") from exc

    def _open(self, request: EngineRequest) -> ByteRequestState:
        """The request's own next-byte model (fresh caches), after each source's context."""
        chat, spec = request.chat, request.sampling
        prefix = b"" if chat is not None else bytes(request.prompt_token_ids)
        contexts: dict[tuple[str, str], tuple[int, ...]] = {}
        for leaf in self._leaves:
            if leaf.key in contexts:
                continue
            source = self._sources[leaf.key]
            if chat is None:
                context = source.text_context
            else:
                try:
                    context = source.chat_context(chat.messages, chat.add_generation_prompt, chat.template_kwargs)
                except Exception as exc:  # template errors are the caller's (e.g. roles out of order)
                    raise EngineError(f"the chat template of {leaf.label!r} rejected these messages: {exc}") from exc
            needed = len(context) + len(prefix) + spec.max_tokens + 1
            if needed > source.max_positions:
                raise EngineError(f"model {self.name!r}: member {leaf.label!r} would need up to {needed} positions "
                                  f"({len(context)} context tokens, {len(prefix)} prompt bytes, {spec.max_tokens} "
                                  f"output bytes) but has {source.max_positions}; shorten the prompt or max_tokens")
            contexts[leaf.key] = context
        model = instantiate(self.recipe, self._sources, lambda leaf: contexts[leaf.key], always_check=prefix)
        return ByteRequestState(model, prefix, spec, self.name)

