"""LangChain's `ChatOpenAI` against a real Braid server: `bind_tools`, streamed tool-call chunks,
tool results in the history, and `with_structured_output` (transformers engine, tiny random model).

The random model writes whatever the constraint allows, so every schema here is bounded (integers
with minimum/maximum, strings with a pattern) and whitespace-only tokens get a -100 `logit_bias`:
inside tool-call arguments whitespace is always allowed, and a random model can loop on it. The
tiny model has 2048 positions because the tool prompt is ~550 tokens of its 320-token vocabulary.
Arguments are checked with `jsonschema`, independently of the server's grammar.
"""
from __future__ import annotations

import asyncio
import json
from typing import Literal

import jsonschema
import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from server_process import start_server, stop_server
from tiny_models import build_tiny_llama

API_KEY = "lc-key"
MODEL = "tiny"
QUESTION = "What is the forecast for Paris for the next 3 days?"

FORECAST_PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "pattern": "^[a-z]{1,8}$"},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "days"],
    "additionalProperties": False,
}
FORECAST_TOOL = {"type": "function", "function": {
    "name": "get_forecast", "description": "Weather forecast for a city.", "parameters": FORECAST_PARAMETERS}}


class add(BaseModel):  # noqa: N801 - the class name is the tool's name
    """Add two small integers."""

    a: int = Field(ge=0, le=99)
    b: int = Field(ge=0, le=99)


class Forecast(BaseModel):
    """A weather forecast."""

    city: str = Field(pattern="^[a-z]{1,8}$")
    days: int = Field(ge=1, le=7)
    sky: Literal["sunny", "cloudy", "rain"]
    alerts: list[Literal["wind", "heat", "flood"]] = Field(max_length=2)


SCHEMAS = {"get_forecast": FORECAST_PARAMETERS, "add": add.model_json_schema()}


@pytest.fixture(scope="module")
def tiny_2k_dir(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama-2k"), max_position_embeddings=2048)


@pytest.fixture(scope="module")
def braid_server(tiny_2k_dir, tmp_path_factory):
    handle = start_server({"api_key": API_KEY, "models": [{
        "id": MODEL, "source": str(tiny_2k_dir), "engine": "transformers", "dtype": "float32",
        "disable_any_whitespace": True}]}, tmp_path_factory.mktemp("langchain-braid"))
    yield handle
    stop_server(handle)


@pytest.fixture(scope="module")
def llm(braid_server, tiny_2k_dir) -> ChatOpenAI:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_2k_dir)
    pieces = {i: tokenizer.decode([i]) for i in range(len(tokenizer))}
    no_whitespace = {i: -100 for i, text in pieces.items() if text and not text.strip()}
    assert no_whitespace, "the tiny tokenizer has whitespace-only tokens"
    return ChatOpenAI(base_url=braid_server.base_url, api_key=API_KEY, model=MODEL, temperature=0,
                      max_tokens=120, logit_bias=no_whitespace, max_retries=0, timeout=120)


def assert_valid_call(call: dict, names: set[str]) -> None:
    assert call["name"] in names
    assert call["id"].startswith("call_")
    jsonschema.Draft202012Validator(SCHEMAS[call["name"]]).validate(call["args"])


@pytest.mark.parametrize("tool_choice, names", [
    ("required", {"get_forecast", "add"}),
    ("get_forecast", {"get_forecast"}),
    ("add", {"add"}),
])
def test_bind_tools_forced_call_is_valid(llm, tool_choice, names):
    reply = llm.bind_tools([FORECAST_TOOL, add], tool_choice=tool_choice).invoke(QUESTION)
    assert isinstance(reply, AIMessage)
    assert reply.response_metadata["finish_reason"] == "tool_calls"
    assert reply.tool_calls and not reply.invalid_tool_calls
    for call in reply.tool_calls:
        assert_valid_call(call, names)


def test_strict_tools_are_accepted(llm):
    reply = llm.bind_tools([add], tool_choice="add", strict=True, parallel_tool_calls=False).invoke("1 + 2?")
    (call,) = reply.tool_calls
    assert_valid_call(call, {"add"})


