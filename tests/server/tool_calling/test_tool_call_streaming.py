from __future__ import annotations

import random

import pytest

from braid.server.tool_calling import (
    ArgumentsDelta, CallStart, ContentDelta, get_tool_call_format, message_from_events,
)
from tool_calling_samples import HERMES_REPLIES, LLAMA_REPLIES, TOOLS

CASES = [("hermes", case[0]) for case in HERMES_REPLIES] + [("llama3_json", case[0]) for case in LLAMA_REPLIES]


def chunkings(text: str, seed: int, count: int = 25):
    yield [text]
    yield list(text)
    rng = random.Random(seed)
    for _ in range(count):
        cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(1, 12))))
        yield [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


def stream(format_name: str, chunks: list[str]):
    parser = get_tool_call_format(format_name).stream_parser(TOOLS)
    per_feed = [parser.feed(chunk) for chunk in chunks] + [parser.finish()]
    return parser, per_feed


def without_ids(message):
    return message.content, [(call.name, call.arguments) for call in message.tool_calls], message.problems


@pytest.mark.parametrize("format_name, reply", CASES)
def test_every_split_streams_the_whole_parse(format_name, reply):
    expected = get_tool_call_format(format_name).parse(reply, TOOLS)
    for chunks in chunkings(reply, seed=len(reply)):
        parser, per_feed = stream(format_name, chunks)
        events = [event for feed in per_feed for event in feed]
        assert without_ids(message_from_events(events, parser.problems)) == without_ids(expected), chunks
        assert parser.num_calls == len(expected.tool_calls)


@pytest.mark.parametrize("format_name, reply", CASES)
def test_streamed_text_is_never_taken_back(format_name, reply):
    """Content and arguments seen so far are always a prefix of the final ones: no trigger text
    (whole or partial) is ever shown as content and later turned into a call."""
    expected = get_tool_call_format(format_name).parse(reply, TOOLS)
    final_content = expected.content or ""
    for chunks in chunkings(reply, seed=7 * len(reply), count=10):
        _, per_feed = stream(format_name, chunks)
        content, arguments, started = "", {}, []
        for feed in per_feed:
            for event in feed:
                if isinstance(event, ContentDelta):
                    assert event.text
                    content += event.text
                elif isinstance(event, CallStart):
                    assert event.index == len(started) and event.id.startswith("call_")
                    started.append(event.name)
                    arguments[event.index] = ""
                else:
                    assert isinstance(event, ArgumentsDelta) and event.index in arguments
                    arguments[event.index] += event.text
            assert final_content.startswith(content)
            for index, text in arguments.items():
                assert expected.tool_calls[index].arguments.startswith(text)
                assert expected.tool_calls[index].name == started[index]


def test_a_partial_trigger_is_held_back_until_it_resolves():
    parser = get_tool_call_format("hermes").stream_parser(TOOLS)
    assert parser.feed("Hello <tool_") == [ContentDelta("Hello")]
    assert parser.feed("cal") == []
    assert parser.feed("endar") == [ContentDelta(" <tool_calendar")]
    assert parser.feed(" <tool_call>") == []
    events = parser.feed('{"name": "add", "arguments": {"a": 1')
    assert [type(event) for event in events] == [CallStart, ArgumentsDelta]
    assert events[1].text == '{"a": 1'
    assert parser.feed(', "b": 2}}</tool_call>') == [ArgumentsDelta(0, ', "b": 2}')]
    assert parser.finish() == []


def test_llama_holds_a_brace_until_it_is_known_not_to_start_a_call():
    parser = get_tool_call_format("llama3_json").stream_parser(TOOLS)
    assert parser.feed("Use {") == [ContentDelta("Use")]
    assert parser.feed('"na') == []
    assert parser.feed("sty") == [ContentDelta(' {"nasty')]


def test_a_call_that_breaks_after_it_was_announced_is_reported():
    """Arguments stream as they come, so JSON that breaks mid-call cannot be taken back: the call
    stays announced with what was sent, the breakage is reported, the broken rest is dropped."""
    parser = get_tool_call_format("hermes").stream_parser(TOOLS)
    events = parser.feed('<tool_call>\n{"name": "add", "arguments": {"a": 1, <oops>}}\n</tool_call>Done.')
    events += parser.finish()
    message = message_from_events(events, parser.problems)
    assert [(call.name, call.arguments) for call in message.tool_calls] == [("add", '{"a": 1, ')]
    assert message.content == "Done." and len(message.problems) == 1
