"""A LangGraph agent loop (model node + ToolNode) on Braid's server with the bundled SmolLM2, whose
tool is Braid's MCP calculator loaded through `langchain-mcp-adapters` (stdio).

The first model turn must call a tool (`tool_choice="required"`, one call); after a tool result the
model answers without tools, so the loop ends. Asserted: valid arguments for the MCP tool's input
schema, the calculator's result sent back to the model, and a final answer without calls. Answer
quality is not asserted (a 135M model is weak).
"""
from __future__ import annotations

import json
import os

import httpx
import jsonschema
import platformdirs
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from braid.clients.mcp_tools import load_braid_tools, stdio_connection
from braid.tools.calculator import CalculationError, calculate
from arithmetic_reference import expected_result
from server_process import start_server, stop_server

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
QUESTION = "Use the calculator to compute 37 * 91."


@pytest.fixture(scope="module")
def smollm2_url(tmp_path_factory):
    # The converted model is cached per machine (BRAID_HOME or the user cache), as for users.
    home = os.environ.get("BRAID_HOME") or platformdirs.user_cache_dir("braid")
    handle = start_server({"home": home, "models": [{"id": MODEL, "source": MODEL, "engine": "transformers",
                                                     "dtype": "float32"}]},
                          tmp_path_factory.mktemp("langgraph-smollm2"), timeout=420)
    yield handle.base_url
    stop_server(handle)


class RequestLog:
    """The JSON bodies ChatOpenAI sends to Braid, as sent."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []

    async def __call__(self, request: httpx.Request) -> None:
        if request.url.path.endswith("/chat/completions"):
            self.bodies.append(json.loads(request.content))


def build_agent(llm: ChatOpenAI, tools):
    must_call = llm.bind_tools(tools, tool_choice="required", parallel_tool_calls=False)
    answer = llm.bind(max_tokens=16)

    async def agent(state: MessagesState) -> dict:
        has_result = isinstance(state["messages"][-1], ToolMessage)
        model = answer if has_result else must_call
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile()


def text_of(message: ToolMessage) -> str:
    if isinstance(message.content, str):
        return message.content
    return "".join(block.get("text", "") for block in message.content if isinstance(block, dict))


async def test_agent_calls_the_mcp_calculator_and_ends(smollm2_url):
    tools = await load_braid_tools({"calculator": stdio_connection("calculator")})
    (calculator,) = [t for t in tools if t.name == "calculate"]
    log = RequestLog()
    llm = ChatOpenAI(base_url=smollm2_url, api_key="none", model=MODEL, temperature=0, max_tokens=96,
                     max_retries=0, timeout=120, http_async_client=httpx.AsyncClient(event_hooks={"request": [log]}))

    final = await build_agent(llm, [calculator]).ainvoke({"messages": [HumanMessage(QUESTION)]},
                                                         {"recursion_limit": 6})
    messages = final["messages"]
    assert [type(m) for m in messages] == [HumanMessage, AIMessage, ToolMessage, AIMessage]
    _, called, result, answer = messages

    (call,) = called.tool_calls
    assert call["name"] == "calculate" and not called.invalid_tool_calls
    jsonschema.Draft202012Validator(calculator.args_schema).validate(call["args"])

    assert result.tool_call_id == call["id"]
    want = expected_result(call["args"]["expression"])
    if want is not None:
        assert result.status == "success"
        assert json.loads(text_of(result))["result"] == want
    else:  # not plain arithmetic: the calculator's own verdict, whatever it is
        try:
            assert json.loads(text_of(result))["result"] == calculate(**call["args"]).result
        except CalculationError as err:
            assert result.status == "error" and str(err) in text_of(result)

    first, last = log.bodies
    assert first["tool_choice"] == "required" and first["tools"][0]["function"]["name"] == "calculate"
    sent_calls = [m for m in last["messages"] if m["role"] == "assistant" and m.get("tool_calls")]
    assert [c["id"] for m in sent_calls for c in m["tool_calls"]] == [call["id"]]
    (sent_result,) = [m for m in last["messages"] if m["role"] == "tool"]
    assert sent_result["tool_call_id"] == call["id"]
    sent_text = sent_result["content"] if isinstance(sent_result["content"], str) else "".join(
        block["text"] for block in sent_result["content"])
    assert sent_text == text_of(result)

    assert not answer.tool_calls
    assert answer.response_metadata["finish_reason"] in ("stop", "length")
    assert answer.usage_metadata["input_tokens"] > 0
