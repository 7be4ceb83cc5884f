"""MCP surface of the agents runtime (`braid mcp serve agents`): each workflow is a tool.

- input schema: the workflow's input model, plus `thread_id` (names the run, or the run to resume) and `resume`;
- `outputSchema`: the workflow's output model; the structured result is the output, dumped;
- a progress notification when the run starts, per node started and finished, and per progress report;
- files of the output: embedded resources (up to EMBED_LIMIT bytes) or links to
  `braid://runs/{thread_id}/files/{name}`, which `resources/read` serves;
- cancellation (`notifications/cancelled`): the SDK cancels the handler's scope, the runner sees the
  CancelledError, stops the run and records it as `cancelled`.
"""
from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterable, Mapping
from contextlib import aclosing
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ResourceError
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.types import (BlobResourceContents, CallToolResult, ContentBlock, EmbeddedResource, ResourceLink,
                       ResourceTemplate, TextContent, TextResourceContents, Tool)
from pydantic import AnyUrl, BaseModel, ConfigDict, Field, ValidationError, create_model

from braid.tools._serving import ServeOptions, new_fastmcp

from ..runtime.config import ConfigError, RuntimeSettings
from ..runtime.errors import WorkflowError
from ..runtime.events import NodeFinished, NodeStarted, Progress, RunEvent, RunFinished, RunResult, RunStarted
from ..runtime.io import Artifact, InputError
from ..runtime.records import RunRecords
from ..runtime.registry import workflow_names
from ..runtime.runner import Workflow, load_workflow
from ..runtime.usage import usage_by_role_dicts

__all__ = ["EMBED_LIMIT", "RunControl", "WorkflowServer", "build_server", "file_uri", "progress_message"]

logger = logging.getLogger(__name__)

EMBED_LIMIT = 1 << 20
"""Files up to this many bytes are embedded in the result; larger ones are resource links."""

FILES_TEMPLATE = "braid://runs/{thread_id}/files/{name}"
_FILE_URI = re.compile(r"^braid://runs/(?P<thread_id>[^/]+)/files/(?P<name>[^/]+)$")
_TEXT_TYPES = {"application/json", "application/xml", "application/javascript", "image/svg+xml"}
META = "braid/"
"""Prefix of the run's facts in a result's `_meta` (thread id, status, usage)."""


class RunControl(BaseModel):
    """Tool arguments about the run itself, next to the workflow's own inputs."""

    model_config = ConfigDict(extra="forbid")

    thread_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
                                  description="Names the run (default: a new id); with `resume`, the run to continue.")
    resume: bool = Field(False, description="Continue the run `thread_id` (failed, cancelled or interrupted) from its "
                                            "last checkpoint; the other inputs are then ignored.")


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())


def workflow_tool(workflow: Workflow) -> Tool:
    spec = workflow.spec
    clash = set(RunControl.model_fields) & set(spec.input_model.model_fields)
    if clash:
        raise ValueError(f"workflow {spec.name!r}: input fields {sorted(clash)} clash with the MCP tool's own arguments")
    arguments = create_model(f"{spec.input_model.__name__}Arguments", __base__=spec.input_model,
                             **{name: (field.annotation, field) for name, field in RunControl.model_fields.items()})
    return Tool(name=spec.name, title=f"Braid workflow {spec.name}", description=spec.summary,
                inputSchema=arguments.model_json_schema(), outputSchema=spec.output_model.model_json_schema())


def parse_arguments(workflow: Workflow, arguments: Mapping[str, Any]) -> tuple[RunControl, Any]:
    """(run control, the workflow's input); the input is None when the run is resumed."""
    inputs = dict(arguments)
    try:
        control = RunControl.model_validate({k: inputs.pop(k) for k in RunControl.model_fields if k in inputs})
    except ValidationError as exc:
        raise InputError(f"invalid input: {_problems(exc)}") from None
    if control.resume:
        if control.thread_id is None:
            raise InputError("`resume` needs the `thread_id` of the run to continue")
        return control, None
    return control, workflow.make_input(inputs)


