"""A workflow that needs no model and produces files (an SVG chart and a CSV of its input's word
lengths), for the tests of how surfaces deliver a run's files."""
from __future__ import annotations

from typing import TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from braid.agents import WorkflowOutput, WorkflowSpec
from braid.agents.runtime.context import RunContext
from braid.agents.runtime.io import Artifact


class State(TypedDict, total=False):
    text: str
    files: list[dict]


def csv_of(text: str) -> str:
    return "word,length\n" + "".join(f"{w},{len(w)}\n" for w in text.split())


def svg_of(text: str) -> str:
    bars = "".join(f'<rect x="{10 * i}" y="0" width="8" height="{4 * len(w)}"/>' for i, w in enumerate(text.split()))
    return f'<svg xmlns="http://www.w3.org/2000/svg">{bars}</svg>'


async def chart(state: State, runtime: Runtime[RunContext]) -> dict:
    folder = runtime.context.files_dir
    files = [Artifact.write(folder, "lengths.csv", csv_of(state["text"])),
             Artifact.write(folder, "lengths.svg", svg_of(state["text"]))]
    return {"files": [f.model_dump() for f in files]}


def build(config) -> StateGraph:
    graph = StateGraph(State, context_schema=RunContext)
    graph.add_node("chart", chart)
    graph.add_edge(START, "chart")
    graph.add_edge("chart", END)
    return graph


SPEC = WorkflowSpec(name="word-chart", summary="charts word lengths", build=build, roles=(),
                    start=lambda inputs, config: {"text": inputs.text},
                    output=lambda state, ctx: WorkflowOutput(answer=f"{len(state['text'].split())} words",
                                                             files=[Artifact(**f) for f in state["files"]]))
