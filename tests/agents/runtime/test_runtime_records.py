"""The runner's bookkeeping on a workflow that needs no model server (a real LangGraph graph):
events in order from `astream` and the synchronous `stream`, run records, API keys kept out of them,
and the errors a caller gets for a bad input, an unknown thread and a reused thread id."""
from __future__ import annotations

import asyncio
from typing import TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from braid.agents import RuntimeSettings, WorkflowOutput, WorkflowSpec
from braid.agents.runtime.context import RunContext
from braid.agents.runtime.errors import RunNotFound, WorkflowError
from braid.agents.runtime.events import NodeFinished, NodeStarted, Progress, RunFinished, RunStarted
from braid.agents.runtime.io import InputError
from braid.agents.runtime.records import RunRecords
from braid.agents.runtime.runner import Workflow


class State(TypedDict, total=False):
    text: str
    words: list[str]
    answer: str


async def split(state: State, runtime: Runtime[RunContext]) -> dict:
    words = state["text"].split()
    runtime.context.progress(words=len(words))
    return {"words": words}


async def count(state: State, runtime: Runtime[RunContext]) -> dict:
    await asyncio.sleep(0)
    return {"answer": f"{len(state['words'])} words, longest {max(state['words'], key=len)!r}"}


def build(config) -> StateGraph:
    graph = StateGraph(State, context_schema=RunContext)
    graph.add_node("split", split)
    graph.add_node("count", count)
    graph.add_edge(START, "split")
    graph.add_edge("split", "count")
    graph.add_edge("count", END)
    return graph


SPEC = WorkflowSpec(name="words", summary="counts words", build=build,
                    start=lambda inputs, config: {"text": inputs.text},
                    output=lambda state, ctx: WorkflowOutput(answer=state["answer"]), roles=())


def words_workflow(home, **config) -> Workflow:
    return Workflow(SPEC, SPEC.config_model.load(config), RuntimeSettings(home=home))


async def test_events_and_record_of_a_run(tmp_path):
    workflow = words_workflow(tmp_path)
    events = [e async for e in workflow.astream("the quick brown fox", thread_id="t-1")]
    kinds = [(type(e).__name__, getattr(e, "node", None)) for e in events]
    assert kinds == [("RunStarted", None), ("NodeStarted", "split"), ("Progress", "split"),
                     ("NodeFinished", "split"), ("NodeStarted", "count"), ("NodeFinished", "count"),
                     ("RunFinished", None)]
    assert events[2].data == {"words": 4}
    assert events[3].update == {"words": ["the", "quick", "brown", "fox"]}
    result = events[-1].result
    assert result.output.answer == "4 words, longest 'quick'" and result.thread_id == "t-1"
    assert result.usage.calls == 0

    record = RunRecords(RuntimeSettings(home=tmp_path).records_path).get("t-1")
    assert (record.workflow, record.status, record.attempts) == ("words", "finished", 1)
    assert record.input == {"text": "the quick brown fox", "images": []}
    assert [(n.node, n.status) for n in record.nodes] == [("split", "finished"), ("count", "finished")]
    assert record.output == {"answer": result.output.answer, "files": []}


def test_sync_stream_gives_the_same_events(tmp_path):
    events = list(words_workflow(tmp_path).stream("a bb ccc"))
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    assert [e.node for e in events if isinstance(e, (NodeStarted, NodeFinished, Progress))] == [
        "split", "split", "split", "count", "count"]
    assert events[-1].result.output.answer == "3 words, longest 'ccc'"


async def test_api_keys_never_reach_the_records(tmp_path):
    workflow = words_workflow(tmp_path, roles={"default": {"api_key": "sk-secret-123", "model": "m"}})
    await workflow.ainvoke("one two", thread_id="keyed")
    record = RunRecords(RuntimeSettings(home=tmp_path).records_path).get("keyed")
    assert record.config["roles"]["default"]["api_key"] == "<redacted>"
    assert record.config["roles"]["default"]["model"] == "m"
    for path in (tmp_path / "agents").glob("runs.sqlite*"):
        assert b"sk-secret-123" not in path.read_bytes()


async def test_bad_input_unknown_thread_and_reused_thread(tmp_path):
    workflow = words_workflow(tmp_path)
    with pytest.raises(InputError, match="empty input"):
        await workflow.ainvoke("   ")
    with pytest.raises(InputError, match="invalid input: extra"):
        await workflow.ainvoke({"text": "x", "extra": 1})
    with pytest.raises(RunNotFound, match="no run with thread id 'nope'"):
        await workflow.aresume("nope")
    await workflow.ainvoke("a b", thread_id="once")
    with pytest.raises(WorkflowError, match="a run with thread id 'once' exists"):
        await workflow.ainvoke("c d", thread_id="once")
    finished = await workflow.aresume("once")  # a finished run answers from its record
    assert finished.output.answer == "2 words, longest 'a'" and finished.status == "finished"


def test_model_wall_time_counts_overlapping_calls_once():
    from braid.agents.runtime.meter import UsageMeter

    meter = UsageMeter()
    meter.intervals = [(1.0, 3.0), (0.0, 2.0), (5.0, 6.0), (5.5, 5.7)]
    assert meter.model_wall_s() == pytest.approx(3.0 + 1.0)  # [0, 3] and [5, 6]


def test_cli_delivers_a_runs_files_to_a_folder(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from file_workflow import csv_of, svg_of

    text = "braid weaves three strands"
    env = {**os.environ, "BRAID_HOME": str(tmp_path / "home"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "braid.clients.cli", "run", "file_workflow:SPEC", text, "--out",
                           str(tmp_path / "out"), "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "lengths.csv").read_text() == csv_of(text)
    assert (tmp_path / "out" / "lengths.svg").read_text() == svg_of(text)
    files = json.loads(done.stdout)["output"]["files"]
    assert [(f["name"], f["media_type"]) for f in files] == [("lengths.csv", "text/csv"),
                                                            ("lengths.svg", "image/svg+xml")]
    assert f"file: {tmp_path / 'out' / 'lengths.svg'} (image/svg+xml)" in done.stderr
