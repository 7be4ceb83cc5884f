"""How long the byte-level worker needs for the work it has accepted, to refuse what it cannot finish.

All byte-level work in the process runs in one worker thread, one byte position (one next-byte
distribution) at a time, and concurrent requests share it: a request that joins a busy worker
finishes only after everything already admitted. Rather than accept a request it would answer
minutes later, an engine asks ``Backlog.check`` first (before the response starts), and answers
503 with ``Retry-After`` (when the work ahead will have shrunk enough) if the work ahead plus the
request's own would take longer than the model's ``max_backlog_s``.

Seconds per byte position are measured in the worker (``ByteCost``, per engine: members and
settings set the price), so they include whatever else competes for the CPU. A request's work is
its prompt bytes (walked one position each) plus the output bytes it is expected to produce: its
``max_tokens``, capped by the mean length of the engine's recent replies that ended by
themselves (a chat request without ``max_tokens`` may run to the context limit, but rarely does).
Requests take the worker in turn, first come first served, so a request admitted now finishes
after the work ahead of it plus its own, whatever arrives later.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from ..base import EngineUnavailable

__all__ = ["Backlog", "ByteCost", "Work"]

_ALPHA = 0.2  # weight of the newest measurement in the running means
RESERVATION_S = 30.0


@dataclass
class ByteCost:
    """One engine's running means: seconds per byte position, and output bytes per request."""

    seconds_per_byte: float | None = None
    output_bytes: float | None = None

    def observe_step(self, seconds: float, positions: int) -> None:
        if positions > 0:
            self.seconds_per_byte = _mean(self.seconds_per_byte, seconds / positions)

    def observe_output(self, output_bytes: int) -> None:
        self.output_bytes = _mean(self.output_bytes, float(output_bytes))

    def expected_output(self, max_tokens: int) -> float:
        return max_tokens if self.output_bytes is None else min(max_tokens, self.output_bytes)


def _mean(old: float | None, new: float) -> float:
    return new if old is None else (1 - _ALPHA) * old + _ALPHA * new


@dataclass(eq=False)
class Work:
    """One admitted request's share of the backlog; the engine reports its progress here."""

    cost: ByteCost
    prompt_left: int
    max_tokens: int
    generated: int = 0

    def positions_left(self) -> float:
        expected = self.cost.expected_output(self.max_tokens)
        if self.generated < expected:
            out_left = expected - self.generated
        else:  # past its expected length: expected to go on as long again, within max_tokens
            out_left = min(expected, self.max_tokens - self.generated)
        return self.prompt_left + max(out_left, 0.0)

    def seconds_left(self) -> float:
        return self.positions_left() * (self.cost.seconds_per_byte or 0.0)


@dataclass
class Backlog:
    """The work admitted to the shared byte-level worker and not yet done.

    Admitted work is reserved under its request id at once (requests that arrive together must
    see each other), and claimed when the request starts; a reservation never claimed (the
    client left before its response started) lapses after ``RESERVATION_S``.
    """

    _work: set[Work] = field(default_factory=set)
    _reserved: dict[str, tuple[Work, float]] = field(default_factory=dict)

    def seconds(self) -> float:
        self._drop_lapsed()
        return sum(work.seconds_left() for work in self._work) + sum(
            work.seconds_left() for work, _ in self._reserved.values())

    def _drop_lapsed(self) -> None:
        now = time.monotonic()
        for request_id, (_, since) in list(self._reserved.items()):
            if now - since > RESERVATION_S:
                del self._reserved[request_id]

    def check(self, new: list[Work], limit_s: float | None, model: str) -> None:
        """Raise ``EngineUnavailable`` (with ``retry_after``) if the ``new`` work would finish later
        than ``limit_s`` from now. Never while the worker is idle: a request alone is accepted."""
        if limit_s is None:
            return
        ahead = self.seconds()
        if ahead <= 0:
            return
        own = sum(work.seconds_left() for work in new)
        if ahead + own > limit_s:
            # Retry-After: when the work ahead will have shrunk enough for this request, if nothing
            # else arrives (a request that alone exceeds the limit waits for an idle worker).
            wait = ahead + min(own, limit_s) - limit_s
            raise EngineUnavailable(
                f"model {model!r} is overloaded: the byte-level worker has about {ahead:.0f} s of work "
                f"ahead and this request needs about {own:.0f} s more, beyond the model's max_backlog_s "
                f"({limit_s:g} s); retry later", float(max(1, math.ceil(wait))))

    def idle(self) -> bool:
        """Nothing running and nothing admitted."""
        self._drop_lapsed()
        return not self._work and not self._reserved

    def reserve(self, request_id: str, work: Work) -> None:
        self._reserved[request_id] = (work, time.monotonic())

    def claim(self, request_id: str, work: Work) -> Work:
        """The request has started: its reserved work (else ``work``) is now running."""
        reserved = self._reserved.pop(request_id, None)
        work = reserved[0] if reserved is not None else work
        self._work.add(work)
        return work

    def remove(self, work: Work) -> None:
        self._work.discard(work)
