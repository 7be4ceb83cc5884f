"""Running a workflow: load it by name with a config, then `invoke` / `stream` / `astream`, or
`resume` an interrupted run from its last checkpoint. Every surface runs workflows through this."""
from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, aclosing
from pathlib import Path
from typing import Any

import httpx
import openai
from langchain_core.messages import AIMessageChunk

from .checkpoint import open_checkpointer
from .config import RuntimeSettings, WorkflowConfig
from .context import RunContext
from .errors import RunNotFound, ServiceUnreachable, WorkflowError
from .events import NodeFinished, NodeStarted, Progress, RunEvent, RunFinished, RunResult, RunStarted, TokenDelta
from .io import InputError, WorkflowInput
from .records import RunRecords
from .registry import WorkflowSpec, get_spec
from .services import open_tools, resolve_roles
from .meter import UsageMeter
from .usage import Usage

__all__ = ["RunFailed", "Workflow", "load_workflow"]


class RunFailed(WorkflowError):
    def __init__(self, thread_id: str, message: str, resumable: bool = True):
        hint = f" (resume it with `braid run ... --thread {thread_id} --resume` once fixed)" if resumable else ""
        super().__init__(f"run {thread_id} failed: {message}{hint}")
        self.thread_id, self.reason, self.resumable = thread_id, message, resumable


def _leaf(group: BaseExceptionGroup) -> BaseException:
    """The error a caller should see from the exception groups MCP sessions' task groups wrap it in."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(reversed(exc.exceptions))
        else:
            leaves.append(exc)
    for kind in (WorkflowError, InputError, asyncio.CancelledError):
        for leaf in leaves:
            if isinstance(leaf, kind):
                return leaf
    return leaves[0] if leaves else group


def load_workflow(name: str, config: Any = None, *, settings: RuntimeSettings | None = None,
                  overrides: dict[str, Any] | None = None) -> "Workflow":
    """The workflow registered as `name`, with `config` (dict, file path, model or None = defaults)."""
    spec = get_spec(name)
    return Workflow(spec, spec.config_model.load(config, overrides), settings or RuntimeSettings.from_env())


def _failure(exc: BaseException) -> BaseException:
    """Errors of a model call that mean its server is gone, named by URL."""
    if isinstance(exc, openai.APIConnectionError):
        url = str(exc.request.url) if getattr(exc, "request", None) is not None else "its base_url"
        return ServiceUnreachable("the model server", url, f"{type(exc).__name__}: {exc}; is `braid serve` running?")
    return exc


REDACTED = "<redacted>"


def _redacted(config: WorkflowConfig) -> dict[str, Any]:
    """The config as recorded: API keys are not written to run records."""
    data = config.model_dump(mode="json")
    for role in data.get("roles", {}).values():
        if role.get("api_key"):
            role["api_key"] = REDACTED
    return data


def _with_keys(recorded: WorkflowConfig, current: WorkflowConfig) -> WorkflowConfig:
    """A recorded config with each redacted key taken from the caller's config (else env BRAID_API_KEY)."""
    roles = {name: role.model_copy(update={"api_key": current.role(name).api_key})
             if role.api_key == REDACTED else role for name, role in recorded.roles.items()}
    return recorded.model_copy(update={"roles": roles})


