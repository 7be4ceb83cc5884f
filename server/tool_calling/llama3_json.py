"""Llama 3.x JSON tool calls: ``{"name": ..., "parameters": {...}}``, several joined by ``; ``.

Reading mirrors vLLM's ``llama3_json`` parser: an optional ``<|python_tag|>`` first,
``"arguments"`` accepted for ``"parameters"``. A call starts at ``<|python_tag|>`` or at
``{"name"`` (the trigger xgrammar's builtin ``llama`` structural tag uses, so constrained free
text never contains it). Prompt side after vLLM's ``tool_chat_template_llama3.1_json.jinja``;
results go back as ``{"output": ...}`` in a user turn, since plain templates have no ``ipython`` role.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

from .base import ToolCallFormat
from .syntax import CallSyntax
from .types import ToolSpec

_PYTHON_TAG = "<|python_tag|>"
_INSTRUCTIONS_HEAD = (
    "Given the following functions, please respond with a JSON for a function call with its proper "
    "arguments that best answers the given prompt.\n\n"
    'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}. '
    'To call several functions, separate the JSON objects with "; ". Do not use variables.\n\n'
)


class Llama3JsonFormat(ToolCallFormat):
    name = "llama3_json"
    syntax = CallSyntax(openers=(_PYTHON_TAG,), inline_openers=('{"name"',), separator=";",
                        argument_keys=("parameters", "arguments"))
    trigger = '{"name"'
    separator = "; "
    free_text_excludes = (_PYTHON_TAG,)

    def call_begin(self, tool_name: str) -> str:
        return '{"name": ' + json.dumps(tool_name, ensure_ascii=False) + ', "parameters": '

    def call_end(self) -> str:
        return "}"

    def tools_instructions(self, tools: Sequence[ToolSpec]) -> str:
        return _INSTRUCTIONS_HEAD + "".join(
            json.dumps(tool.to_openai(), ensure_ascii=False, indent=4) + "\n\n" for tool in tools)

    def render_results(self, results: Sequence[str]) -> str:
        return "\n".join(json.dumps({"output": result}, ensure_ascii=False) for result in results)
