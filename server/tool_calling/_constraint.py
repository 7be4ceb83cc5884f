"""The structural tag that makes a model's calls valid: xgrammar's format, as vLLM also takes it.

The spec is ``{"type": "structural_tag", "format": {...}}``; xgrammar 0.2.8 compiles it with
``Grammar.from_structural_tag(spec)`` and vLLM 0.32 takes the same string as
``StructuredOutputsParams(structural_tag=spec)``. One ``tag`` per tool: the call's fixed text up
to its arguments (``begin``), the tool's parameters as a ``json_schema``, the rest (``end``).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from .types import ToolCallingError, ToolChoice, ToolSpec


class CallShape(Protocol):
    """What a format tells the constraint about its calls."""

    trigger: str
    """Text every call starts with and free text never contains (``<tool_call>``)."""
    separator: str
    """Text between calls when calls are forced."""
    free_text_excludes: tuple[str, ...]

    def call_begin(self, tool_name: str) -> str: ...

    def call_end(self) -> str: ...


def _arguments_schema(tool: ToolSpec) -> dict[str, Any]:
    # OpenAI arguments are always an object; a schema that leaves the type open would let any
    # JSON value through, which no parser reads as arguments.
    if "type" in tool.parameters:
        return tool.parameters
    return {"type": "object", **tool.parameters}


def _tag(shape: CallShape, tool: ToolSpec) -> dict[str, Any]:
    return {"type": "tag", "begin": shape.call_begin(tool.name),
            "content": {"type": "json_schema", "json_schema": _arguments_schema(tool)},
            "end": shape.call_end()}


def call_constraint(shape: CallShape, tools: Sequence[ToolSpec], choice: ToolChoice,
                    parallel: bool) -> tuple[str, str] | None:
    """``(kind, spec)`` for a ``StructuredOutputPlan``, or None when nothing is constrained.

    ``auto``: free text, and each call the trigger starts is a valid call to one of the tools.
    ``required``: one or more valid calls and nothing else; ``named``: calls to that tool only.
    ``parallel`` false: at most (auto) or exactly (required, named) one call, then the end.
    """
    if choice.mode == "none" or not tools:
        return None
    chosen = [tool for tool in tools if choice.mode != "named" or tool.name == choice.name]
    if not chosen:
        raise ToolCallingError(f"tool_choice names {choice.name!r}, which is not among the tools", "tool_choice")
    tags = [_tag(shape, tool) for tool in chosen]
    if choice.mode == "auto":
        body: dict[str, Any] = {"type": "triggered_tags", "triggers": [shape.trigger], "tags": tags,
                                "at_least_one": False, "stop_after_first": not parallel,
                                "excludes": list(shape.free_text_excludes)}
    else:
        body = {"type": "tags_with_separator", "tags": tags, "separator": shape.separator,
                "at_least_one": True, "stop_after_first": not parallel}
    return "structural_tag", json.dumps({"type": "structural_tag", "format": body}, ensure_ascii=False)
