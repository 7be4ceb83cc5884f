"""/v1/chat/completions on a workflow id: the conversation's last user message -> one run of the
workflow -> its final answer as the assistant message. Streamed: the run's steps as `braid_event`
chunks, then the answer as content deltas. `usage` sums every model call of the run.

Imported only by servers with `workflows` (it loads `braid.agents`).
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

from braid.agents.runtime.errors import ServiceUnreachable, WorkflowError
from braid.agents.runtime.events import NodeFinished, NodeStarted, Progress, RunEvent, RunResult, RunStarted, RunFinished
from braid.agents.runtime.io import Artifact, InputError
from braid.agents.runtime.usage import Usage

from ..models.config import Settings
from ..models.workflows import ServedWorkflow, load_workflows
from .errors import APIError, bad_request
from .protocol import (ChatChoice, ChatChunkChoice, ChatCompletionRequest, DeltaMessage, ModelCard, UsageInfo,
                       random_id)
from .protocol_workflows import (NodeFinishedEvent, NodeStartedEvent, ProgressEvent, RoleUsage, RunFile, RunInfo,
                                 RunStartedEvent, WorkflowChatChunk, WorkflowChatCompletion, WorkflowEvent)
from .sse import sse_events

__all__ = ["WorkflowServing"]


def _refusal(request: ChatCompletionRequest) -> tuple[str, str] | None:
    """(field, why) for a field that asks for what a workflow's answer cannot be. Sampling fields
    (temperature, top_p, max_tokens, seed, penalties, top_k, min_p) are not refused: the workflow's
    config sets its roles' sampling, and they are ignored."""
    checks = [
        ("n", request.n > 1, "a workflow gives one answer: send n=1"),
        ("tools", bool(request.tools), "a workflow calls its own tools (its MCP servers); send no tools"),
        ("tool_choice", request.tool_choice not in (None, "none", "auto"), "a workflow answers with text, "
                                                                             "never a tool call"),
        ("logprobs", request.logprobs, "a workflow's answer has no logprobs"),
        ("top_logprobs", request.top_logprobs is not None, "a workflow's answer has no logprobs"),
        ("response_format", request.response_format is not None and request.response_format.type != "text",
         "a workflow's answer is text; its structured output is in braid_output"),
        ("structured_outputs", request.structured_outputs is not None, "a workflow's answer is not constrained"),
        ("contrastive", request.contrastive is not None, "decoding methods go in the workflow's role config "
                                                         "(extra_body)"),
        ("steer", request.steer is not None, "decoding methods go in the workflow's role config (extra_body)"),
        ("logit_bias", bool(request.logit_bias), "token-level controls do not apply to a workflow"),
        ("stop", bool(request.stop), "a workflow's answer is not cut at stop strings"),
        ("stop_token_ids", bool(request.stop_token_ids), "token-level controls do not apply to a workflow"),
    ]
    return next(((name, why) for name, refused, why in checks if refused), None)


