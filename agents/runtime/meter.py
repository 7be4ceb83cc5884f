"""The usage meter: a LangChain callback on every role's chat model that records token usage and model
time of each call, per node, per role and per LangGraph task, from the `usage` each OpenAI-compatible
response reports (LangChain's `usage_metadata`)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from .usage import Usage

__all__ = ["UsageMeter"]


def _usage_of(response: LLMResult) -> tuple[int, int]:
    prompt = completion = 0
    for generations in response.generations:
        for generation in generations:
            meta = getattr(getattr(generation, "message", None), "usage_metadata", None)
            if meta:
                prompt += meta.get("input_tokens", 0)
                completion += meta.get("output_tokens", 0)
    if not prompt and not completion and response.llm_output:
        usage = response.llm_output.get("token_usage") or {}
        prompt, completion = usage.get("prompt_tokens", 0) or 0, usage.get("completion_tokens", 0) or 0
    return prompt, completion


@dataclass
class UsageMeter(BaseCallbackHandler):
    """A LangChain callback on every role's chat model: usage keyed by (node, role)."""

    by_key: dict[tuple[str, str], Usage] = field(default_factory=dict)
    by_task: dict[str, dict[str, Usage]] = field(default_factory=dict)
    intervals: list[tuple[float, float]] = field(default_factory=list)
    """(start, end) of every model call, for the time any call was in flight."""
    """Per LangGraph task id (one node execution), usage per role."""
    _open: dict[UUID, tuple[str, str, str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__()

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list, *, run_id: UUID,
                            metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        metadata = metadata or {}
        namespace = str(metadata.get("langgraph_checkpoint_ns", ""))
        task = namespace.split("|")[0].partition(":")[2]
        self._open[run_id] = (str(metadata.get("langgraph_node", "")), str(metadata.get("braid_role", "")), task,
                              time.perf_counter())

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        self._close(run_id, response)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._close(run_id, None)

    def _close(self, run_id: UUID, response: LLMResult | None) -> None:
        node, role, task, started = self._open.pop(run_id, ("", "", "", time.perf_counter()))
        prompt, completion = _usage_of(response) if response is not None else (0, 0)
        ended = time.perf_counter()
        self.intervals.append((started, ended))
        call = Usage(prompt, completion, 1, ended - started)
        self.by_key.setdefault((node, role), Usage()).add(call)
        self.by_task.setdefault(task, {}).setdefault(role, Usage()).add(call)

    def total(self) -> Usage:
        out = Usage()
        for usage in self.by_key.values():
            out.add(usage)
        return out

    def model_wall_s(self) -> float:
        """Seconds during which at least one model call was in flight (parallel calls counted once)."""
        total, reach = 0.0, float("-inf")
        for start, end in sorted(self.intervals):
            if end > reach:
                total += end - max(start, reach)
                reach = end
        return total

    def by_role(self) -> dict[str, Usage]:
        out: dict[str, Usage] = {}
        for (_, role), usage in self.by_key.items():
            out.setdefault(role, Usage()).add(usage)
        return out

    def task_usage(self, task_id: str) -> dict[str, Usage]:
        return self.by_task.pop(task_id, {})
