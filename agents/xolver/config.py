"""Xolver's settings: team size, rounds, retrieval, code execution, budgets, and a model per role."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..runtime.config import McpServer, WorkflowConfig

__all__ = ["ROLES", "XolverConfig"]

ROLES = ("planner", "solver", "judge", "verifier")
"""Model roles; a role the config does not name uses `default`."""


def _default_tools() -> dict[str, McpServer]:
    return {"python": McpServer(braid="python"),
            "memory": McpServer(braid="memory", options=["--store", "${BRAID_HOME}/agents/xolver-memory",
                                                         "--embedder", "hashing"])}


class XolverConfig(WorkflowConfig):
    tools: dict[str, McpServer] = Field(default_factory=_default_tools,
                                        description="`python` (code execution) and `memory` (experience) servers.")
    task_type: str = Field("math", description="Named in the prompts (\"a math problem\").")
    agents: int = Field(3, ge=1, le=32, description="m: agents per round, and responses kept in the shared store.")
    rounds: int = Field(2, ge=1, le=10, description="I: most rounds of solve -> judge -> merge.")
    plan_roles: bool = Field(True, description="Let the planner name m specialist roles (else generic ones).")
    exemplars: int = Field(1, ge=0, le=8, description="k: solved problems retrieved from the experience memory.")
    retrieval_mode: Literal["hybrid", "bm25", "dense"] = "hybrid"
    min_similarity: float = Field(0.3, ge=-1.0, le=1.0, description="An exemplar counts when its dense cosine "
                                  "(or, in bm25 mode, its BM25 score) reaches this; else agents self-retrieve.")
    self_retrieval: bool = Field(True, description="Without a relevant exemplar, each agent first recalls a "
                                 "related problem and its solution.")
    collection: str = Field("xolver-experience", description="The experience collection in the memory store.")
    agent_temperature: float | None = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature of the "
                                            "agents (None: the solver role's); with `seed`, agent i of round r "
                                            "samples with seed + r * agents + i, so runs repeat.")
    seed: int = Field(0, description="Base seed of the agents' sampling.")
    code: Literal["required", "auto", "none"] = Field(
        "required", description="required: each agent's first turn is a run_python call (executed), then it "
                                "answers; auto: the model may call it; none: no tool.")
    code_timeout_s: float = Field(10.0, gt=0.0, description="Wall-clock limit per code run (capped at the python "
                                  "server's own --timeout).")
    answer_turn: bool = Field(True, description="After the code ran, ask the agent for its final answer "
                                                "(else the code's printed result is the answer).")
    selection: Literal["judge", "majority"] = Field(
        "judge", description="judge: the top-scored response's answer; majority: the answer most responses in the "
                             "store share (self-consistency; ties go to the better-scored).")
    llm_judge: bool = Field(False, description="Add an LLM judge's parsed 0/1 score to the execution-based score "
                                               "(small models judge at chance: off by default).")
    verified_score: float = Field(0.85, ge=0.0, le=1.0, description="A response counts as verified (written to "
                                  "the experience memory) from this score up: its code computed its answer, and "
                                  "other agents agree (a lone agent's agreement is vacuous).")
    write_memory: bool = Field(True, description="Write the best verified solution to the experience memory.")
    use_memory: bool = Field(True, description="Retrieve exemplars from the experience memory.")
    token_budget: int | None = Field(None, ge=1, description="Stop starting new rounds once a problem has spent "
                                     "this many tokens (prompt + completion, all roles).")
