"""Keeping a served model's engine alive: notice a failure, end its requests, start a new one.

``SupervisedEngine`` is the engine the serving layer sees. It forwards to the current engine and:

- polls the engine's ``failure()`` (and hears of it at once from a request that met it);
- on a failure, ends every request in flight with ``EngineUnavailable`` itself, so no request
  waits on a dead engine to say so;
- starts a new engine (a fresh instance from ``launch``) with bounded attempts and backoff
  (``RestartPolicy``), while new requests wait for it up to ``wait_s`` and then get a 503 with
  ``Retry-After``;
- with restarts off, or after the last attempt, calls ``give_up`` (the server exits non-zero).
"""
from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable

from ..engines.base import Engine, EngineOutput, EngineRequest, EngineStats, EngineUnavailable
from ..plans import DecodingPlan, Refusal
from ..sampling import SamplingSpec
from .config import RestartPolicy

__all__ = ["EngineHealth", "EngineState", "SupervisedEngine"]

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often a ready engine's failure() is read
_CANCEL_WAIT_S = 5.0  # how long a request's pending engine step may take to notice its cancellation
_SHUTDOWN_WAIT_S = 60.0


class EngineState(str, enum.Enum):
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"  # noticed; a restart is pending
    RESTARTING = "restarting"
    STOPPED = "stopped"  # given up, or shut down


@dataclass(frozen=True)
class EngineHealth:
    state: EngineState
    reason: str | None  # why it is not ready (the last failure), None when ready
    restarts: int  # restart attempts since the server started


