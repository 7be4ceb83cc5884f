"""Waiting and running queues, slot ownership and the KV budget. No tensors here.

Each step is either a prefill (admit waiting sequences, run their whole known token list) or a
decode (every running sequence adds one token). The KV budget is counted in cache cells:
``(highest slot in use + 1) * longest cached length``, what a slot cache really allocates.
When a decode step would overflow it, the newest sequence is preempted and later recomputed.
"""
from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from ...sampling import SamplingSpec

__all__ = ["Scheduler", "ScheduledBatch", "Sequence", "SequenceStatus"]


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    request_id: str
    token_ids: list[int]  # prompt, then generated tokens
    num_prompt_tokens: int
    sampling: SamplingSpec
    status: SequenceStatus = SequenceStatus.WAITING
    slot: int | None = None
    num_cached_tokens: int = 0
    prompt_logprobs_done: bool = False
    extra: dict = field(default_factory=dict)  # per-sequence engine state (e.g. a torch.Generator)

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens:]

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def num_new_tokens(self) -> int:
        return len(self.token_ids) - self.num_cached_tokens


@dataclass(frozen=True)
class ScheduledBatch:
    seqs: list[Sequence]
    is_prefill: bool


class Scheduler:
    def __init__(self, max_num_seqs: int, max_num_batched_tokens: int, max_cache_tokens: int | None = None):
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.max_cache_tokens = max_cache_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self._free_slots: list[int] = list(range(max_num_seqs))

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> ScheduledBatch | None:
        batch = self._schedule_prefill()
        if batch is not None:
            return batch
        return self._schedule_decode()

    def _schedule_prefill(self) -> ScheduledBatch | None:
        scheduled: list[Sequence] = []
        num_tokens = 0
        while self.waiting and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            if scheduled and num_tokens + len(seq) > self.max_num_batched_tokens:
                break
            slot = min(self._free_slots)
            if not self._fits(extra_slot=slot, extra_len=len(seq) + 1, grow=1):  # room for the next decode
                break
            self.waiting.popleft()
            self._free_slots.remove(slot)
            seq.slot, seq.status, seq.num_cached_tokens = slot, SequenceStatus.RUNNING, 0
            self.running.append(seq)
            scheduled.append(seq)
            num_tokens += len(seq)
        return ScheduledBatch(scheduled, is_prefill=True) if scheduled else None

    def _schedule_decode(self) -> ScheduledBatch | None:
        while self.running and not self._fits(grow=1):
            if len(self.running) == 1:
                break  # a lone sequence always runs; the cache grows past the budget rather than deadlock
            self.preempt(self.running[-1])
        return ScheduledBatch(sorted(self.running, key=lambda s: s.slot), is_prefill=False) if self.running else None

    def _fits(self, extra_slot: int | None = None, extra_len: int = 0, grow: int = 0) -> bool:
        if self.max_cache_tokens is None:
            return True
        slots = [s.slot for s in self.running] + ([extra_slot] if extra_slot is not None else [])
        longest = max([len(s) + grow for s in self.running] + [extra_len])
        return (max(slots) + 1) * longest <= self.max_cache_tokens or not self.running

    def preempt(self, seq: Sequence) -> None:
        """Give the slot back and queue the sequence first, to be recomputed from its tokens."""
        self._release(seq)
        seq.status = SequenceStatus.WAITING
        self.waiting.appendleft(seq)

    def finish(self, seq: Sequence) -> None:
        self._release(seq)
        seq.status = SequenceStatus.FINISHED

    def abort(self, request_id: str) -> Sequence | None:
        for seq in list(self.running) + list(self.waiting):
            if seq.request_id == request_id:
                if seq.status is SequenceStatus.WAITING:
                    self.waiting.remove(seq)
                    seq.status = SequenceStatus.FINISHED
                else:
                    self.finish(seq)
                return seq
        return None

    def _release(self, seq: Sequence) -> None:
        if seq in self.running:
            self.running.remove(seq)
        if seq.slot is not None:
            self._free_slots.append(seq.slot)
            seq.slot = None
        seq.num_cached_tokens = 0