def api_error(exc: Exception) -> APIError:
    """What a run's failure is for an OpenAI client."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, InputError):
        return bad_request(str(exc), "messages")
    if isinstance(exc, ServiceUnreachable):
        return APIError(502, str(exc), "upstream_unreachable_error")
    if isinstance(exc, WorkflowError):
        return APIError(500, str(exc), "workflow_error")
    return APIError(500, f"the workflow run failed: {type(exc).__name__}: {exc}", "workflow_error")


class _RunTask:
    """One run in an asyncio task of its own, its events read through a queue: LangGraph and the MCP
    sessions enter and leave their scopes in that one task, whichever task reads the events (a
    streamed response is read by another task than the request's). `cancel` stops the run."""

    _END = object()

    def __init__(self, events: AsyncIterator[RunEvent]):
        self._queue: asyncio.Queue = asyncio.Queue()
        self._task = asyncio.create_task(self._pump(events))

    async def _pump(self, events: AsyncIterator[RunEvent]) -> None:
        try:
            async with contextlib.aclosing(events) as stream:
                async for event in stream:
                    self._queue.put_nowait(event)
        except Exception as exc:  # noqa: BLE001 - handed to the reader
            self._queue.put_nowait(exc)
            return
        self._queue.put_nowait(self._END)

    async def next(self) -> RunEvent | None:
        """The next event; None after the last; raises the run's failure."""
        item = await self._queue.get()
        if item is self._END:
            return None
        if isinstance(item, Exception):
            raise item
        return item

    def cancel(self) -> None:
        self._task.cancel()


def _role_usage(usage: dict[str, Usage]) -> dict[str, RoleUsage]:
    return {role: RoleUsage(**value.as_dict()) for role, value in usage.items()}


def wire_event(event: RunEvent) -> WorkflowEvent | None:
    """A run event as its `braid_event`; None for events not sent (the finish is the final chunk)."""
    if isinstance(event, RunStarted):
        return RunStartedEvent(thread_id=event.thread_id, workflow=event.workflow, attempt=event.attempt)
    if isinstance(event, NodeStarted):
        return NodeStartedEvent(node=event.node, task_id=event.task_id, elapsed_s=event.elapsed_s)
    if isinstance(event, NodeFinished):
        return NodeFinishedEvent(node=event.node, task_id=event.task_id, seconds=event.seconds,
                                 usage=_role_usage(event.usage), error=event.error)
    if isinstance(event, Progress):
        return ProgressEvent(node=event.node, data=json.loads(json.dumps(event.data, default=str)))
    return None


def _file(artifact: Artifact) -> RunFile:
    data = base64.b64encode(artifact.read()).decode("ascii")
    return RunFile(name=artifact.name, media_type=artifact.media_type,
                   data_uri=f"data:{artifact.media_type};base64,{data}")


def run_info(result: RunResult) -> RunInfo:
    files = [_file(a) for a in result.output.files] if result.output is not None else []
    return RunInfo(thread_id=result.thread_id, workflow=result.workflow, status=result.status,
                   elapsed_s=result.elapsed_s, model_s=result.usage.model_s, model_calls=result.usage.calls,
                   usage_by_role=_role_usage(result.usage_by_role), files=files)


def _output(result: RunResult) -> dict[str, Any]:
    return result.output.model_dump(mode="json", exclude={"files"}) if result.output is not None else {}


def _answer(result: RunResult) -> str:
    return result.output.answer if result.output is not None else ""


def _usage(result: RunResult) -> UsageInfo:
    usage = result.usage
    return UsageInfo(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                     total_tokens=usage.total_tokens)


async def _result(run: _RunTask, event: RunEvent | None) -> RunResult:
    """Reads the run to its end."""
    result = None
    while event is not None:
        if isinstance(event, RunFinished):
            result = event.result
        event = await run.next()
    if result is None:
        raise APIError(500, "the workflow run ended without a result", "workflow_error")
    return result


def answer_pieces(text: str) -> list[str]:
    """The answer as content deltas: one per word with the spaces before the next."""
    return [piece for piece in re.split(r"(?<=\s)(?=\S)", text) if piece]


class WorkflowServing:
    def __init__(self, settings: Settings):
        self._served: dict[str, ServedWorkflow] = load_workflows(settings)

    def serves(self, model: str) -> bool:
        return model in self._served

    def ids(self) -> list[str]:
        return list(self._served)

    def cards(self) -> list[ModelCard]:
        return [ModelCard(id=served.id, engine="workflow", workflow=served.workflow.name)
                for served in self._served.values()]

    async def create(self, request: ChatCompletionRequest) -> WorkflowChatCompletion | AsyncIterator[str]:
        refusal = _refusal(request)
        if refusal is not None:
            field, why = refusal
            raise bad_request(f"{field}: not supported on workflow {request.model!r} ({why})", field)
        workflow = self._served[request.model].workflow
        messages = [message.model_dump(exclude_none=True) for message in request.messages]
        try:
            inputs = workflow.spec.input_model.from_messages(messages)
        except InputError as exc:
            raise api_error(exc) from None
        run = _RunTask(workflow.astream(inputs, surface="openai"))
        try:  # a run that cannot start (a service down, a bad input) is an error status, streaming or not
            first = await run.next()
        except BaseException as exc:
            run.cancel()
            if isinstance(exc, Exception):
                raise api_error(exc) from exc
            raise
        if request.stream:
            stream = sse_events(self._chunks(request, run, first))
            weakref.finalize(stream, run.cancel)  # a stream dropped before it was read still ends its run
            return stream
        try:
            result = await _result(run, first)
        except Exception as exc:
            raise api_error(exc) from exc
        finally:
            run.cancel()
        return WorkflowChatCompletion(model=request.model, usage=_usage(result), braid_run=run_info(result),
                                      braid_output=_output(result),
                                      choices=[ChatChoice(index=0, message={"content": _answer(result)},
                                                          finish_reason="stop")])

    async def _chunks(self, request: ChatCompletionRequest, run: _RunTask,
                      event: RunEvent | None) -> AsyncIterator[WorkflowChatChunk]:
        response_id, created = random_id("chatcmpl"), int(time.time())

        def chunk(delta: DeltaMessage | None = None, finish: str | None = None, **extensions) -> WorkflowChatChunk:
            return WorkflowChatChunk(id=response_id, created=created, model=request.model,
                                     choices=[ChatChunkChoice(index=0, delta=delta or DeltaMessage(),
                                                              finish_reason=finish)], **extensions)

        try:
            yield chunk(DeltaMessage(role="assistant", content=""))
            result = None
            while event is not None:
                if isinstance(event, RunFinished):
                    result = event.result
                elif (wire := wire_event(event)) is not None:
                    yield chunk(braid_event=wire)
                event = await run.next()
            if result is None:
                raise APIError(500, "the workflow run ended without a result", "workflow_error")
            for piece in answer_pieces(_answer(result)):
                yield chunk(DeltaMessage(content=piece))
            yield chunk(finish="stop", braid_run=run_info(result), braid_output=_output(result))
            if request.stream_options and request.stream_options.include_usage:
                yield WorkflowChatChunk(id=response_id, created=created, model=request.model, choices=[],
                                        usage=_usage(result))
        except Exception as exc:
            raise api_error(exc) from exc
        finally:
            run.cancel()
