"""Tool calling through the official client, on a real server per engine.

Greedy decoding of the random tiny model fills any whitespace a grammar allows, and tool-call
arguments always allow it, so every request pushes whitespace-only tokens down with ``logit_bias``
(the grammar mask comes first, so whitespace the format itself needs still goes through). Calls are
checked with independent readers: ``json.loads`` and ``jsonschema`` against the tool's parameters.
"""
from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest

from served_settings import API_KEY
from tool_model import TOOLS_TEMPLATE, whitespace_bias

ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two digits.",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9},
                                                    "b": {"type": "integer", "minimum": 0, "maximum": 9}},
                   "required": ["a", "b"], "additionalProperties": False}}}
WEATHER = {"type": "function", "function": {
    "name": "weather",
    "parameters": {"type": "object", "properties": {"city": {"enum": ["paris", "rome", "oslo"]},
                                                    "unit": {"enum": ["c", "f"]}},
                   "required": ["city"]}}}
TOOLS = [ADD, WEATHER]
PARAMETERS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}
MESSAGES = [{"role": "user", "content": "What is 2 plus 2?"}]
MAX_TOKENS = 150  # one call is 65-85 tokens: the call's text is spelt mostly in single characters


@pytest.fixture(scope="module")
def client(structured_served):
    return openai.OpenAI(base_url=structured_served.base_url, api_key=API_KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def no_whitespace(tiny_2k_tokenizer) -> dict[str, int]:
    return whitespace_bias(tiny_2k_tokenizer)


@pytest.fixture(scope="module")
def open_call(tiny_2k_tokenizer) -> str:
    """The id of the `<tool_call>` token (one token in this vocabulary, as in Qwen2.5's)."""
    ids = tiny_2k_tokenizer.encode("<tool_call>", add_special_tokens=False)
    assert len(ids) == 1
    return str(ids[0])


@pytest.fixture(scope="module")
def no_stop(tiny_2k_tokenizer, no_whitespace) -> dict[str, int]:
    """EOS pushed down, and the newline between calls pushed less: only a grammar's end stops the reply."""
    newline = tiny_2k_tokenizer.encode("\n", add_special_tokens=False)
    return {**no_whitespace, str(tiny_2k_tokenizer.eos_token_id): -100, str(newline[0]): -50}


def named(name: str) -> dict:
    return {"type": "function", "function": {"name": name}}


def assert_valid_calls(calls, names=tuple(PARAMETERS)) -> None:
    assert calls
    for call in calls:
        assert call.type == "function" and call.id.startswith("call_")
        assert call.function.name in names
        jsonschema.validate(json.loads(call.function.arguments), PARAMETERS[call.function.name])
    assert len({call.id for call in calls}) == len(calls)


@pytest.mark.parametrize("model", ["tiny-2k", "tiny-2k-tpl"])
def test_required_returns_valid_calls(client, no_whitespace, model):
    out = client.chat.completions.create(model=model, messages=MESSAGES, tools=TOOLS, tool_choice="required",
                                         max_tokens=MAX_TOKENS, temperature=0, logit_bias=no_whitespace)
    choice = out.choices[0]
    assert_valid_calls(choice.message.tool_calls)
    assert not choice.message.content
    assert choice.finish_reason == "tool_calls"


@pytest.mark.parametrize("name", ["add", "weather"])
def test_named_tool_choice_calls_only_that_tool(client, no_whitespace, name):
    out = client.chat.completions.create(model="tiny-2k", messages=MESSAGES, tools=TOOLS, tool_choice=named(name),
                                         max_tokens=MAX_TOKENS, temperature=0, logit_bias=no_whitespace)
    assert_valid_calls(out.choices[0].message.tool_calls, names=(name,))
    assert out.choices[0].finish_reason == "tool_calls"


def test_template_that_renders_tools_gets_them_and_the_history(client, tiny_2k_tokenizer, no_whitespace):
    """`tiny-2k-tpl`'s own template renders tools, past calls and results; the served prompt is
    exactly that template's rendering (HF convention: arguments as an object, results named)."""
    history = [*MESSAGES,
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 2}'}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "4"}]
    out = client.chat.completions.create(model="tiny-2k-tpl", messages=history, tools=TOOLS, tool_choice="required",
                                         max_tokens=MAX_TOKENS, temperature=0, logit_bias=no_whitespace)
    assert_valid_calls(out.choices[0].message.tool_calls)
    as_template_sees_it = [*MESSAGES,
                           {"role": "assistant", "content": "", "tool_calls": [
                               {"id": "call_1", "type": "function", "function": {"name": "add",
                                                                                 "arguments": {"a": 2, "b": 2}}}]},
                           {"role": "tool", "tool_call_id": "call_1", "name": "add", "content": "4"}]
    text = tiny_2k_tokenizer.apply_chat_template(as_template_sees_it, tools=TOOLS, chat_template=TOOLS_TEMPLATE,
                                                 add_generation_prompt=True, tokenize=False)
    assert 'Functions: [{"type": "function", "function": {"name": "add"' in text
    assert "result of call_1 (add): 4" in text
    assert out.usage.prompt_tokens == len(tiny_2k_tokenizer.encode(text, add_special_tokens=False))


def test_history_with_tool_results_is_accepted_in_the_default_format(client, no_whitespace):
    history = [*MESSAGES,
               {"role": "assistant", "content": "Let me add.", "tool_calls": [
                   {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a":2,"b":2}'}},
                   {"id": "call_2", "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"oslo"}'}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "4"},
               {"role": "tool", "tool_call_id": "call_2", "content": "cold"}]
    without = client.chat.completions.create(model="tiny-2k", messages=MESSAGES, tools=TOOLS, tool_choice="none",
                                             max_tokens=4, temperature=0)
    out = client.chat.completions.create(model="tiny-2k", messages=history, tools=TOOLS, tool_choice=named("add"),
                                         max_tokens=MAX_TOKENS, temperature=0, logit_bias=no_whitespace)
    assert_valid_calls(out.choices[0].message.tool_calls, names=("add",))
    # the two calls and results are in the prompt (each call alone is over 20 tokens)
    assert out.usage.prompt_tokens > without.usage.prompt_tokens + 50


def _stream_calls(client, **kwargs):
    """Streamed tool calls accumulated per choice by index, checking OpenAI's shape: a call's first
    chunk carries its id, type and name; later chunks only pieces of the arguments."""
    calls, finish = {}, {}
    for chunk in client.chat.completions.create(**kwargs, stream=True):
        for choice in chunk.choices:
            finish[choice.index] = choice.finish_reason or finish.get(choice.index)
            mine = calls.setdefault(choice.index, {})
            for piece in choice.delta.tool_calls or ():
                if piece.index not in mine:
                    assert piece.id and piece.type == "function" and piece.function.name
                    assert piece.index == len(mine)
                    mine[piece.index] = {"id": piece.id, "name": piece.function.name,
                                         "arguments": piece.function.arguments or ""}
                else:
                    assert piece.id is None and piece.function.name is None
                    mine[piece.index]["arguments"] += piece.function.arguments or ""
    return {i: [mine[k] for k in sorted(mine)] for i, mine in calls.items()}, finish


@pytest.mark.parametrize("scenario", ["required", "two-calls", "seeded-n2"])
def test_streamed_calls_equal_the_whole_reply(client, no_whitespace, no_stop, scenario):
    kwargs = dict(model="tiny-2k", messages=MESSAGES, tools=TOOLS, temperature=0, max_tokens=MAX_TOKENS,
                  tool_choice="required", logit_bias=no_whitespace)
    if scenario == "two-calls":  # EOS pushed down: after two calls the reply is cut inside the third
        kwargs.update(tool_choice=named("add"), logit_bias=no_stop, max_tokens=140)
    elif scenario == "seeded-n2":
        kwargs.update(temperature=1.0, seed=3, n=2)
    whole = client.chat.completions.create(**kwargs)
    streamed, finish = _stream_calls(client, **kwargs)
    assert sorted(streamed) == [c.index for c in whole.choices]
    for choice in whole.choices:
        calls = streamed[choice.index]
        assert [(c["name"], c["arguments"]) for c in calls] == \
            [(c.function.name, c.function.arguments) for c in choice.message.tool_calls]
        assert all(c["id"].startswith("call_") for c in calls)
        assert finish[choice.index] == choice.finish_reason
        assert choice.finish_reason == ("length" if scenario == "two-calls" else "tool_calls")
    if scenario == "two-calls":
        assert len(streamed[0]) == 2


@pytest.mark.parametrize("parallel", [False, True])
def test_parallel_tool_calls(client, no_stop, parallel):
    """With EOS pushed down, only the grammar can end the reply: after one call when parallel calls
    are off; with them on, the model goes on to further calls."""
    out = client.chat.completions.create(model="tiny-2k", messages=MESSAGES, tools=TOOLS, tool_choice=named("add"),
                                         parallel_tool_calls=parallel, max_tokens=140, temperature=0,
                                         logit_bias=no_stop)
    calls = out.choices[0].message.tool_calls
    assert_valid_calls(calls, names=("add",))
    if parallel:
        assert len(calls) >= 2
    else:
        assert len(calls) == 1 and out.choices[0].finish_reason == "tool_calls"


def test_auto_call_opened_by_the_model_is_completed_validly(client, no_whitespace, open_call):
    out = client.chat.completions.create(model="tiny-2k", messages=MESSAGES, tools=TOOLS, tool_choice="auto",
                                         parallel_tool_calls=False, max_tokens=MAX_TOKENS, temperature=0,
                                         logit_bias={**no_whitespace, open_call: 100})
    choice = out.choices[0]
    assert_valid_calls(choice.message.tool_calls)
    assert len(choice.message.tool_calls) == 1
    assert choice.finish_reason == "tool_calls" and not choice.message.content


def test_auto_without_a_call_is_the_unconstrained_text(client, no_whitespace):
    kwargs = dict(model="tiny-2k", messages=MESSAGES, tools=TOOLS, max_tokens=20, temperature=0,
                  logit_bias=no_whitespace)
    auto = client.chat.completions.create(**kwargs, tool_choice="auto").choices[0]
    none = client.chat.completions.create(**kwargs, tool_choice="none").choices[0]
    assert auto.message.tool_calls is None and none.message.tool_calls is None
    assert auto.message.content and auto.message.content == none.message.content
    assert auto.finish_reason == "length"


def test_tool_choice_none_leaves_call_text_as_content(client, no_whitespace, open_call):
    out = client.chat.completions.create(model="tiny-2k", messages=MESSAGES, tools=TOOLS, tool_choice="none",
                                         max_tokens=10, temperature=0, logit_bias={**no_whitespace, open_call: 100})
    assert out.choices[0].message.tool_calls is None
    assert out.choices[0].message.content.startswith("<tool_call>")


def test_tool_call_constraint_none_returns_what_the_model_wrote(client, no_whitespace, open_call):
    kwargs = dict(model="tiny-2k", messages=MESSAGES, tools=TOOLS, max_tokens=20, temperature=0)
    free = client.chat.completions.create(**kwargs, tool_choice="none", logit_bias=no_whitespace).choices[0]
    unenforced = client.chat.completions.create(**kwargs, tool_choice="required", logit_bias=no_whitespace,
                                                extra_body={"tool_call_constraint": "none"}).choices[0]
    assert unenforced.message.content == free.message.content and unenforced.message.tool_calls is None
    # an opened call the model does not finish stays text
    opened = client.chat.completions.create(**kwargs, tool_choice="required",
                                            logit_bias={**no_whitespace, open_call: 100},
                                            extra_body={"tool_call_constraint": "none"}).choices[0]
    assert opened.message.tool_calls is None and opened.message.content.startswith("<tool_call>")
    assert opened.finish_reason == "length"


def _post(served, body: dict) -> httpx.Response:
    return httpx.post(served.root_url + "/v1/chat/completions", json={"model": "tiny-2k", "max_tokens": 4, **body},
                      headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)


def _history(call_id: str, arguments: str = '{"a": 1, "b": 2}') -> list[dict]:
    return [*MESSAGES,
            {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                                                  "function": {"name": "add", "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": call_id, "content": "3"}]


@pytest.mark.parametrize("body, param", [
    ({"messages": MESSAGES, "tools": TOOLS, "tool_choice": named("divide")}, "tool_choice"),
    ({"messages": MESSAGES, "tools": [ADD, ADD]}, "tools"),
    ({"messages": MESSAGES, "tool_choice": "required"}, "tool_choice"),
    ({"messages": _history("call_nope"), "tools": TOOLS}, "messages[2].tool_call_id"),
    ({"messages": _history("call_1", arguments="[1, 2]"), "tools": TOOLS},
     "messages[1].tool_calls[0].function.arguments"),
    ({"messages": MESSAGES, "tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}},
     "response_format"),
    ({"messages": MESSAGES, "tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "nope"}}}}}],
      "tool_choice": "required"}, "tools"),
])
def test_bad_tool_requests_are_400_naming_the_parameter(structured_served, body, param):
    response = _post(structured_served, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] is not None and error["param"].startswith(param), error
