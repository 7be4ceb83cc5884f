"""`xolver`: a planner names m specialist roles; exemplars come from the experience memory (else each
agent recalls one); the agents solve in parallel, writing Python that is executed through the python
MCP tool; an execution-based judge scores them; the best m form a shared store the agents revise
against, until all m reach the top score or I rounds pass; the best answer is extracted and, when
verified, written back to the experience memory."""
from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from pydantic import Field

from ..runtime.context import RunContext
from ..runtime.io import InputError, WorkflowInput, WorkflowOutput
from ..runtime.registry import WorkflowSpec
from .answers import extract_answer, same_answer
from .config import ROLES, XolverConfig
from .nodes import judge, plan, remember, retrieve, route, solve, verify
from .state import Exemplar, Response, XolverState

__all__ = ["SPEC", "XolverInput", "XolverOutput"]

MAX_PROBLEM_CHARS = 20_000


class XolverInput(WorkflowInput):
    def check(self) -> None:
        super().check()
        if len(self.text) > MAX_PROBLEM_CHARS:
            raise InputError(f"the problem is {len(self.text)} characters; at most {MAX_PROBLEM_CHARS} fit the "
                             "agents' prompts")


class XolverOutput(WorkflowOutput):
    final_answer: str | None = Field(None, description="The extracted final answer (a number for math).")
    problem: str
    roles: list[str] = Field(default_factory=list)
    rounds: int = 0
    stop_reason: str = ""
    best: Response | None = None
    store: list[Response] = Field(default_factory=list, description="The shared store: the top m responses.")
    exemplars: list[Exemplar] = Field(default_factory=list)
    memory_id: str | None = Field(None, description="The experience record written for this problem, if any.")
    tokens: int = Field(0, description="Tokens the agents, judge and verifier spent (prompt + completion).")
    best_by_round: list[str | None] = Field(default_factory=list, description="The store's best answer after each "
                                            "round.")
    tokens_by_round: list[int] = Field(default_factory=list, description="Tokens spent by the end of each round.")


def build(config: XolverConfig) -> StateGraph:
    graph = StateGraph(XolverState, context_schema=RunContext)
    for name, node in [("plan", plan), ("retrieve", retrieve), ("solve", solve), ("judge", judge),
                       ("verify", verify), ("remember", remember)]:
        graph.add_node(name, node)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "retrieve")
    graph.add_conditional_edges("retrieve", route, ["solve", "verify"])
    graph.add_edge("solve", "judge")
    graph.add_conditional_edges("judge", route, ["solve", "verify"])
    graph.add_edge("verify", "remember")
    graph.add_edge("remember", END)
    return graph


def start(inputs: XolverInput, config: XolverConfig) -> dict:
    return {"problem": inputs.text.strip(), "responses": [], "tokens": 0}


def output(state: dict, ctx: RunContext) -> XolverOutput:
    answer = state.get("answer")
    best = state.get("best")
    return XolverOutput(answer=f"\\boxed{{{answer}}}" if answer is not None else "no answer",
                        final_answer=answer, problem=state["problem"], roles=state.get("roles", []),
                        rounds=state.get("round", 0), stop_reason=state.get("stop_reason", ""),
                        best=Response.model_validate(best) if best else None,
                        store=[Response.model_validate(r) for r in state.get("store", [])],
                        exemplars=[Exemplar.model_validate(e) for e in state.get("exemplars", [])],
                        memory_id=state.get("memory_id"), tokens=state.get("tokens", 0),
                        best_by_round=state.get("best_by_round", []), tokens_by_round=state.get("tokens_by_round", []))


def is_correct(result: XolverOutput, expected: Any) -> bool:
    """The final answer against an expected number (GSM8K's '... #### 18' is read as 18)."""
    want = str(expected)
    return same_answer(result.final_answer, extract_answer(want) if "####" in want else want.strip())


SPEC = WorkflowSpec(name="xolver", summary="multi-agent reasoning with executed code, an execution-based judge "
                    "and an evolving experience memory", build=build, start=start, output=output,
                    config_model=XolverConfig, input_model=XolverInput, output_model=XolverOutput, roles=ROLES,
                    is_correct=is_correct)
