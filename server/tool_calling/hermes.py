"""Hermes / Qwen2.5 tool calls: ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``.

The prompt side is Qwen2.5's chat template word for word: tools as JSON lines inside
``<tools></tools>`` in the system message, results as ``<tool_response>`` blocks in a user turn.
Reading mirrors vLLM's ``hermes`` tool parser (a call is the JSON between the tags).
"""
from __future__ import annotations

import json
from collections.abc import Sequence

from .base import ToolCallFormat
from .syntax import CallSyntax
from .types import ToolSpec

_INSTRUCTIONS_HEAD = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
_INSTRUCTIONS_TAIL = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)


class HermesFormat(ToolCallFormat):
    name = "hermes"
    syntax = CallSyntax(openers=("<tool_call>",), closer="</tool_call>", argument_keys=("arguments",))
    trigger = "<tool_call>"
    separator = "\n"

    def call_begin(self, tool_name: str) -> str:
        return '<tool_call>\n{"name": ' + json.dumps(tool_name, ensure_ascii=False) + ', "arguments": '

    def call_end(self) -> str:
        return "}\n</tool_call>"

    def tools_instructions(self, tools: Sequence[ToolSpec]) -> str:
        lines = "".join("\n" + json.dumps(tool.to_openai(), ensure_ascii=False) for tool in tools)
        return _INSTRUCTIONS_HEAD + lines + _INSTRUCTIONS_TAIL

    def render_results(self, results: Sequence[str]) -> str:
        return "\n".join(f"<tool_response>\n{result}\n</tool_response>" for result in results)
