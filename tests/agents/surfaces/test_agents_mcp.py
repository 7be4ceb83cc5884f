"""`braid mcp serve agents`: each workflow as an MCP tool, driven by the official MCP client.

In-process (memory streams, no model): a pure-Python workflow that writes files checks schemas, progress,
files as embedded resources / links, errors and cancellation quickly. Over stdio against a real Braid
server (SmolLM2, greedy): the `example` workflow end to end, the same answer as in-process, and a
cancelled call recorded as `cancelled` and then resumed.
"""
from __future__ import annotations

import ast
import asyncio
import base64
import json
import operator
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import TypedDict

import jsonschema
import pytest
import pytest_asyncio
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from mcp import ClientSession, McpError
from mcp.shared.memory import create_connected_server_and_client_session
from mcp.types import (BlobResourceContents, CancelledNotification, CancelledNotificationParams, ClientNotification,
                       EmbeddedResource, ResourceLink, TextContent, TextResourceContents)
from pydantic import Field
from typer.testing import CliRunner

from braid.agents.example.workflow import ExampleOutput
from braid.agents.runtime import registry
from braid.agents.runtime.config import RuntimeSettings, WorkflowConfig
from braid.agents.runtime.context import RunContext
from braid.agents.runtime.io import Artifact, WorkflowOutput
from braid.agents.runtime.records import RunRecords
from braid.agents.runtime.registry import WorkflowSpec
from braid.agents.runtime.runner import load_workflow
from braid.agents.surfaces.mcp_server import EMBED_LIMIT, build_server, file_uri
from braid.clients.mcp_client import connect_stdio
from braid.tools._serving import ServeOptions
from braid.tools.cli import mcp_app

from example_setup import QUESTION, example_config
from server_process import free_port

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


# --- a pure-Python workflow: files, progress, and an optional pause to cancel ---------------------------------

class FilesConfig(WorkflowConfig):
    pause_s: float = 30.0
    """How long the `wait` node sleeps when the input text is `slow`."""


class FilesOutput(WorkflowOutput):
    sizes: dict[str, int] = Field(default_factory=dict)


class FilesState(TypedDict):
    text: str
    files: list[dict]


async def draw(state: FilesState, runtime: Runtime[RunContext]) -> dict:
    folder = runtime.context.files_dir
    files = [Artifact.write(folder, "overlay.png", PNG), Artifact.write(folder, "report.html", "<h1>report</h1>"),
             Artifact.write(folder, "big.bin", b"\0" * (EMBED_LIMIT + 1))]
    runtime.context.progress(step="drawn", count=len(files))
    return {"files": [f.model_dump() for f in files]}


async def wait(state: FilesState, runtime: Runtime[RunContext]) -> dict:
    if state["text"] == "slow":
        await asyncio.sleep(runtime.context.config.pause_s)
    return {}


def build(config: FilesConfig) -> StateGraph:
    graph = StateGraph(FilesState, context_schema=RunContext)
    graph.add_node("draw", draw)
    graph.add_node("wait", wait)
    graph.add_edge(START, "draw")
    graph.add_edge("draw", "wait")
    graph.add_edge("wait", END)
    return graph


def output(state: dict, ctx: RunContext) -> FilesOutput:
    files = [Artifact.model_validate(f) for f in state["files"]]
    return FilesOutput(answer=f"drew {len(files)} files", files=files,
                       sizes={f.name: Path(f.path).stat().st_size for f in files})


FILES_SPEC = WorkflowSpec(name="files", summary="writes a PNG, an HTML report and a large file", build=build,
                          start=lambda inputs, config: {"text": inputs.text, "files": []}, output=output,
                          config_model=FilesConfig, output_model=FilesOutput, roles=())


@pytest.fixture
def files_server(agents_home, monkeypatch):
    monkeypatch.setitem(registry._registered, "files", FILES_SPEC)
    return build_server(ServeOptions())


class ProgressLog:
    """A progress callback that keeps every notification, and signals when one says `when`."""

    def __init__(self, when: str | None = None):
        self.seen: list[tuple[float, float | None, str | None]] = []
        self.when, self.hit = when, asyncio.Event()

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.seen.append((progress, total, message))
        if self.when and message and self.when in message:
            self.hit.set()

    @property
    def messages(self) -> list[str]:
        return [m or "" for _, _, m in self.seen]


