"""`example`: model -> tool call through MCP -> answer. Three nodes, proving the runtime end to end:

1. `call_tool`: the `assistant` role must call one of the configured MCP tools (`tool_choice:
   required`, one call), e.g. Braid's calculator;
2. `run_tools`: the call runs through the run's open MCP session;
3. `answer`: the same role answers from the tool's result, without tools.
"""
from __future__ import annotations

import json
import re
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from ..runtime.config import McpServer, WorkflowConfig
from ..runtime.context import RunContext
from ..runtime.io import WorkflowInput, WorkflowOutput
from ..runtime.registry import WorkflowSpec
from ..runtime.tool_calls import run_tool_calls, tool_message_text

__all__ = ["ExampleConfig", "ExampleOutput", "SPEC"]

ROLE = "assistant"


class ExampleConfig(WorkflowConfig):
    tools: dict[str, McpServer] = Field(default_factory=lambda: {"calculator": McpServer(braid="calculator")})
    system_prompt: str = "You are a helpful assistant. Use a tool to compute, then answer in one sentence."
    answer_max_tokens: int = Field(64, ge=1, description="Most tokens of the final answer.")


class ToolCallResult(BaseModel):
    name: str
    arguments: dict[str, Any]
    result: str
    ok: bool


class ExampleOutput(WorkflowOutput):
    tool_calls: list[ToolCallResult] = Field(default_factory=list, description="Every tool call and its result.")


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


async def call_tool(state: State, runtime: Runtime[RunContext]) -> dict:
    ctx = runtime.context
    model = ctx.model(ROLE).bind_tools(ctx.tools(), tool_choice="required", parallel_tool_calls=False)
    reply = await model.ainvoke(state["messages"])
    ctx.progress(step="tool chosen", tools=[call["name"] for call in reply.tool_calls])
    return {"messages": [reply]}


async def run_tools(state: State, runtime: Runtime[RunContext]) -> dict:
    results = await run_tool_calls(state["messages"][-1], runtime.context.tools())
    runtime.context.progress(step="tools ran", results=[tool_message_text(m) for m in results])
    return {"messages": results}


async def answer(state: State, runtime: Runtime[RunContext]) -> dict:
    ctx = runtime.context
    config: ExampleConfig = ctx.config  # type: ignore[assignment]
    reply = await ctx.model(ROLE).bind(max_tokens=config.answer_max_tokens).ainvoke(state["messages"])
    return {"messages": [reply]}


def build(config: ExampleConfig) -> StateGraph:
    graph = StateGraph(State, context_schema=RunContext)
    graph.add_node("call_tool", call_tool)
    graph.add_node("run_tools", run_tools)
    graph.add_node("answer", answer)
    graph.add_edge(START, "call_tool")
    graph.add_edge("call_tool", "run_tools")
    graph.add_edge("run_tools", "answer")
    graph.add_edge("answer", END)
    return graph


def start(inputs: WorkflowInput, config: ExampleConfig) -> dict:
    return {"messages": [SystemMessage(config.system_prompt), HumanMessage(inputs.text)]}


def output(state: dict, ctx: RunContext) -> ExampleOutput:
    messages = state["messages"]
    results = {m.tool_call_id: m for m in messages if isinstance(m, ToolMessage)}
    calls = [ToolCallResult(name=call["name"], arguments=call["args"], result=tool_message_text(results[call["id"]]),
                            ok=results[call["id"]].status != "error")
             for m in messages if isinstance(m, AIMessage) for call in m.tool_calls if call["id"] in results]
    final = messages[-1]
    return ExampleOutput(answer=final.content if isinstance(final.content, str) else json.dumps(final.content),
                         tool_calls=calls)


def is_correct(result: ExampleOutput, expected: Any) -> bool:
    """The expected value appears in a tool result or in the answer (as a whole number/word)."""
    want = re.escape(str(expected).strip())
    texts = [call.result for call in result.tool_calls] + [result.answer]
    return any(re.search(rf"(?<![\w.]){want}(?![\w.])", text) for text in texts)


SPEC = WorkflowSpec(name="example", summary="a model calls an MCP tool (the calculator by default), then answers",
                    build=build, start=start, output=output, config_model=ExampleConfig, output_model=ExampleOutput,
                    roles=(ROLE,), is_correct=is_correct)
