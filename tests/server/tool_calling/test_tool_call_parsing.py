from __future__ import annotations

import json
import re
from typing import get_args

import pytest

from braid.server.tool_calling import (
    DEFAULT_TOOL_CALL_FORMAT, TOOL_CALL_FORMATS, ArgumentsDelta, ToolCall, ToolCallFormatName, get_tool_call_format,
)
from tool_calling_samples import HERMES_REPLIES, LLAMA_REPLIES, TOOLS

CASES = [("hermes", *case) for case in HERMES_REPLIES] + [("llama3_json", *case) for case in LLAMA_REPLIES]


@pytest.mark.parametrize("format_name, reply, content, calls, num_problems", CASES)
def test_parse_reads_hand_written_replies(format_name, reply, content, calls, num_problems):
    parsed = get_tool_call_format(format_name).parse(reply, TOOLS)
    assert parsed.content == content
    assert [(call.name, call.arguments) for call in parsed.tool_calls] == calls
    assert len(parsed.problems) == num_problems
    for call in parsed.tool_calls:
        assert re.fullmatch(r"call_[0-9a-f]{24}", call.id)
        assert isinstance(json.loads(call.arguments), dict)
    assert len({call.id for call in parsed.tool_calls}) == len(parsed.tool_calls)


@pytest.mark.parametrize("format_name", ["hermes", "llama3_json"])
def test_rendered_calls_parse_back_to_the_same_calls(format_name):
    fmt = get_tool_call_format(format_name)
    calls = [ToolCall("call_1", "get_weather", '{"city": "Zürich", "unit": "celsius"}'),
             ToolCall("call_2", "add", '{"a": -1, "b": 20}')]
    parsed = fmt.parse(fmt.render_assistant("", calls), TOOLS)
    assert parsed.content is None and not parsed.problems
    assert [(c.name, json.loads(c.arguments)) for c in parsed.tool_calls] == \
        [(c.name, json.loads(c.arguments)) for c in calls]


def test_hermes_calls_render_as_qwen_writes_them():
    text = get_tool_call_format("hermes").render_assistant(
        "Checking.", [ToolCall("call_1", "add", '{"a": 1, "b": 2}'), ToolCall("call_2", "add", '{"a": 3, "b": 4}')])
    assert text == ('Checking.\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>\n'
                    '<tool_call>\n{"name": "add", "arguments": {"a": 3, "b": 4}}\n</tool_call>')


def test_llama_calls_render_as_json_objects_joined_by_semicolons():
    text = get_tool_call_format("llama3_json").render_calls(
        [ToolCall("call_1", "add", '{"a": 1, "b": 2}'), ToolCall("call_2", "get_weather", '{"city": "Oslo"}')])
    assert text == ('{"name": "add", "parameters": {"a": 1, "b": 2}}; '
                    '{"name": "get_weather", "parameters": {"city": "Oslo"}}')


def test_raw_control_characters_in_strings_come_out_escaped():
    """xgrammar 0.2.8 lets raw control characters into strings with maxLength; strict JSON has none."""
    fmt = get_tool_call_format("hermes")
    reply = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "a\tb\x08"}}\n</tool_call>'
    (call,) = fmt.parse(reply, TOOLS).tool_calls
    assert json.loads(call.arguments) == {"city": "a\tb\x08"}
    parser = fmt.stream_parser(TOOLS)
    events = [event for ch in reply for event in parser.feed(ch)] + parser.finish()
    assert "".join(event.text for event in events if isinstance(event, ArgumentsDelta)) == call.arguments


def test_absurdly_deep_json_is_reported_not_raised():
    reply = '<tool_call>{"arguments": ' + "[" * 100_000 + "]" * 100_000 + ', "name": "add"}</tool_call>'
    parsed = get_tool_call_format("hermes").parse(reply, TOOLS)
    assert parsed.content == reply and not parsed.tool_calls and len(parsed.problems) == 1


def test_problems_name_the_reason():
    fmt = get_tool_call_format("hermes")
    unknown = fmt.parse('<tool_call>{"name": "nope", "arguments": {}}</tool_call>', TOOLS)
    assert "unknown tool 'nope'" in unknown.problems[0]
    assert "not valid JSON" in fmt.parse('<tool_call>{"arguments": {"a": tru}, "name": "add"}</tool_call>',
                                         TOOLS).problems[0]


def test_formats_are_chosen_by_config_name():
    assert set(get_args(ToolCallFormatName)) == set(TOOL_CALL_FORMATS)
    assert get_tool_call_format().name == DEFAULT_TOOL_CALL_FORMAT == "hermes"
    with pytest.raises(ValueError, match="llama3_json"):
        get_tool_call_format("mistral")
