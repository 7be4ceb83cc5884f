"""Executing a model's tool calls on the run's MCP tools. A call of an unknown tool, with arguments
that do not parse or validate, or that fails in the tool, becomes an error ToolMessage the model
can read; it never crashes the run."""
from __future__ import annotations

import asyncio

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool

__all__ = ["run_tool_calls", "tool_message_text"]


def tool_message_text(message: ToolMessage) -> str:
    if isinstance(message.content, str):
        return message.content
    return "".join(block.get("text", "") if isinstance(block, dict) else str(block) for block in message.content)


async def _run_one(call: dict, tools: dict[str, BaseTool]) -> ToolMessage:
    tool = tools.get(call["name"])
    if tool is None:
        return ToolMessage(f"error: there is no tool named {call['name']!r}; tools: {', '.join(sorted(tools))}",
                           tool_call_id=call["id"], name=call["name"], status="error")
    try:
        result = await tool.ainvoke({**call, "type": "tool_call"})
    except Exception as exc:  # noqa: BLE001 - reported to the model
        return ToolMessage(f"error: {type(exc).__name__}: {exc}", tool_call_id=call["id"], name=call["name"],
                           status="error")
    if isinstance(result, ToolMessage):
        return result
    return ToolMessage(str(result), tool_call_id=call["id"], name=call["name"])


async def run_tool_calls(message: AIMessage, tools: list[BaseTool]) -> list[ToolMessage]:
    """One ToolMessage per call of `message` (valid calls run concurrently), in the calls' order."""
    by_name = {tool.name: tool for tool in tools}
    results = list(await asyncio.gather(*(_run_one(call, by_name) for call in message.tool_calls)))
    for bad in message.invalid_tool_calls:
        results.append(ToolMessage(f"error: the call could not be read ({bad.get('error') or 'invalid arguments'}): "
                                   f"{bad.get('args')!r}", tool_call_id=bad.get("id") or "invalid",
                                   name=bad.get("name") or "", status="error"))
    return results
