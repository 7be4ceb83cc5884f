"""A LangGraph agent whose ToolNode really calls Braid's MCP servers (stdio and HTTP).

No tool-calling LLM runs in tests, so the agent node replays a scripted sequence of tool calls.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
from mcp_harness import http_server  # noqa: E402

from braid.clients.mcp_client import braid_server_command, connect_stdio  # noqa: E402
from braid.clients.mcp_tools import http_connection, load_braid_tools, stdio_connection, tools_from_session  # noqa: E402

SCRIPT = [
    ("calculate", {"expression": "2**10 + 0.5"}),
    ("memory_add", {"collection": "agent", "records": [{"text": "the answer is 1024.5", "labels": ["calc"]}]}),
    ("memory_search", {"collection": "agent", "query": "answer", "mode": "bm25", "k": 1}),
    ("calculate", {"expression": "import os"}),  # a bad call: the agent gets an error message back
]


def scripted_agent(state: MessagesState) -> dict:
    step = sum(isinstance(m, AIMessage) for m in state["messages"])
    if step == len(SCRIPT):
        return {"messages": [AIMessage(content="done")]}
    name, args = SCRIPT[step]
    return {"messages": [AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"call-{step}"}])]}


def build_graph(tools):
    graph = StateGraph(MessagesState)
    graph.add_node("agent", scripted_agent)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile()


def text_of(message: ToolMessage) -> str:
    if isinstance(message.content, str):
        return message.content
    return "".join(block.get("text", "") for block in message.content if isinstance(block, dict))


async def test_langgraph_tool_node_calls_mcp_servers(tmp_path):
    async with http_server("memory", "--store", str(tmp_path), "--embedder", "hashing") as memory_url:
        tools = await load_braid_tools({"calculator": stdio_connection("calculator"),
                                        "memory": http_connection(memory_url)})
        assert {"calculate", "memory_add", "memory_search"} <= {t.name for t in tools}
        final = await build_graph(tools).ainvoke({"messages": [HumanMessage("compute and remember")]})
    tool_messages = [m for m in final["messages"] if isinstance(m, ToolMessage)]
    assert [m.name for m in tool_messages] == [name for name, _ in SCRIPT]
    calc, added, found, bad = tool_messages
    assert json.loads(text_of(calc))["result"] == "2049/2"
    assert json.loads(text_of(added))["count"] == 1
    assert json.loads(text_of(found))["hits"][0]["text"] == "the answer is 1024.5"
    assert bad.status == "error" and "syntax error" in text_of(bad)
    assert final["messages"][-1].content == "done"


async def test_tools_bound_to_one_open_session():
    async with connect_stdio(*braid_server_command("calculator")) as session:
        (calculate,) = await tools_from_session(session, "calculator")
        assert "expression" in calculate.args
        content = await calculate.ainvoke({"expression": "1/3 + 1/6"})
        text = content if isinstance(content, str) else "".join(b.get("text", "") for b in content)
        assert json.loads(text)["result"] == "1/2"