@pytest.mark.parametrize("tool_choice", ["required", "get_forecast"])
def test_streamed_chunks_combine_to_the_same_call(llm, tool_choice):
    bound = llm.bind_tools([FORECAST_TOOL, add], tool_choice=tool_choice, parallel_tool_calls=False)
    whole = bound.invoke(QUESTION)
    chunks = list(bound.stream(QUESTION, stream_usage=True))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    pieces = [piece for c in chunks for piece in c.tool_call_chunks]
    assert len(pieces) > 1, "the arguments arrive in pieces"
    first, rest = pieces[0], pieces[1:]
    assert first["index"] == 0 and first["name"] and first["id"].startswith("call_")
    assert all(p["name"] is None and p["id"] is None and p["index"] == 0 for p in rest)
    combined = chunks[0]
    for chunk in chunks[1:]:
        combined += chunk
    (call,) = combined.tool_calls
    assert_valid_call(call, {"get_forecast", "add"})
    assert json.loads("".join(p["args"] for p in pieces)) == call["args"]
    assert [(c["name"], c["args"]) for c in whole.tool_calls] == [(call["name"], call["args"])]
    assert combined.response_metadata["finish_reason"] == "tool_calls"
    assert combined.usage_metadata["output_tokens"] > 0


def test_tool_results_in_the_history(llm):
    bound = llm.bind_tools([FORECAST_TOOL], tool_choice="required", parallel_tool_calls=False)
    asked = HumanMessage(QUESTION)
    called = bound.invoke([asked])
    (call,) = called.tool_calls
    result = ToolMessage(content='{"sky": "sunny"}', tool_call_id=call["id"])
    answer = llm.bind(max_tokens=8).invoke([asked, called, result])
    assert isinstance(answer, AIMessage) and not answer.tool_calls
    assert answer.response_metadata["finish_reason"] in ("stop", "length")
    # the rendered result is part of the prompt: more prompt tokens than without it
    without = llm.bind(max_tokens=8).invoke([asked, called])
    assert answer.usage_metadata["input_tokens"] > without.usage_metadata["input_tokens"]


def test_unknown_tool_call_id_is_a_400(llm):
    called = AIMessage(content="", tool_calls=[{"name": "get_forecast", "args": {"city": "rome", "days": 1},
                                                "id": "call_known"}])
    stray = ToolMessage(content="sunny", tool_call_id="call_unknown")
    with pytest.raises(openai.BadRequestError) as caught:
        llm.invoke([HumanMessage(QUESTION), called, stray])
    assert "tool_call_id" in str(caught.value)


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_structured_output_is_an_instance(llm, method):
    forecast = llm.with_structured_output(Forecast, method=method).invoke(QUESTION)
    assert isinstance(forecast, Forecast)
    jsonschema.Draft202012Validator(Forecast.model_json_schema()).validate(forecast.model_dump())


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
@pytest.mark.parametrize("strict", [None, True])
def test_structured_output_raw_has_no_parsing_error(llm, method, strict):
    out = llm.with_structured_output(Forecast, method=method, strict=strict, include_raw=True).invoke(QUESTION)
    assert out["parsing_error"] is None
    assert isinstance(out["parsed"], Forecast)
    raw = out["raw"]
    if method == "json_schema":
        assert raw.response_metadata["finish_reason"] == "stop"
        assert Forecast.model_validate_json(raw.content) == out["parsed"]
    else:
        (call,) = raw.tool_calls
        assert call["name"] == "Forecast" and Forecast.model_validate(call["args"]) == out["parsed"]


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")  # LangChain's, on parsed chunks
def test_structured_output_streams_to_an_instance(llm):
    outs = list(llm.with_structured_output(Forecast, method="json_schema").stream(QUESTION))
    assert outs and isinstance(outs[-1], Forecast)


async def test_concurrent_requests_keep_their_own_constraints(llm):
    """Batched in one engine step, each request is masked by its own grammar (or none)."""
    tools = [FORECAST_TOOL, add]
    runs = [llm.bind_tools(tools, tool_choice="add"), llm.bind_tools(tools, tool_choice="get_forecast"),
            llm.with_structured_output(Forecast, method="json_schema"), llm.bind(max_tokens=12)]
    alone = [await run.ainvoke(QUESTION) for run in runs]
    together = await asyncio.gather(*(run.ainvoke(QUESTION) for run in runs))
    (add_call,), (forecast_call,) = together[0].tool_calls, together[1].tool_calls
    assert_valid_call(add_call, {"add"})
    assert_valid_call(forecast_call, {"get_forecast"})
    assert isinstance(together[2], Forecast) and not together[3].tool_calls
    assert [comparable(o) for o in together] == [comparable(o) for o in alone]


def comparable(out):
    """What a reply says, without its ids."""
    if not isinstance(out, AIMessage):
        return out
    return [(c["name"], c["args"]) for c in out.tool_calls] if out.tool_calls else out.content
