"""A request's ``tools`` and ``tool_choice``, checked and turned into `ToolSpec` / `ToolChoice`."""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .types import ToolCallingError, ToolChoice, ToolSpec

__all__ = ["parse_tools", "resolve_tool_choice"]

_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def parse_tools(tools: Sequence[Mapping[str, Any]] | None) -> tuple[ToolSpec, ...]:
    """OpenAI ``tools`` (``{"type": "function", "function": {name, description, parameters}}``)."""
    specs: list[ToolSpec] = []
    for i, tool in enumerate(tools or ()):
        if tool.get("type", "function") != "function":
            raise ToolCallingError(f"unsupported tool type {tool.get('type')!r}; only 'function'", f"tools[{i}].type")
        function = tool.get("function")
        if not isinstance(function, Mapping):
            raise ToolCallingError("a function tool needs a 'function' object", f"tools[{i}].function")
        name = function.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise ToolCallingError("a function name is 1-64 letters, digits, '_' or '-'", f"tools[{i}].function.name")
        parameters = function.get("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        elif not isinstance(parameters, Mapping):
            raise ToolCallingError("parameters must be a JSON schema object", f"tools[{i}].function.parameters")
        if any(spec.name == name for spec in specs):
            raise ToolCallingError(f"two tools are named {name!r}; tool names must be unique", "tools")
        specs.append(ToolSpec(name, function.get("description"), dict(parameters)))
    return tuple(specs)


def resolve_tool_choice(choice: str | Mapping[str, Any] | None, tools: Sequence[ToolSpec]) -> ToolChoice:
    """``none`` / ``auto`` / ``required`` / ``{"type": "function", "function": {"name": ...}}``.

    Unset means ``auto`` with tools and ``none`` without, as OpenAI does.
    """
    if choice is None:
        return ToolChoice("auto" if tools else "none")
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise ToolCallingError(f"tool_choice must be 'none', 'auto', 'required' or a named function, "
                                   f"not {choice!r}", "tool_choice")
        if choice == "required" and not tools:
            raise ToolCallingError("tool_choice 'required' needs at least one tool", "tool_choice")
        return ToolChoice(choice if tools else "none")
    function = choice.get("function") if choice.get("type") == "function" else None
    name = function.get("name") if isinstance(function, Mapping) else None
    if not isinstance(name, str):
        raise ToolCallingError('a named tool_choice is {"type": "function", "function": {"name": ...}}',
                               "tool_choice")
    if all(tool.name != name for tool in tools):
        raise ToolCallingError(f"tool_choice names {name!r}, which is not among the tools", "tool_choice")
    return ToolChoice("named", name)