class SupervisedEngine(Engine):
    def __init__(self, name: str, launch: Callable[[], Awaitable[Engine]], policy: RestartPolicy,
                 give_up: Callable[[str], None]) -> None:
        self.name = name
        self._launch, self._policy, self._give_up = launch, policy, give_up
        self._engine: Engine | None = None
        self._state = EngineState.STARTING
        self._reason: str | None = None
        self._restarts = 0
        self._in_a_row = 0  # restarts since the engine last stayed up for stable_s
        self._ready = asyncio.Event()
        self._ready_since: float | None = None
        self._start_seconds = 0.0  # how long the last start took: the Retry-After estimate
        self._restart_began: float | None = None
        self._tickets: set[asyncio.Future] = set()  # one per request in flight: resolved to end it
        self._waiting = 0  # requests waiting for a restart to finish
        self._draining = False
        self._tasks: set[asyncio.Task] = set()

    # --- what the serving layer reads: the current engine's ---
    @property
    def engine(self) -> Engine:
        """The engine in service (during a restart, the failed one: its tokenizer still works)."""
        return self._engine

    @property
    def tokenizer(self):
        return self._engine.tokenizer

    @property
    def max_model_len(self) -> int:
        return self._engine.max_model_len

    @property
    def capabilities(self):
        return self._engine.capabilities

    def __getattr__(self, item: str):  # engine-specific attributes (e.g. a vision model's processor)
        engine = self.__dict__.get("_engine")
        if engine is None:
            raise AttributeError(item)
        return getattr(engine, item)

    def supports(self, plan: DecodingPlan) -> Refusal | None:
        return self._engine.supports(plan)

    def validate(self, sampling: SamplingSpec) -> None:
        self._engine.validate(sampling)

    def admit(self, requests: list[EngineRequest]) -> None:
        if self._state is EngineState.READY:
            self._engine.admit(requests)

    def stats(self) -> EngineStats:
        if self._state is not EngineState.READY:
            return EngineStats(running=0, waiting=self._waiting)
        stats = self._engine.stats()
        return EngineStats(stats.running, stats.waiting + self._waiting)

    def failure(self) -> str | None:
        return None if self.health().state is EngineState.READY else self._reason or self._state.value

    def health(self) -> EngineHealth:
        if self._state is EngineState.READY:
            self._check()  # read live: /health must not wait for the next poll
        reason = None if self._state is EngineState.READY else self._reason
        return EngineHealth(self._state, reason, self._restarts)

    # --- life cycle ---
    async def start(self) -> None:
        began = time.monotonic()
        self._engine = await self._launch()
        self._start_seconds = time.monotonic() - began
        self._became_ready()
        self._spawn(self._watch())

    async def shutdown(self) -> None:
        self._draining = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.end_requests(f"model {self.name!r} is shutting down")
        self._state, self._reason = EngineState.STOPPED, "shut down"
        self._ready.clear()
        if self._engine is not None:
            await _shutdown_quietly(self._engine, self.name)

    def begin_drain(self) -> None:
        """The server is shutting down: requests in flight go on, but a failed engine is not restarted."""
        self._draining = True

    def end_requests(self, message: str, retry_after: float | None = None) -> int:
        """End every request in flight with ``EngineUnavailable(message)``; how many there were."""
        ended = 0
        for ticket in list(self._tickets):
            if not ticket.done():
                ticket.set_result((message, retry_after))
                ended += 1
        return ended

    # --- requests ---
    async def wait_ready(self) -> Engine:
        """The ready engine; while it restarts, wait up to ``wait_s``, then ``EngineUnavailable``."""
        deadline = time.monotonic() + self._policy.wait_s
        while True:
            if self._state is EngineState.READY:
                self._check()
            if self._state is EngineState.READY:
                return self._engine
            if self._state is EngineState.STOPPED or self._draining:
                raise EngineUnavailable(f"model {self.name!r} is not available: {self._reason}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise EngineUnavailable(f"model {self.name!r} is restarting its engine after a failure "
                                        f"({self._reason}); retry later", self._retry_after())
            self._waiting += 1
            try:
                await asyncio.wait_for(self._ready.wait(), left)
            except asyncio.TimeoutError:
                pass
            finally:
                self._waiting -= 1

    async def generate(self, request: EngineRequest) -> AsyncIterator[EngineOutput]:
        engine = await self.wait_ready()
        ticket = asyncio.get_running_loop().create_future()
        self._tickets.add(ticket)
        outputs = engine.generate(request)
        step: asyncio.Future | None = None
        try:
            while True:
                step = asyncio.ensure_future(outputs.__anext__())
                await asyncio.wait({step, ticket}, return_when=asyncio.FIRST_COMPLETED)
                if not step.done():  # ended by the supervisor: the engine failed or the server is stopping
                    message, retry_after = ticket.result()
                    raise EngineUnavailable(message, retry_after)
                try:
                    out = step.result()
                except StopAsyncIteration:
                    return
                except EngineUnavailable as exc:
                    if engine is self._engine:
                        self._check()  # the engine said so: notice now rather than at the next poll
                    if exc.retry_after is None and self._state is not EngineState.STOPPED:
                        raise EngineUnavailable(str(exc), self._retry_after()) from exc
                    raise
                yield out
        finally:
            self._tickets.discard(ticket)
            ticket.cancel()
            if step is not None and not step.done():
                step.cancel()
                await asyncio.wait({step}, timeout=_CANCEL_WAIT_S)
            if step is None or step.done():
                try:
                    await outputs.aclose()  # aborts the request in the engine and frees its slot
                except Exception:  # noqa: BLE001 - a failed engine may fail to abort; it is being replaced
                    log.debug("%s: closing a request on a failed engine", self.name, exc_info=True)

    # --- failure and restart ---
    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            if self._state is EngineState.READY:
                self._check()

    def _check(self) -> None:
        try:
            reason = self._engine.failure()
        except Exception as exc:  # noqa: BLE001 - an engine that cannot say whether it works does not
            reason = f"its health check raised {type(exc).__name__}: {exc}"
        if reason is not None and self._state is EngineState.READY:
            self._failed(reason)

    def _failed(self, reason: str) -> None:
        log.error("model %s: the engine failed: %s", self.name, reason)
        self._state, self._reason = EngineState.FAILED, reason
        self._ready.clear()
        if self._ready_since is not None and time.monotonic() - self._ready_since >= self._policy.stable_s:
            self._in_a_row = 0
        ended = self.end_requests(f"model {self.name!r}: the engine failed ({reason}); it is being restarted",
                                  self._retry_after())
        if ended:
            log.warning("model %s: ended %d requests in flight", self.name, ended)
        if self._draining:
            self._state = EngineState.STOPPED
        elif not self._policy.enabled:
            self._stop(f"the engine failed ({reason}) and engine_restart is off")
        else:
            self._spawn(self._restart())

    def _stop(self, why: str) -> None:
        self._state, self._reason = EngineState.STOPPED, why
        log.error("model %s: %s", self.name, why)
        self._give_up(f"model {self.name!r}: {why}")

    async def _restart(self) -> None:
        self._restart_began = time.monotonic()
        await _shutdown_quietly(self._engine, self.name)
        while not self._draining:
            if self._in_a_row >= self._policy.max_attempts:
                self._stop(f"gave up after {self._in_a_row} restarts in a row; last failure: {self._reason}")
                return
            self._in_a_row += 1
            delay = min(self._policy.backoff_s * 2 ** (self._in_a_row - 1), self._policy.backoff_max_s)
            await asyncio.sleep(delay)
            self._state = EngineState.RESTARTING
            self._restarts += 1
            log.warning("model %s: restarting the engine (attempt %d of %d in a row)", self.name, self._in_a_row,
                        self._policy.max_attempts)
            began = time.monotonic()
            try:
                engine = await self._launch()
            except Exception as exc:  # noqa: BLE001 - a failed start is one more failure in the row
                log.exception("model %s: the engine did not start", self.name)
                self._state, self._reason = EngineState.FAILED, f"restart failed: {type(exc).__name__}: {exc}"
                continue
            if self._draining:
                await _shutdown_quietly(engine, self.name)
                return
            self._start_seconds = time.monotonic() - began
            self._engine = engine
            self._became_ready()
            log.warning("model %s: the engine is back after %.1f s", self.name, time.monotonic() - self._restart_began)
            return

    def _became_ready(self) -> None:
        self._state, self._reason = EngineState.READY, None
        self._ready_since = time.monotonic()
        self._ready.set()

    def _retry_after(self) -> float:
        """Seconds until the restart is expected to be done: the last start's duration, less time spent."""
        spent = time.monotonic() - self._restart_began if self._restart_began is not None else 0.0
        backoff = min(self._policy.backoff_s * 2 ** self._in_a_row, self._policy.backoff_max_s)
        return float(max(1, math.ceil(self._start_seconds + backoff - spent)))


async def _shutdown_quietly(engine: Engine, name: str) -> None:
    try:
        await asyncio.wait_for(engine.shutdown(), _SHUTDOWN_WAIT_S)
    except Exception:  # noqa: BLE001 - a failed engine may not shut down cleanly; it is dropped either way
        log.warning("model %s: shutting down the failed engine raised", name, exc_info=True)
