"""Workflows as model ids on the OpenAI API, with the official `openai` client against a real server
serving the bundled SmolLM2 and the `example` workflow (model -> MCP calculator -> answer) whose role
defaults to that same server: the same answer as the in-process run (greedy), usage equal to the run
record's per-node usage, progress while streaming, and the errors (unknown id, completions on a
workflow, refused fields, a model server that is down, invalid config at start-up)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TypedDict

import httpx
import openai
import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from braid.agents import RuntimeSettings, load_workflow
from braid.agents.runtime.events import NodeFinished, NodeStarted, Progress, RunResult, RunStarted
from braid.agents.runtime.context import RunContext
from braid.agents.runtime.io import Artifact, WorkflowOutput
from braid.agents.runtime.records import RunRecords
from braid.agents.runtime.registry import WorkflowSpec, register
from braid.agents.runtime.usage import Usage
from braid.server.models.config import load_settings
from server_process import free_port, start_server, stop_server

sys.path.insert(0, str(Path(__file__).parents[2] / "agents"))
from example_setup import MODEL, QUESTION, example_config, smollm2_settings  # noqa: E402



API_KEY = "workflow-key"
NODES = ["call_tool", "run_tools", "answer"]
MESSAGES = [{"role": "user", "content": QUESTION}]


def server_side_config() -> dict:
    """`example_config` without a base_url: the role defaults to the server itself (and its API key)."""
    config = example_config("unused")
    del config["roles"]["assistant"]["base_url"]
    return config


# --- without a server -------------------------------------------------------------------------------

def test_answer_pieces_rebuild_the_answer():
    from braid.server.api.serving_workflows import answer_pieces

    for text in ["", "one", "  lead and trail  ", "37 * 91 = 3367.\nDone", "a\tb"]:
        assert "".join(answer_pieces(text)) == text
    assert answer_pieces("The result is 3367.") == ["The ", "result ", "is ", "3367."]


def test_run_info_inlines_files_and_events_map_to_their_wire_types(tmp_path):
    import base64

    from braid.server.api.serving_workflows import run_info, wire_event

    png = Artifact.write(tmp_path, "plot.png", b"\x89PNG-bytes")
    result = RunResult("t1", "example", "finished", WorkflowOutput(answer="ok", files=[png]), Usage(3, 4, 2, 0.5),
                       {"assistant": Usage(3, 4, 2, 0.5)}, elapsed_s=1.5)
    info = run_info(result)
    (file,) = info.files
    assert (file.name, file.media_type) == ("plot.png", "image/png")
    assert base64.b64decode(file.data_uri.removeprefix("data:image/png;base64,")) == b"\x89PNG-bytes"
    assert (info.thread_id, info.model_s, info.model_calls) == ("t1", 0.5, 2)
    assert info.usage_by_role["assistant"].total_tokens == 7

    usage = {"assistant": Usage(10, 2, 1, 0.25)}
    wire = [wire_event(e).model_dump() for e in [
        RunStarted("t1", "example", 1, False), NodeStarted("call_tool", "k1", 0.1),
        NodeFinished("call_tool", "k1", 0.3, usage), Progress("run_tools", {"results": [object]})]]
    assert [w["type"] for w in wire] == ["run_started", "node_started", "node_finished", "progress"]
    assert wire[2]["usage"]["assistant"] == {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12,
                                             "calls": 1, "model_s": 0.25}
    assert "error" not in wire[2]
    json.dumps(wire)  # progress data that is not JSON is sent as text


def test_invalid_workflow_settings_name_the_field(tmp_path):
    model = [{"id": MODEL, "source": "smollm2-135m-instruct"}]
    cases = [({"workflows": [{"id": "x", "workflow": "nope"}]}, "workflows[0].workflow: unknown workflow 'nope'"),
             ({"workflows": [{"id": MODEL}]}, f"workflows[0].id: '{MODEL}' is also the id of a model"),
             ({"workflows": [{"id": "example", "config": {"roles": {"assistant": {"tempature": 0}}}}]},
              "workflows[0].config: invalid ExampleConfig: roles.assistant.tempature"),
             ({"workflows": [{"id": "example", "config": str(tmp_path / "missing.yaml")}]},
              "workflows[0].config: config file")]
    for settings, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            load_settings(**settings, models=model)
    with pytest.raises(ValueError, match=re.escape("workflows[0].config.roles: role(s) ['assistant'] set no "
                                                   "base_url and this server serves no model")):
        load_settings(workflows=[{"id": "example"}])
    gateway = load_settings(workflows=[{"id": "example", "config": example_config("http://elsewhere:8000/v1")}])
    assert gateway.models == []  # workflows alone: no default model is loaded


def test_a_server_without_workflows_does_not_load_the_agents_runtime(tmp_path):
    code = ("import sys; from braid.server.models import load_settings; from braid.server.api import build_app\n"
            f"build_app(load_settings(home={str(tmp_path)!r}))\n"
            "print(sorted(m for m in ('braid.agents', 'langgraph', 'langchain_core') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert loaded.strip() == "[]"


def test_braid_serve_exits_naming_an_unknown_workflow(tmp_path):
    config = tmp_path / "braid.json"
    config.write_text(json.dumps({"home": str(tmp_path), "workflows": [{"id": "solver", "workflow": "no-such-flow"}]}))
    done = subprocess.run([sys.executable, "-m", "braid.clients.cli", "serve", "--config", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "workflows[0].workflow: unknown workflow 'no-such-flow'" in done.stderr


class _ShoutState(TypedDict):
    text: str
    answer: str


async def _shout(state: _ShoutState, runtime: Runtime[RunContext]) -> dict:
    if "fail" in state["text"]:
        raise RuntimeError("the shouting broke")
    runtime.context.progress(step="shouting", letters=len(state["text"]))
    Artifact.write(runtime.context.files_dir, "note.txt", state["text"])
    return {"answer": state["text"].upper()}


def _shout_graph(config) -> StateGraph:
    graph = StateGraph(_ShoutState, context_schema=RunContext)
    graph.add_node("shout", _shout)
    graph.add_edge(START, "shout")
    graph.add_edge("shout", END)
    return graph


# A workflow without models (no roles): the wire format end to end, in this process, in a second.
SHOUT = register(WorkflowSpec(
    name="shout-test", summary="answers its input in capitals", build=_shout_graph,
    start=lambda inputs, config: {"text": inputs.text},
    output=lambda state, ctx: WorkflowOutput(answer=state["answer"], files=[Artifact(
        name="note.txt", path=str(ctx.files_dir / "note.txt"), media_type="text/plain")]),
    roles=()))


async def test_a_workflow_without_models_end_to_end_in_process(tmp_path):
    from braid.server.api.app import build_app

    settings = load_settings(home=tmp_path, workflows=[{"id": "shout", "workflow": "shout-test"}])
    app = build_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://braid") as http:
        client = openai.AsyncOpenAI(base_url="http://braid/v1", api_key="none", http_client=http, max_retries=0)
        whole = await client.chat.completions.create(
            model="shout", messages=[{"role": "system", "content": "ignored"}, {"role": "user", "content": "hi there"}])
        assert whole.choices[0].message.content == "HI THERE"
        run = whole.model_extra["braid_run"]
        assert run["files"] == [{"name": "note.txt", "media_type": "text/plain",
                                 "data_uri": "data:text/plain;base64,aGkgdGhlcmU="}]
        assert whole.model_extra["braid_output"] == {"answer": "HI THERE"}
        assert whole.usage.total_tokens == 0 and run["model_calls"] == 0

        stream = await client.chat.completions.create(model="shout", messages=[{"role": "user", "content": "a b"}],
                                                      stream=True)
        chunks = [chunk async for chunk in stream]
        events = [c.model_extra["braid_event"] for c in chunks if c.model_extra.get("braid_event")]
        assert [e["type"] for e in events] == ["run_started", "node_started", "progress", "node_finished"]
        assert events[2] == {"type": "progress", "node": "shout", "data": {"step": "shouting", "letters": 3}}
        assert [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content] == ["A ", "B"]
        assert chunks[-1].model_extra["braid_run"]["files"][0]["name"] == "note.txt"

        # A run that fails: a 500 error object, or mid-stream an error event, then [DONE].
        with pytest.raises(openai.InternalServerError, match="the shouting broke") as error:
            await client.chat.completions.create(model="shout", messages=[{"role": "user", "content": "fail"}])
        assert error.value.body["type"] == "workflow_error"
        response = await http.post("/v1/chat/completions", json={
            "model": "shout", "stream": True, "messages": [{"role": "user", "content": "fail"}]})
        data = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
        assert response.status_code == 200 and data[-1] == "[DONE]"
        failure = json.loads(data[-2])["error"]
        assert failure["type"] == "workflow_error" and "the shouting broke" in failure["message"]
        assert json.loads(data[1])["braid_event"]["type"] == "run_started"
        assert (await http.get("/health")).status_code == 200  # workflows alone: a gateway is healthy


# --- a real server ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workflow_server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow-models")
    closed = free_port()  # nothing listens there
    settings = {**smollm2_settings(), "api_key": API_KEY, "agents_home": str(workdir / "agents-home"),
                "workflows": [{"id": "example", "config": server_side_config()},
                              {"id": "example-down", "workflow": "example",
                               "config": {"roles": {"assistant": {"base_url": f"http://127.0.0.1:{closed}/v1",
                                                                  "model": MODEL}}}}]}
    handle = start_server(settings, workdir, timeout=420, env={"OMP_NUM_THREADS": "1"})
    handle.records = RunRecords(workdir / "agents-home" / "agents" / "runs.sqlite")
    handle.down_url = f"http://127.0.0.1:{closed}/v1"
    yield handle
    stop_server(handle)


@pytest.fixture(scope="module")
def client(workflow_server):
    return openai.OpenAI(base_url=workflow_server.base_url, api_key=API_KEY, max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def in_process(workflow_server, tmp_path_factory):
    """The same workflow run in this process against the same server."""
    config = example_config(workflow_server.base_url)
    config["roles"]["assistant"]["api_key"] = API_KEY
    home = tmp_path_factory.mktemp("in-process-runs")
    return load_workflow("example", config, settings=RuntimeSettings(home=home)).invoke(QUESTION)


@pytest.fixture(scope="module")
def whole(client):
    return client.chat.completions.create(model="example", messages=MESSAGES)


@pytest.mark.slow
def test_models_lists_the_workflow_next_to_the_model(client):
    cards = {card.id: card for card in client.models.list().data}
    assert set(cards) == {MODEL, "example", "example-down"}
    assert cards["example"].model_extra["engine"] == "workflow"
    assert cards["example"].model_extra["workflow"] == "example"
    assert "workflow" not in cards[MODEL].model_extra


@pytest.mark.slow
def test_answer_equals_the_in_process_run_and_usage_the_records(whole, in_process, workflow_server):
    assert in_process.status == "finished"
    (choice,) = whole.choices
    assert choice.message.content == in_process.output.answer
    assert choice.finish_reason == "stop"
    run = whole.model_extra["braid_run"]
    output = whole.model_extra["braid_output"]
    assert output["answer"] == in_process.output.answer
    assert output["tool_calls"] == [call.model_dump(mode="json") for call in in_process.output.tool_calls]
    assert run["workflow"] == "example" and run["status"] == "finished" and run["files"] == []

    record = workflow_server.records.get(run["thread_id"])
    assert record.status == "finished" and record.surface == "openai"
    assert [n.node for n in record.nodes] == NODES
    total = Usage()
    for node in record.nodes:
        for value in node.usage.values():
            total.add(value)
    usage = whole.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (total.prompt_tokens, total.completion_tokens)
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert run["model_calls"] == total.calls == 2


@pytest.mark.slow
def test_streaming_sends_progress_then_the_same_answer_and_usage(client, whole, workflow_server):
    chunks = list(client.chat.completions.create(model="example", messages=MESSAGES, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # sent in pieces

    events = [c.model_extra["braid_event"] for c in chunks if c.model_extra.get("braid_event")]
    assert events[0]["type"] == "run_started"
    steps = [(e["type"], e["node"]) for e in events if e["type"] in ("node_started", "node_finished")]
    assert steps == [(kind, node) for node in NODES for kind in ("node_started", "node_finished")]
    progress = [e["node"] for e in events if e["type"] == "progress"]
    assert progress == ["call_tool", "run_tools"]
    finished = [e for e in events if e["type"] == "node_finished"]
    assert sum(e["usage"]["assistant"]["prompt_tokens"] for e in finished if e["usage"]) == whole.usage.prompt_tokens

    (final,) = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert final.choices[0].finish_reason == "stop"
    thread = final.model_extra["braid_run"]["thread_id"]
    assert thread == events[0]["thread_id"] != whole.model_extra["braid_run"]["thread_id"]
    assert workflow_server.records.get(thread).status == "finished"
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


@pytest.mark.slow
def test_unknown_ids_refused_fields_and_completions_on_a_workflow(client):
    with pytest.raises(openai.NotFoundError, match="workflows: \\['example', 'example-down'\\]"):
        client.chat.completions.create(model="no-such-agent", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError, match="chat completions only") as error:
        client.completions.create(model="example", prompt="2 + 2 =")
    assert error.value.status_code == 400
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    for fields, param in [({"tools": [tool]}, "tools"), ({"n": 2}, "n"), ({"logprobs": True}, "logprobs"),
                          ({"response_format": {"type": "json_object"}}, "response_format")]:
        with pytest.raises(openai.BadRequestError) as error:
            client.chat.completions.create(model="example", messages=MESSAGES, **fields)
        assert error.value.body["param"] == param
    with pytest.raises(openai.BadRequestError, match="no user message"):
        client.chat.completions.create(model="example", messages=[{"role": "system", "content": "hi"}])


@pytest.mark.slow
def test_a_model_server_that_is_down_is_a_502_naming_its_url(client, workflow_server):
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as error:
            client.chat.completions.create(model="example-down", messages=MESSAGES, stream=stream)
        assert error.value.status_code == 502
        assert error.value.body["type"] == "upstream_unreachable_error"
        assert workflow_server.down_url in error.value.message


@pytest.mark.slow
def test_a_client_that_disconnects_cancels_the_run(workflow_server):
    body = {"model": "example", "messages": MESSAGES, "stream": True}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    thread = None
    with httpx.stream("POST", f"{workflow_server.base_url}/chat/completions", json=body, headers=headers,
                      timeout=120) as response:
        for line in response.iter_lines():
            event = json.loads(line.removeprefix("data: ")).get("braid_event") if line.startswith("data: {") else None
            if event and event["type"] == "run_started":
                thread = event["thread_id"]
                break
    assert thread is not None
    deadline = time.monotonic() + 60
    while workflow_server.records.get(thread).status == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert workflow_server.records.get(thread).status == "cancelled"