def progress_message(event: RunEvent) -> str | None:
    match event:
        case RunStarted():
            return (f"run {event.thread_id} {'resumed' if event.resumed else 'started'} "
                    f"({event.workflow}, attempt {event.attempt})")
        case NodeStarted():
            return f"node {event.node} started"
        case NodeFinished(error=None):
            tokens = sum(usage.total_tokens for usage in event.usage.values())
            return f"node {event.node} finished ({event.seconds:.1f} s, {tokens} tokens)"
        case NodeFinished():
            return f"node {event.node} failed after {event.seconds:.1f} s: {event.error}"
        case Progress():
            return f"node {event.node}: {json.dumps(event.data, default=str, ensure_ascii=False)}"
    return None


def file_uri(thread_id: str, name: str) -> str:
    return FILES_TEMPLATE.format(thread_id=thread_id, name=quote(name, safe=""))


def _is_text(media_type: str) -> bool:
    return media_type.startswith("text/") or media_type in _TEXT_TYPES


def file_block(artifact: Artifact, thread_id: str) -> ContentBlock:
    """A small file embedded (text as text, anything else base64), a large one as a link to read."""
    uri = file_uri(thread_id, artifact.name)
    path = Path(artifact.path)
    if not path.is_file():
        return TextContent(type="text", text=f"file {artifact.name} is missing: {path} no longer exists")
    size = path.stat().st_size
    if size > EMBED_LIMIT:
        return ResourceLink(type="resource_link", uri=uri, name=artifact.name, mimeType=artifact.media_type, size=size,
                            description=f"{size} bytes: read it with resources/read")
    data = path.read_bytes()
    if _is_text(artifact.media_type):
        try:
            return EmbeddedResource(type="resource", resource=TextResourceContents(
                uri=uri, mimeType=artifact.media_type, text=data.decode("utf-8")))
        except UnicodeDecodeError:
            pass
    return EmbeddedResource(type="resource", resource=BlobResourceContents(
        uri=uri, mimeType=artifact.media_type, blob=base64.b64encode(data).decode("ascii")))


def run_meta(result: RunResult) -> dict[str, Any]:
    return {f"{META}thread_id": result.thread_id, f"{META}status": result.status,
            f"{META}elapsed_s": round(result.elapsed_s, 3), f"{META}usage": result.usage.as_dict(),
            f"{META}usage_by_role": usage_by_role_dicts(result.usage_by_role)}


def success_result(result: RunResult) -> CallToolResult:
    output = result.output
    assert output is not None, "a finished run has an output"
    content: list[ContentBlock] = [TextContent(type="text", text=output.answer),
                                   *(file_block(artifact, result.thread_id) for artifact in output.files)]
    return CallToolResult(content=content, structuredContent=output.model_dump(mode="json"), isError=False,
                          _meta=run_meta(result))


def error_result(message: str, thread_id: str | None = None) -> CallToolResult:
    meta = {f"{META}thread_id": thread_id} if thread_id else None
    return CallToolResult(content=[TextContent(type="text", text=message)], isError=True, _meta=meta)


