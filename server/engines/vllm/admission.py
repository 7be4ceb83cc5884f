"""Getting requests into vLLM so that the two branches of a contrastive pair step together.

Two things can split a pair before it ever runs (see ``contrastive``):

* vLLM's engine core takes requests between steps, so two requests sent one after the other
  may land in different steps. ``TogetherAdmitter`` pauses the scheduler (mode ``keep``: running
  requests stay, nothing is scheduled), adds every pending pair, and resumes; all requests that
  arrived meanwhile share one pause.
* vLLM admits waiting requests one by one while sequence slots are free; with one slot left, the
  positive branch would start and the negative wait. ``SequenceSlots`` counts every request's
  sequences here first (a pair takes two), first come first served, and admits a pair only when
  vLLM has room for both: everything admitted before it is then running, not queued in vLLM.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Awaitable, Callable


class SequenceSlots:
    """A FIFO counting semaphore over vLLM's ``max_num_seqs`` that only pairs wait on.

    A single sequence never waits for capacity (vLLM queues it as its own server would, and admits
    it the moment a slot frees, without a round trip through this process); it waits only behind
    an earlier pair, to keep the order. A pair (``count > 1``) waits until ``used + count`` fits,
    so it enters a vLLM whose queue is empty and which has a slot for each branch.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future]] = deque()

    async def acquire(self, count: int) -> None:
        if count > self.capacity:
            raise ValueError(f"{count} sequences can never fit in {self.capacity} slots")
        if not self._waiters and self._fits(count):
            self.used += count
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((count, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(count)  # granted just as the waiter went away
            else:
                self._wake()
            raise

    def _fits(self, count: int) -> bool:
        return count == 1 or self.used + count <= self.capacity

    def release(self, count: int) -> None:
        self.used -= count
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            count, fut = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            if not self._fits(count):
                return
            self._waiters.popleft()
            self.used += count
            fut.set_result(None)


class TogetherAdmitter:
    """Adds groups of requests to an ``AsyncLLM`` so that each group enters one engine step.

    ``add`` is ``AsyncLLM.add_request``-like (returns an output collector); ``abort`` takes the
    collectors of a group nobody waits for any more.
    """

    def __init__(self, engine, add: Callable[..., Awaitable[Any]],
                 abort: Callable[[list[Any]], Awaitable[None]]) -> None:
        self._engine_core = engine.engine_core
        self._add, self._abort = add, abort
        self._pending: list[tuple[list[tuple], asyncio.Future]] = []
        self._task: asyncio.Task | None = None

    async def admit(self, group: list[tuple]) -> list[Any]:
        """``group``: argument tuples for ``add``; returns their collectors, in order."""
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((group, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                await self._abort(fut.result())
            else:
                fut.cancel()  # _run aborts it once added
            raise

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._engine_core.pause_scheduler_async(mode="keep", clear_cache=False)
                try:
                    for group, fut in batch:
                        await self._add_group(group, fut)
                finally:
                    await self._engine_core.resume_scheduler_async()
            except Exception as exc:  # noqa: BLE001 - the engine is unusable; fail the waiting requests
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)

    async def _add_group(self, group: list[tuple], fut: asyncio.Future) -> None:
        added = []
        try:
            for args in group:
                added.append(await self._add(*args))
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request
            if added:
                await self._abort(added)
            if not fut.done():
                fut.set_exception(exc)
            return
        if fut.done():  # the request was cancelled while waiting
            await self._abort(added)
        else:
            fut.set_result(added)
