"""A workflow for the eval harness tests that needs no model server: a real LangGraph graph that
parses an arithmetic question, computes it (after a pause, so a test can stop the eval mid-way) and
answers through a fake chat model reporting token usage (prompt: the question's words; completion:
the answer's digits), so the usage meter counts tokens as for a real model.

`wrong_every`: answers off by one when the first operand is divisible by it (an arm that is worse).
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import operator
import random
import re
from typing import TypedDict

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic import Field

from braid.agents.runtime.config import WorkflowConfig
from braid.agents.runtime.context import RunContext
from braid.agents.runtime.io import WorkflowInput, WorkflowOutput
from braid.agents.runtime.registry import WorkflowSpec

OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul}
QUESTION = re.compile(r"(-?\d+)\s*([-+*])\s*(-?\d+)")


class ArithConfig(WorkflowConfig):
    delay_s: float = Field(0.1, ge=0.0)
    wrong_every: int = Field(0, ge=0)


class State(TypedDict, total=False):
    question: str
    value: int
    answer: str


def tokens(question: str, answer: str) -> tuple[int, int]:
    """The usage the fake model reports (the tests compute it the same way)."""
    return len(question.split()), len(answer)


async def compute(state: State, runtime: Runtime[RunContext]) -> dict:
    config: ArithConfig = runtime.context.config  # type: ignore[assignment]
    await asyncio.sleep(config.delay_s)
    found = QUESTION.search(state["question"])
    if found is None:
        raise ValueError(f"no arithmetic in {state['question']!r}")
    a, op, b = int(found[1]), found[2], int(found[3])
    value = OPERATORS[op](a, b)
    if config.wrong_every and a % config.wrong_every == 0:
        value += 1
    return {"value": value}


async def respond(state: State, runtime: Runtime[RunContext]) -> dict:
    text = str(state["value"])
    prompt, completion = tokens(state["question"], text)
    reply = AIMessage(content=text, usage_metadata={"input_tokens": prompt, "output_tokens": completion,
                                                    "total_tokens": prompt + completion})
    model = GenericFakeChatModel(messages=iter([reply]), callbacks=[runtime.context.meter])
    answer = await model.ainvoke([HumanMessage(state["question"])])
    return {"answer": answer.content}


def build(config: ArithConfig) -> StateGraph:
    graph = StateGraph(State, context_schema=RunContext)
    graph.add_node("compute", compute)
    graph.add_node("respond", respond)
    graph.add_edge(START, "compute")
    graph.add_edge("compute", "respond")
    graph.add_edge("respond", END)
    return graph


def start(inputs: WorkflowInput, config: ArithConfig) -> dict:
    return {"question": inputs.text}


def output(state: dict, ctx: RunContext) -> WorkflowOutput:
    return WorkflowOutput(answer=state["answer"])


SPEC = WorkflowSpec(name="arith", summary="arithmetic without a model server (tests)", build=build, start=start,
                    output=output, config_model=ArithConfig, roles=())

# The same, but its `default` role needs a model server: with an unreachable base_url every run fails to start.
NEEDS_SERVER = dataclasses.replace(SPEC, name="arith-served", roles=("default",))


# --- datasets for the tests -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Question:
    id: str
    a: int
    op: str
    b: int

    @property
    def text(self) -> str:
        return f"What is {self.a} {self.op} {self.b}?"

    def answer(self, wrong_every: int = 0) -> int:
        """What the workflow answers with `wrong_every` (the expected answer with 0)."""
        value = OPERATORS[self.op](self.a, self.b)
        return value + 1 if wrong_every and self.a % wrong_every == 0 else value


FAILING = {"bad": "What is love?", "empty": ""}
"""Items whose runs fail: no arithmetic in the question (RunFailed), an empty input (InputError)."""


def write_dataset(path, count: int, seed: int = 0) -> list[Question]:
    """`count` arithmetic questions (ids q0, q1, ...) then the FAILING items, as JSONL at `path`."""
    rng = random.Random(seed)
    questions = [Question(f"q{i}", rng.randint(1, 99), rng.choice("+-*"), rng.randint(1, 99)) for i in range(count)]
    with open(path, "w") as f:
        for q in questions:
            f.write(json.dumps({"id": q.id, "question": q.text, "answer": q.answer()}) + "\n")
        f.write(json.dumps({"id": "bad", "question": FAILING["bad"], "answer": "baby"}) + "\n")
        f.write(json.dumps({"id": "empty", "input": FAILING["empty"], "answer": 0}) + "\n")
    return questions
