"""Seeded random replies (text, valid and invalid calls, odd whitespace) read whole and streamed."""
from __future__ import annotations

import json
import random

import pytest

from braid.server.tool_calling import get_tool_call_format, message_from_events
from tool_calling_samples import TOOLS

CONTENT_PIECES = ["Hello", " ", "\n", "x < y", "{", "}", "{1, 2}", "<tool_", "<tool_call", "</tool_call>",
                  '{"nam', "<|python", "a\tb", "café", "[]"]
WHITESPACE = ["", " ", "\n", "\n\n", " \t"]


def random_arguments(rng: random.Random, name: str) -> dict:
    if name == "add":
        return {"a": rng.randint(-99, 99), "b": rng.randint(0, 9)}
    return {"city": rng.choice(["Paris", "São Paulo", 'a "quoted" }{ city', "x<tool_call>y"])}


def call_object(rng: random.Random, name: str, arguments: dict) -> str:
    ws = rng.choice(WHITESPACE)
    arguments_text = json.dumps(arguments, ensure_ascii=rng.random() < 0.5, separators=rng.choice([None, (",", ":")]))
    if rng.random() < 0.7:
        return f'{{{ws}"name"{ws}:{ws}"{name}",{ws}"arguments"{ws}:{ws}{arguments_text}{ws}}}'
    return f'{{"arguments": {arguments_text}, "name": "{name}"}}'


def invalid_call_object(rng: random.Random) -> str:
    return rng.choice(['{"name": "nope", "arguments": {}}', "not json", '{"arguments": {"a": 1,}, "name": "add"}',
                       '{"name": "add"}', '{"name": 5, "arguments": {}}'])


def random_reply(format_name: str, rng: random.Random) -> tuple[str, list[tuple[str, dict]]]:
    parts, calls = [], []
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.5:
            parts.append("".join(rng.choice(CONTENT_PIECES) for _ in range(rng.randint(1, 4))))
            continue
        run = []
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.8:
                name = rng.choice(["add", "get_weather"])
                arguments = random_arguments(rng, name)
                run.append(call_object(rng, name, arguments))
                calls.append((name, arguments))
            else:
                run.append(invalid_call_object(rng))
                if format_name == "llama3_json":
                    break  # a llama run ends at its first invalid object
        if format_name == "hermes":
            ws = rng.choice(WHITESPACE)
            parts.append(ws.join(f"<tool_call>{ws}{obj}{ws}</tool_call>" for obj in run))
        else:
            separator = rng.choice([";", "; ", " ;\n"])
            # without <|python_tag|> a call starts at the trigger {"name" exactly
            tagged = rng.random() < 0.5 or not run[0].startswith('{"name"')
            parts.append(("<|python_tag|>" if tagged else "") + separator.join(run))
        parts.append(rng.choice(WHITESPACE))
    return "".join(parts), calls


def random_chunks(text: str, rng: random.Random) -> list[str]:
    cuts = sorted({rng.randint(1, max(1, len(text) - 1)) for _ in range(rng.randint(0, len(text) // 2 + 1))})
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)]) if text[a:b]]


@pytest.mark.parametrize("format_name", ["hermes", "llama3_json"])
def test_random_replies_parse_and_stream_alike(format_name):
    fmt = get_tool_call_format(format_name)
    rng = random.Random(format_name)
    for _ in range(300):
        reply, expected_calls = random_reply(format_name, rng)
        parsed = fmt.parse(reply, TOOLS)
        assert [(call.name, json.loads(call.arguments)) for call in parsed.tool_calls] == expected_calls, reply
        whole = (parsed.content, [(c.name, c.arguments) for c in parsed.tool_calls], parsed.problems)
        for chunks in (list(reply), random_chunks(reply, rng), random_chunks(reply, rng)):
            parser = fmt.stream_parser(TOOLS)
            events = [event for chunk in chunks for event in parser.feed(chunk)] + parser.finish()
            streamed = message_from_events(events, parser.problems)
            streamed_calls = [(c.name, c.arguments) for c in streamed.tool_calls]
            assert (streamed.content, streamed_calls, streamed.problems) == whole, \
                (reply, chunks)
