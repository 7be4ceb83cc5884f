"""Waiting and running queues, slot ownership and the KV budget. No tensors here.

Each step is either a prefill (admit waiting sequences, run their whole known token list) or a
decode (every running sequence adds one token). The KV budget is counted in cache cells:
``(highest slot in use + 1) * longest cached length``, what a slot cache really allocates.
When a decode step would overflow it, the newest sequence is preempted and later recomputed.

The queues hold *units*: a plain sequence, or the positive branch of a contrastive pair with its
negative branch attached (``Sequence.negative``). A unit's branches each own a slot and count
against ``max_num_seqs``, but they are admitted, preempted, finished and scheduled together, so
both branches of a pair always sit in the same step.
"""
from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

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
    generator: object | None = None  # a torch.Generator for seeded sampling
    pixel_values: object | None = None  # the prompt's images (a tensor), encoded at prefill (vision.py)
    negative: "Sequence | None" = None  # contrastive pair: the negative branch, run in lock-step with this one
    score_modifier: Callable | None = None  # attention steering (see attention.SequenceMeta)
    constraint: object | None = None  # a decoding.grammar.GrammarConstraint: masks every sampled token

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

    @property
    def branches(self) -> list["Sequence"]:
        """The sequences this unit runs: itself, then its negative branch if any."""
        return [self] if self.negative is None else [self, self.negative]


@dataclass(frozen=True)
class ScheduledBatch:
    seqs: list[Sequence]  # every branch that runs in this step
    is_prefill: bool
    units: list[Sequence] = field(default_factory=list)  # the requests they belong to (subset of seqs)


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

    @property
    def num_running_seqs(self) -> int:
        return sum(len(unit.branches) for unit in self.running)

    def _schedule_prefill(self) -> ScheduledBatch | None:
        scheduled: list[Sequence] = []
        num_tokens = 0
        while self.waiting:
            unit = self.waiting[0]
            branches = unit.branches
            if self.num_running_seqs + len(branches) > self.max_num_seqs:
                break
            unit_tokens = sum(len(b) for b in branches)
            if scheduled and num_tokens + unit_tokens > self.max_num_batched_tokens:
                break
            slots = sorted(self._free_slots)[:len(branches)]
            longest = max(len(b) for b in branches) + 1  # room for the next decode
            if not self._fits(extra_slots=slots, extra_len=longest, grow=1):
                break
            self.waiting.popleft()
            for branch, slot in zip(branches, slots):
                self._free_slots.remove(slot)
                branch.slot, branch.status, branch.num_cached_tokens = slot, SequenceStatus.RUNNING, 0
            self.running.append(unit)
            scheduled.append(unit)
            num_tokens += unit_tokens
        if not scheduled:
            return None
        return ScheduledBatch([b for unit in scheduled for b in unit.branches], is_prefill=True, units=scheduled)

    def _schedule_decode(self) -> ScheduledBatch | None:
        while self.running and not self._fits(grow=1):
            if len(self.running) == 1:
                break  # a lone unit always runs; the cache grows past the budget rather than deadlock
            self.preempt(self.running[-1])
        if not self.running:
            return None
        seqs = sorted((b for unit in self.running for b in unit.branches), key=lambda s: s.slot)
        return ScheduledBatch(seqs, is_prefill=False, units=list(self.running))

    def _fits(self, extra_slots: list[int] = (), extra_len: int = 0, grow: int = 0) -> bool:
        if self.max_cache_tokens is None or not self.running:
            return True
        branches = [b for unit in self.running for b in unit.branches]
        slots = [b.slot for b in branches] + list(extra_slots)
        longest = max([len(b) + grow for b in branches] + [extra_len])
        return (max(slots) + 1) * longest <= self.max_cache_tokens

    def preempt(self, unit: Sequence) -> None:
        """Give the slots back and queue the unit first, to be recomputed from its tokens."""
        self._release(unit)
        for branch in unit.branches:
            branch.status = SequenceStatus.WAITING
        self.waiting.appendleft(unit)

    def finish(self, unit: Sequence) -> None:
        self._release(unit)
        for branch in unit.branches:
            branch.status = SequenceStatus.FINISHED

    def abort(self, request_id: str) -> Sequence | None:
        for unit in list(self.running) + list(self.waiting):
            if unit.request_id == request_id:
                if unit in self.waiting:
                    self.waiting.remove(unit)
                self.finish(unit)
                return unit
        return None

    def _release(self, unit: Sequence) -> None:
        if unit in self.running:
            self.running.remove(unit)
        for branch in unit.branches:
            if branch.slot is not None:
                self._free_slots.append(branch.slot)
                branch.slot = None
            branch.num_cached_tokens = 0