class WorkflowServer(FastMCP):
    """FastMCP whose tools are workflows. Tool listing and calls are answered here rather than by FastMCP's
    function tools: a workflow's schemas come from its models (not a signature), and its result carries
    structured content, files and the run's metadata together."""

    def __init__(self, workflows: Mapping[str, Workflow], runtime: RuntimeSettings, **fastmcp: Any):
        self._workflows = dict(workflows)
        self._workflow_tools = {name: workflow_tool(workflow) for name, workflow in self._workflows.items()}
        self._records = RunRecords(runtime.records_path)
        super().__init__(**fastmcp)

    async def list_tools(self) -> list[Tool]:
        return [*await super().list_tools(), *self._workflow_tools.values()]

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        workflow = self._workflows.get(name)
        if workflow is None:
            return await super().call_tool(name, arguments)
        return await self._run(workflow, arguments, self.get_context())

    async def _run(self, workflow: Workflow, arguments: Mapping[str, Any], ctx: Context) -> CallToolResult:
        thread_id: str | None = None
        step = 0
        result: RunResult | None = None
        try:
            control, inputs = parse_arguments(workflow, arguments)
            thread_id = control.thread_id
            # aclosing: a call cancelled between events (e.g. while a progress notification is sent) closes
            # the run here, in this task: its MCP sessions' cancel scopes must exit in the task that entered
            # them, and the record says `cancelled` at once rather than when the garbage collector gets to it.
            async with aclosing(workflow.astream(inputs, thread_id=thread_id, resume=control.resume,
                                                 surface="mcp")) as events:
                async for event in events:
                    if isinstance(event, RunStarted):
                        thread_id = event.thread_id
                    elif isinstance(event, RunFinished):
                        result = event.result
                    if (message := progress_message(event)) is not None:
                        step += 1
                        await ctx.report_progress(step, None, message)
        except (InputError, WorkflowError) as exc:  # RunFailed and ServiceUnreachable say what to fix
            return error_result(str(exc), thread_id)
        except Exception as exc:  # noqa: BLE001 - a bug in a workflow must not take the server down
            logger.exception("workflow %s failed", workflow.name)
            return error_result(f"the {workflow.name} run failed: {type(exc).__name__}: {exc}", thread_id)
        if result is None or result.output is None:
            return error_result(f"the {workflow.name} run ended without an output (status "
                                f"{result.status if result else 'unknown'})", thread_id)
        return success_result(result)

    async def list_resource_templates(self) -> list[ResourceTemplate]:
        return [*await super().list_resource_templates(),
                ResourceTemplate(uriTemplate=FILES_TEMPLATE, name="run-files", title="Files of a workflow run",
                                 description="A file a run produced (named in its result's `files`).")]

    async def read_resource(self, uri: AnyUrl | str) -> Iterable[ReadResourceContents]:
        match = _FILE_URI.match(str(uri))
        if match is None:
            return await super().read_resource(uri)
        thread_id, name = match["thread_id"], unquote(match["name"])
        # Only files a finished run declared in its output can be read, by their recorded path.
        record = self._records.get(thread_id)
        if record is None:
            raise ResourceError(f"no run {thread_id!r}: the URI names a run this server's BRAID_HOME does not know")
        files = [Artifact.model_validate(f) for f in (record.output or {}).get("files", [])]
        artifact = next((f for f in files if f.name == name), None)
        if artifact is None:
            raise ResourceError(f"run {thread_id} has no file {name!r}; its files: {[f.name for f in files]}")
        try:
            data = artifact.read()
        except OSError as exc:
            raise ResourceError(f"file {name!r} of run {thread_id} cannot be read: {exc}") from None
        return [ReadResourceContents(content=data, mime_type=artifact.media_type)]


def build_server(options: ServeOptions) -> WorkflowServer:
    """One tool per workflow, each with its `--workflow-config` file or its defaults."""
    names = workflow_names()
    unknown = sorted(set(options.workflow_configs) - set(names))
    if unknown:
        raise ValueError(f"--workflow-config names unknown workflow(s) {unknown}; available: {', '.join(names)}")
    runtime = RuntimeSettings.from_env()
    workflows: dict[str, Workflow] = {}
    for name in names:
        path = options.workflow_configs.get(name)
        try:
            workflows[name] = load_workflow(name, path, settings=runtime)
        except ConfigError as exc:
            raise ValueError(f"workflow {name!r} ({path or 'its default config'}): {exc}") from None
    instructions = (
        f"Each tool runs one Braid workflow ({', '.join(names)}). Pass `thread_id` to name a run; `resume: true` with "
        "the thread_id of a failed or cancelled run continues it from its last checkpoint. Progress notifications "
        "report each node; cancelling the request stops the run. The structured result follows the tool's "
        "outputSchema; files come as embedded resources or links to read.")
    return new_fastmcp("agents", instructions, options, factory=lambda **kw: WorkflowServer(workflows, runtime, **kw))
