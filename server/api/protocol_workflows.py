"""Braid's extension fields of a chat completion answered by a workflow (a model id from the server's
`workflows`): the run (`braid_run`) and its structured output (`braid_output`) on the response and
on the final chunk; while streaming, one `braid_event` per step of the run (README, "Agents over the
OpenAI API")."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from .protocol import ChatCompletionChunk, ChatCompletionResponse
from .protocol_tools import _unset

__all__ = ["NodeFinishedEvent", "NodeStartedEvent", "ProgressEvent", "RoleUsage", "RunFile", "RunInfo",
           "RunStartedEvent", "WorkflowChatChunk", "WorkflowChatCompletion", "WorkflowEvent"]


class RoleUsage(BaseModel):
    """The model calls of one role."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    calls: int
    model_s: float = Field(description="Seconds spent waiting for these calls.")


class RunFile(BaseModel):
    """A file the run produced, inline."""

    name: str
    media_type: str
    data_uri: str = Field(description="data:MEDIA_TYPE;base64,...")


class RunInfo(BaseModel):
    """`braid_run`: the run behind the answer (`braid runs show THREAD_ID`)."""

    thread_id: str
    workflow: str
    status: str
    elapsed_s: float
    model_s: float = Field(description="Seconds spent waiting for model calls (parallel calls each count).")
    model_calls: int
    usage_by_role: dict[str, RoleUsage]
    files: list[RunFile] = Field(default_factory=list)


class RunStartedEvent(BaseModel):
    type: Literal["run_started"] = "run_started"
    thread_id: str
    workflow: str
    attempt: int


class NodeStartedEvent(BaseModel):
    type: Literal["node_started"] = "node_started"
    node: str
    task_id: str
    elapsed_s: float = Field(description="Since the run started.")


class NodeFinishedEvent(BaseModel):
    type: Literal["node_finished"] = "node_finished"
    node: str
    task_id: str
    seconds: float
    usage: dict[str, RoleUsage] = Field(description="Per role, the model calls this node made.")
    error: str | None = Field(None, exclude_if=_unset)


class ProgressEvent(BaseModel):
    """What the workflow itself reports (round, scores, tool results...)."""

    type: Literal["progress"] = "progress"
    node: str
    data: dict[str, Any]


WorkflowEvent = Annotated[RunStartedEvent | NodeStartedEvent | NodeFinishedEvent | ProgressEvent,
                          Field(discriminator="type")]


class WorkflowChatCompletion(ChatCompletionResponse):
    braid_run: RunInfo
    braid_output: dict[str, Any] = Field(description="The workflow's output fields (answer included; files are "
                                                     "in braid_run.files).")


class WorkflowChatChunk(ChatCompletionChunk):
    braid_event: WorkflowEvent | None = Field(None, exclude_if=_unset)
    braid_run: RunInfo | None = Field(None, exclude_if=_unset, description="On the chunk with finish_reason.")
    braid_output: dict[str, Any] | None = Field(None, exclude_if=_unset, description="On the chunk with "
                                                                                      "finish_reason.")