class Workflow:
    def __init__(self, spec: WorkflowSpec, config: WorkflowConfig, settings: RuntimeSettings):
        self.spec, self.config, self.settings = spec, config, settings
        self.records = RunRecords(settings.records_path)

    @property
    def name(self) -> str:
        return self.spec.name

    def make_input(self, value: Any) -> WorkflowInput:
        model = self.spec.input_model
        if isinstance(value, model):
            value.check()
            return value
        if isinstance(value, str):
            return model.from_text(value)
        if isinstance(value, dict):
            return model.from_mapping(value)
        if isinstance(value, WorkflowInput):
            return model.from_mapping(value.model_dump())
        raise TypeError(f"a {self.name} input is a str, a dict or a {model.__name__}, not {type(value).__name__}")

    async def astream(self, value: Any = None, *, thread_id: str | None = None, resume: bool = False,
                      surface: str = "python", tokens: bool = False) -> AsyncIterator[RunEvent]:
        """Runs (or with `resume`, continues) one run, yielding its events; the last is RunFinished.

        A run that fails raises `RunFailed` (or `ServiceUnreachable`) after its record is written.
        """
        config = self.config
        if resume:
            if thread_id is None:
                raise ValueError("resume needs the thread id of the run to continue")
            record = self.records.get(thread_id)
            if record is not None:
                if record.workflow != self.name:
                    raise WorkflowError(f"run {thread_id} is a {record.workflow!r} run, not {self.name!r}")
                if record.status == "finished":  # its output is recorded: nothing to start or open
                    yield RunFinished(self._result_of_record(thread_id))
                    return
                inputs = self.spec.input_model.model_validate(record.input)
                config = _with_keys(self.spec.config_model.model_validate(record.config), self.config)
            else:  # started on another worker sharing the checkpointer: the state is all it needs
                inputs = self.spec.input_model.model_construct()
        else:
            inputs = self.make_input(value)
            thread_id = thread_id or uuid.uuid4().hex
            if self.records.get(thread_id) is not None:
                raise WorkflowError(f"a run with thread id {thread_id!r} exists: resume it, or use a new id")
        try:
            # aclosing: a caller that stops early closes the run here, in this task, where its MCP
            # sessions were opened (their cancel scopes must exit in the task that entered them).
            async with aclosing(self._run(inputs, config, thread_id, resume, surface, tokens)) as events:
                async for event in events:
                    yield event
        except BaseExceptionGroup as group:
            raise _leaf(group) from None

    async def _run(self, inputs: WorkflowInput, config: WorkflowConfig, thread_id: str, resume: bool,
                   surface: str, tokens: bool) -> AsyncIterator[RunEvent]:
        started = time.perf_counter()
        meter = UsageMeter()
        async with AsyncExitStack() as stack:
            config = await resolve_roles(config, self.spec.roles)
            servers = await open_tools(stack, config.tools, Path(self.settings.home))
            saver = await stack.enter_async_context(open_checkpointer(self.settings.checkpoint_url))
            graph = self.spec.build(config).compile(checkpointer=saver)
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=None))  # per-request timeouts: roles'
            context = RunContext(config, thread_id, self.settings.files_dir(thread_id), meter, servers.tools, http,
                                 servers.sessions)
            run_config = {"configurable": {"thread_id": thread_id}, "recursion_limit": config.recursion_limit}
            graph_input: dict[str, Any] | None = None if resume else self.spec.start(inputs, config)
            if resume:
                state = await graph.aget_state(run_config)
                if not state.values:
                    raise RunNotFound(thread_id)
            attempt = self.records.start_run(thread_id, self.name, _redacted(config),
                                             inputs.model_dump(mode="json"), surface)
            yield RunStarted(thread_id, self.name, attempt, resume)
            status, error, output = "failed", None, None
            open_nodes: dict[str, tuple[int, float, str]] = {}
            modes = ["tasks", "custom", *(["messages"] if tokens else [])]
            try:
                # durability="sync": a step's checkpoint is on disk before the next step starts, so a
                # kill loses at most the step in flight.
                async for mode, chunk in graph.astream(graph_input, run_config, context=context, stream_mode=modes,
                                                       durability="sync"):
                    if mode == "tasks" and "result" not in chunk:
                        row = self.records.node_started(thread_id, attempt, chunk["name"], chunk["id"])
                        open_nodes[chunk["id"]] = (row, time.perf_counter(), chunk["name"])
                        yield NodeStarted(chunk["name"], chunk["id"], time.perf_counter() - started)
                    elif mode == "tasks":
                        row, t0, node = open_nodes.pop(chunk["id"], (0, time.perf_counter(), chunk["name"]))
                        usage = meter.task_usage(chunk["id"])
                        failed = str(chunk["error"]) if chunk.get("error") else None
                        self.records.node_finished(row, time.perf_counter() - t0, usage, failed)
                        yield NodeFinished(node, chunk["id"], time.perf_counter() - t0, usage, failed,
                                           chunk.get("result"))
                    elif mode == "custom" and isinstance(chunk, dict) and "braid_progress" in chunk:
                        yield Progress(chunk.get("node", ""), chunk["braid_progress"])
                    elif mode == "messages":
                        message, meta = chunk
                        if isinstance(message, AIMessageChunk) and isinstance(message.content, str) and message.content:
                            yield TokenDelta(meta.get("langgraph_node", ""), meta.get("braid_role", ""),
                                             message.content)
                for row, _, _ in open_nodes.values():  # announced, then satisfied by writes saved before a stop
                    self.records.node_restored(row)
                state = await graph.aget_state(run_config)
                output = self.spec.output(state.values, context)
                status = "finished"
            except (asyncio.CancelledError, GeneratorExit):
                status, error = "cancelled", "cancelled by the caller"
                raise
            except Exception as exc:  # noqa: BLE001 - recorded, then raised as what it means
                cause = _failure(exc)
                error = str(cause)
                if isinstance(cause, ServiceUnreachable):
                    raise cause from exc
                if isinstance(exc, openai.BadRequestError):  # the same request would be refused again
                    raise RunFailed(thread_id, f"the model server refused a request: {exc.message}",
                                    resumable=False) from exc
                raise RunFailed(thread_id, f"{type(exc).__name__}: {exc}") from exc
            finally:
                elapsed = time.perf_counter() - started
                self.records.finish_run(thread_id, status, elapsed, meter.total(), meter.by_role(),
                                        output.model_dump(mode="json") if output is not None else None, error)
            yield RunFinished(RunResult(thread_id, self.name, status, output, meter.total(), meter.by_role(), elapsed,
                                        model_wall_s=meter.model_wall_s()))

    def _result_of_record(self, thread_id: str) -> RunResult:
        record = self.records.get(thread_id)
        output = self.spec.output_model.model_validate(record.output) if record.output else None
        return RunResult(thread_id, self.name, record.status, output, record.usage, record.usage_by_role,
                         record.elapsed_s, record.error)

    async def ainvoke(self, value: Any = None, **options: Any) -> RunResult:
        result = None
        async for event in self.astream(value, **options):
            if isinstance(event, RunFinished):
                result = event.result
        assert result is not None
        return result

    async def aresume(self, thread_id: str, **options: Any) -> RunResult:
        return await self.ainvoke(None, thread_id=thread_id, resume=True, **options)

    def invoke(self, value: Any = None, **options: Any) -> RunResult:
        return asyncio.run(self.ainvoke(value, **options))

    def resume(self, thread_id: str, **options: Any) -> RunResult:
        return asyncio.run(self.aresume(thread_id, **options))

    def stream(self, value: Any = None, **options: Any) -> Iterator[RunEvent]:
        """`astream` for synchronous callers: the run goes on in a worker thread's event loop."""
        events: queue.Queue = queue.Queue()
        done = object()

        async def pump() -> None:
            try:
                async for event in self.astream(value, **options):
                    events.put(event)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                events.put(exc)
            finally:
                events.put(done)

        worker = threading.Thread(target=lambda: asyncio.run(pump()), name=f"braid-{self.name}", daemon=True)
        worker.start()
        while (item := events.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
        worker.join()