async def cancel_request(session: ClientSession, request_id: int) -> None:
    # The SDK's client (1.30) sends no notifications/cancelled by itself (cancelling the awaiting task only
    # stops waiting), so a client that wants the run stopped sends it, as the spec says.
    await session.send_notification(ClientNotification(CancelledNotification(
        params=CancelledNotificationParams(requestId=request_id, reason="test cancels"))))


async def wait_for_status(records: RunRecords, thread_id: str, status: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (record := records.get(thread_id)) is None or record.status != status:
        assert time.monotonic() < deadline, f"run {thread_id} is {record.status if record else 'missing'}, not {status}"
        await asyncio.sleep(0.1)


async def test_tools_have_the_workflows_schemas(files_server):
    async with create_connected_server_and_client_session(files_server) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert {"example", "files"} <= set(tools)
    tool = tools["files"]
    assert tool.description == FILES_SPEC.summary
    assert tool.outputSchema == FilesOutput.model_json_schema()
    assert {"text", "images", "thread_id", "resume"} <= set(tool.inputSchema["properties"])
    assert tool.inputSchema["additionalProperties"] is False


async def test_a_call_reports_progress_and_returns_the_output_and_its_files(files_server, agents_home):
    progress = ProgressLog()
    async with create_connected_server_and_client_session(files_server) as client:
        tool = next(t for t in (await client.list_tools()).tools if t.name == "files")
        result = await client.call_tool("files", {"text": "fast", "thread_id": "files-1"},
                                        progress_callback=progress)
        assert not result.isError, result.content
        link = next(block for block in result.content if isinstance(block, ResourceLink))
        read = await client.read_resource(link.uri)
        missing = await client.call_tool("files", {"resume": True})
    jsonschema.validate(result.structuredContent, tool.outputSchema)
    output = FilesOutput.model_validate(result.structuredContent)
    assert output.answer == "drew 3 files" and result.meta["braid/thread_id"] == "files-1"
    assert result.meta["braid/status"] == "finished"

    text, png, html, big = result.content
    assert isinstance(text, TextContent) and text.text == "drew 3 files"
    assert isinstance(png, EmbeddedResource) and isinstance(png.resource, BlobResourceContents)
    assert png.resource.mimeType == "image/png" and base64.b64decode(png.resource.blob) == PNG
    assert str(png.resource.uri) == file_uri("files-1", "overlay.png")
    assert isinstance(html, EmbeddedResource) and isinstance(html.resource, TextResourceContents)
    assert html.resource.text == "<h1>report</h1>" and html.resource.mimeType == "text/html"
    assert big is link and link.size == EMBED_LIMIT + 1
    assert base64.b64decode(read.contents[0].blob) == b"\0" * (EMBED_LIMIT + 1)

    messages = progress.messages
    assert messages[0] == "run files-1 started (files, attempt 1)"
    assert any(m.startswith("node draw finished (") for m in messages)
    assert 'node draw: {"step": "drawn", "count": 3}' in messages
    assert any(m.startswith("node wait finished (") for m in messages)
    assert [p for p, _, _ in progress.seen] == sorted({p for p, _, _ in progress.seen})  # strictly increasing

    assert missing.isError and "needs the `thread_id`" in missing.content[0].text


async def test_bad_inputs_are_error_results(files_server):
    async with create_connected_server_and_client_session(files_server) as client:
        empty = await client.call_tool("files", {"text": "  "})
        unknown_field = await client.call_tool("files", {"text": "x", "colour": "red"})
        bad_id = await client.call_tool("files", {"text": "x", "thread_id": "../etc"})
        no_run = await client.call_tool("files", {"thread_id": "never-ran", "resume": True})
        alive = await client.call_tool("files", {"text": "fast"})
    assert empty.isError and "empty input" in empty.content[0].text
    assert unknown_field.isError and "colour" in unknown_field.content[0].text
    assert bad_id.isError and "thread_id" in bad_id.content[0].text
    assert no_run.isError and "no run with thread id 'never-ran'" in no_run.content[0].text
    assert not alive.isError


async def test_cancelling_a_call_stops_the_run_and_records_it_cancelled(files_server, agents_home):
    records = RunRecords(RuntimeSettings(home=agents_home).records_path)
    progress = ProgressLog(when="node wait started")
    async with create_connected_server_and_client_session(files_server) as client:
        request_id = client._request_id  # the id call_tool's request gets (ids are sequential)
        call = asyncio.create_task(client.call_tool("files", {"text": "slow", "thread_id": "files-slow"},
                                                    progress_callback=progress))
        await asyncio.wait_for(progress.hit.wait(), 20)
        started = time.monotonic()
        await cancel_request(client, request_id)
        with pytest.raises(McpError, match="cancelled"):
            await call
        await wait_for_status(records, "files-slow", "cancelled")
        assert time.monotonic() - started < 10  # the 30 s pause did not run out
        assert records.get("files-slow").error == "cancelled by the caller"
        assert (await client.call_tool("files", {"text": "fast"})).isError is False


async def test_a_call_cancelled_while_its_progress_is_being_sent_is_recorded_cancelled(files_server, agents_home):
    records = RunRecords(RuntimeSettings(home=agents_home).records_path)
    release = asyncio.Event()
    progress = ProgressLog(when="node draw finished")

    async def slow_client(progress_value, total, message):
        await progress(progress_value, total, message)
        if progress.hit.is_set():
            await release.wait()  # the client stops reading: the server's next notifications block

    async with create_connected_server_and_client_session(files_server) as client:
        request_id = client._request_id
        call = asyncio.create_task(client.call_tool("files", {"text": "fast", "thread_id": "files-blocked"},
                                                    progress_callback=slow_client))
        await asyncio.wait_for(progress.hit.wait(), 20)
        await asyncio.sleep(0.5)
        await cancel_request(client, request_id)
        await wait_for_status(records, "files-blocked", "cancelled")
        release.set()
        with pytest.raises(McpError, match="cancelled"):
            await call


async def test_an_unreachable_model_server_is_an_error_result_naming_its_url(agents_home, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    config = tmp_path / "example.json"
    config.write_text(json.dumps(example_config(url)))
    server = build_server(ServeOptions(workflow_configs={"example": config}))
    async with create_connected_server_and_client_session(server) as client:
        result = await client.call_tool("example", {"text": QUESTION})
    assert result.isError
    assert url in result.content[0].text and "not reachable" in result.content[0].text


def test_cli_lists_the_server_and_rejects_bad_workflow_configs(tmp_path, agents_home):
    runner = CliRunner()
    assert "agents" in runner.invoke(mcp_app, ["list"]).output
    assert "--workflow-config" in runner.invoke(mcp_app, ["serve", "--help"], terminal_width=200).output
    cases = {("example",): "is not NAME=FILE",
             ("example=a.yaml", "example=b.yaml"): "given a config twice",
             ("nosuch=a.yaml",): "unknown workflow(s) ['nosuch']; available: ",
             (f"example={tmp_path / 'missing.yaml'}",): "missing.yaml does not exist"}
    for values, message in cases.items():
        args = [arg for value in values for arg in ("--workflow-config", value)]
        result = runner.invoke(mcp_app, ["serve", "agents", *args], terminal_width=200)
        assert result.exit_code == 2 and message in " ".join(result.output.replace("│", " ").split()), (values, result.output)


# --- over stdio, against a real Braid server and Braid's calculator MCP server -----------------------------

class StdioClient:
    """An MCP session over stdio owned by one task, so the tests of this module can share it."""

    def __init__(self, *args: str, env: dict[str, str]):
        self.args, self.env = args, env
        self.stop = asyncio.Event()

    async def __aenter__(self) -> ClientSession:
        ready: asyncio.Future[ClientSession] = asyncio.get_running_loop().create_future()

        async def own() -> None:
            try:
                async with connect_stdio(sys.executable, self.args, env=self.env) as session:
                    ready.set_result(session)
                    await self.stop.wait()
            except BaseException as exc:
                if not ready.done():
                    ready.set_exception(exc)
                raise

        self.task = asyncio.create_task(own())
        return await ready

    async def __aexit__(self, *exc) -> None:
        self.stop.set()
        await self.task


@pytest.fixture(scope="module")
def stdio_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("agents-mcp") / "braid-home"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def example_session(smollm2_server, stdio_home, tmp_path_factory):
    config = tmp_path_factory.mktemp("agents-mcp-config") / "example.json"
    config.write_text(json.dumps(example_config(smollm2_server.base_url)))
    client = StdioClient("-m", "braid.tools", "serve", "agents", "--transport", "stdio",
                         "--workflow-config", f"example={config}", env={"BRAID_HOME": str(stdio_home)})
    async with client as session:
        yield session


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def example_call(example_session):
    progress = ProgressLog()
    result = await example_session.call_tool("example", {"text": QUESTION}, progress_callback=progress)
    return result, progress


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos}


def exact(expression: str) -> Fraction:
    """The value of a plain arithmetic expression, exactly (independent of Braid's calculator)."""
    def value(node: ast.AST) -> Fraction:
        match node:
            case ast.Constant(value=int() | float() as number):
                return Fraction(str(number))
            case ast.BinOp(left=left, op=op, right=right):
                return _OPS[type(op)](value(left), value(right))
            case ast.UnaryOp(op=op, operand=operand):
                return _OPS[type(op)](value(operand))
        raise ValueError(f"not plain arithmetic: {ast.dump(node)}")
    return value(ast.parse(expression, mode="eval").body)


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_example_tool_is_listed_with_its_schemas(example_session):
    tool = next(t for t in (await example_session.list_tools()).tools if t.name == "example")
    assert tool.outputSchema == ExampleOutput.model_json_schema()
    assert "text" in tool.inputSchema["properties"]


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_example_call_gives_progress_per_node_and_a_structured_result(example_session, example_call,
                                                                             stdio_home):
    result, progress = example_call
    assert not result.isError, result.content
    for node in ("call_tool", "run_tools", "answer"):
        assert any(m.startswith(f"node {node} finished (") and m.endswith(" tokens)") for m in progress.messages), \
            progress.messages
    tool = next(t for t in (await example_session.list_tools()).tools if t.name == "example")
    jsonschema.validate(result.structuredContent, tool.outputSchema)
    output = ExampleOutput.model_validate(result.structuredContent)
    assert result.content[0].text == output.answer

    call = output.tool_calls[0]
    assert call.name == "calculate" and call.ok
    computed = json.loads(call.result)
    assert Fraction(computed["result"]) == exact(call.arguments["expression"])

    record = RunRecords(RuntimeSettings(home=stdio_home).records_path).get(result.meta["braid/thread_id"])
    assert record.status == "finished" and record.surface == "mcp"
    assert record.output["answer"] == output.answer


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_example_answer_is_the_same_as_in_process(example_call, smollm2_server, tmp_path):
    result, _ = example_call
    workflow = load_workflow("example", example_config(smollm2_server.base_url),
                             settings=RuntimeSettings(home=tmp_path / "braid-home"))
    in_process = await workflow.ainvoke(QUESTION)
    assert result.structuredContent["answer"] == in_process.output.answer


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_cancelled_example_call_is_recorded_cancelled_then_resumes(example_session, example_call, stdio_home):
    records = RunRecords(RuntimeSettings(home=stdio_home).records_path)
    progress = ProgressLog(when="node call_tool started")
    request_id = example_session._request_id  # the id call_tool's request gets (ids are sequential)
    call = asyncio.create_task(example_session.call_tool("example", {"text": QUESTION, "thread_id": "mcp-cancel"},
                                                         progress_callback=progress))
    await asyncio.wait_for(progress.hit.wait(), 60)
    await cancel_request(example_session, request_id)
    with pytest.raises(McpError, match="cancelled"):
        await call
    await wait_for_status(records, "mcp-cancel", "cancelled")
    assert not any("node answer" in m for m in progress.messages)

    resumed = await example_session.call_tool("example", {"thread_id": "mcp-cancel", "resume": True})
    assert not resumed.isError, resumed.content
    assert resumed.structuredContent["answer"] == example_call[0].structuredContent["answer"]
    record = records.get("mcp-cancel")
    assert record.status == "finished" and record.attempts == 2
