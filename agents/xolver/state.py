"""Xolver's typed state: each agent's response, the shared store of the best ones, and the graph state."""
from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from pydantic import BaseModel, Field

__all__ = ["AgentTask", "Exemplar", "Response", "XolverState", "merge_store"]


class Exemplar(BaseModel):
    """A solved problem shown to the agents (retrieved, or recalled by the agent itself)."""

    problem: str
    solution: str
    answer: str | None = None
    code: str | None = None
    similarity: float | None = None
    source: str = "memory"


class Response(BaseModel):
    agent: int
    role: str
    round: int
    text: str
    """What the agent wrote (its final turn)."""
    answer: str | None = None
    """The answer the response states (\\boxed{}, ...), or the code's printed result without an answer turn."""
    code: str | None = None
    executed: str | None = None
    """The code's printed result (stdout, else the last value)."""
    code_error: str | None = None
    tokens: int = 0
    score: float = 0.0
    feedback: str = ""


class AgentTask(TypedDict):
    """What one agent gets in a round (sent with LangGraph's `Send`)."""

    agent: int
    role: str
    round: int
    problem: str
    exemplars: list[dict]
    previous: dict | None
    store: list[dict]


def merge_store(store: list[Response], new: list[Response], m: int) -> list[Response]:
    """The top m responses by score; among equal scores the newer round first, then the agent index."""
    ranked = sorted([*store, *new], key=lambda r: (-r.score, -r.round, r.agent))
    return ranked[:m]


class XolverState(TypedDict, total=False):
    problem: str
    roles: list[str]
    exemplars: list[dict]
    self_retrieve: bool
    round: int
    responses: Annotated[list[dict], operator.add]
    """Every response of every round (appended by the parallel agents)."""
    store: list[dict]
    """The shared memory: the top m responses so far, judged."""
    stop_reason: str
    answer: str | None
    best: dict | None
    memory_id: str | None
    tokens: int
    best_by_round: list[str | None]
    """The store's best answer after each round."""
    tokens_by_round: list[int]
    """Tokens spent by the end of each round."""
