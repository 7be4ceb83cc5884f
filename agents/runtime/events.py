"""What a run reports while it goes, as typed events every surface renders its own way."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .io import WorkflowOutput
from .usage import Usage

__all__ = ["NodeFinished", "NodeStarted", "Progress", "RunEvent", "RunFinished", "RunResult", "RunStarted",
           "TokenDelta"]


@dataclass(frozen=True)
class RunStarted:
    thread_id: str
    workflow: str
    attempt: int
    resumed: bool


@dataclass(frozen=True)
class NodeStarted:
    node: str
    task_id: str
    elapsed_s: float
    """Since the run (this attempt) started."""


@dataclass(frozen=True)
class NodeFinished:
    node: str
    task_id: str
    seconds: float
    usage: dict[str, Usage]
    """Per role, the model calls this node made."""
    error: str | None = None
    update: Any = None
    """What the node returned (its state update), as LangGraph's `updates` stream mode gives it."""


@dataclass(frozen=True)
class Progress:
    """A workflow's own progress report (round, scores, ...), from `RunContext.progress`."""

    node: str
    data: dict[str, Any]


@dataclass(frozen=True)
class TokenDelta:
    node: str
    role: str
    text: str


@dataclass
class RunResult:
    thread_id: str
    workflow: str
    status: str
    """finished, failed or cancelled."""
    output: WorkflowOutput | None
    usage: Usage
    usage_by_role: dict[str, Usage] = field(default_factory=dict)
    elapsed_s: float = 0.0
    error: str | None = None
    model_wall_s: float | None = None
    """Seconds during which a model call was in flight (parallel calls once); None: not measured."""

    @property
    def other_s(self) -> float:
        """Run time not spent waiting for models."""
        model = self.model_wall_s if self.model_wall_s is not None else self.usage.model_s
        return max(0.0, self.elapsed_s - model)


@dataclass(frozen=True)
class RunFinished:
    result: RunResult


RunEvent = RunStarted | NodeStarted | NodeFinished | Progress | TokenDelta | RunFinished
