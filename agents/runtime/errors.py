"""Errors a run reports to its surface, each saying what to do."""
from __future__ import annotations

__all__ = ["RunNotFound", "ServiceUnreachable", "UnknownWorkflow", "WorkflowError"]


class WorkflowError(RuntimeError):
    """Base: a run could not start or did not finish."""


class UnknownWorkflow(WorkflowError, LookupError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(f"unknown workflow {name!r}; available: {', '.join(known) or 'none'}")
        self.name = name


class ServiceUnreachable(WorkflowError):
    """A model server or MCP tool server that a run needs does not answer."""

    def __init__(self, what: str, where: str, hint: str):
        super().__init__(f"{what} at {where} is not reachable: {hint}")
        self.what, self.where, self.hint = what, where, hint


class RunNotFound(WorkflowError, LookupError):
    def __init__(self, thread_id: str):
        super().__init__(f"no run with thread id {thread_id!r} (see `braid runs list`)")
        self.thread_id = thread_id
