"""Tools and replies shared by the tool-calling tests (imported by name: pytest puts this folder on sys.path)."""
from __future__ import annotations

from braid.server.tool_calling import parse_tools

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city"],
}
ADD_PARAMETERS = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}
TOOLS = parse_tools([
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.",
                                      "parameters": WEATHER_PARAMETERS}},
    {"type": "function", "function": {"name": "add", "parameters": ADD_PARAMETERS}},
])

# (reply, content, [(name, arguments text)], number of problems), each written by hand.
HERMES_REPLIES = [
    ("Plain answer, no calls.\n", "Plain answer, no calls.\n", [], 0),
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
     None, [("get_weather", '{"city": "Paris"}')], 0),
    ('Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n'
     '</tool_call>\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>',
     "Let me check.", [("get_weather", '{"city": "Paris", "unit": "celsius"}'), ("add", '{"a": 1, "b": 2}')], 0),
    ('<tool_call>{"name":"add","arguments":{"b":2,"a":1}}</tool_call>', None, [("add", '{"b":2,"a":1}')], 0),
    ('<tool_call>\n{"arguments": {"a": 1,  "b": 2}, "name": "add"}\n</tool_call>',
     None, [("add", '{"a": 1, "b": 2}')], 0),
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Caf\\u00e9 \\"<tool_call>\\" }{"}}\n</tool_call>',
     None, [("get_weather", '{"city": "Caf\\u00e9 \\"<tool_call>\\" }{"}')], 0),
    ('Before <tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call> after.',
     "Before after.", [("add", '{"a": 1, "b": 2}')], 0),
    ('<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n', None, [("add", '{"a": 1, "b": 2}')], 0),
    ('x < y and <tool_cal is not a tag', "x < y and <tool_cal is not a tag", [], 0),
    ('Ends with a partial tag <tool_ca', "Ends with a partial tag <tool_ca", [], 0),
    # invalid before a call could be announced: kept verbatim as content, reported
    ('Hi <tool_call>\n{"name": "nope", "arguments": {}}\n</tool_call> bye',
     'Hi <tool_call>\n{"name": "nope", "arguments": {}}\n</tool_call> bye', [], 1),
    ('<tool_call>\nnot json\n</tool_call>', '<tool_call>\nnot json\n</tool_call>', [], 1),
    ('<tool_call>\n{"arguments": {"a": 1,}, "name": "add"}\n</tool_call>',
     '<tool_call>\n{"arguments": {"a": 1,}, "name": "add"}\n</tool_call>', [], 1),
    ('<tool_call>\n{"name": "add"}\n</tool_call>', '<tool_call>\n{"name": "add"}\n</tool_call>', [], 1),
    ('Cut <tool_call>\n{"name": "add", "arg', 'Cut <tool_call>\n{"name": "add", "arg', [], 1),
    ('<tool_call>\n{"name": "nope", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "add", "arguments": '
     '{"a": 1, "b": 2}}\n</tool_call>',
     '<tool_call>\n{"name": "nope", "arguments": {}}\n</tool_call>', [("add", '{"a": 1, "b": 2}')], 1),
]

LLAMA_REPLIES = [
    ("No tools needed.", "No tools needed.", [], 0),
    ('{"name": "get_weather", "parameters": {"city": "Paris"}}', None, [("get_weather", '{"city": "Paris"}')], 0),
    ('<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "add", "arguments": {"a": 1, '
     '"b": 2}}', None, [("get_weather", '{"city": "Paris"}'), ("add", '{"a": 1, "b": 2}')], 0),
    ('{"name": "add", "parameters": {"a": 1, "b": 2}};{"name": "add", "parameters": {"a": 3, "b": 4}}',
     None, [("add", '{"a": 1, "b": 2}'), ("add", '{"a": 3, "b": 4}')], 0),
    ('Sure. {"name": "add", "parameters": {"a": 1, "b": 2}}', "Sure.", [("add", '{"a": 1, "b": 2}')], 0),
    ('A set {1, 2} is not a call.', "A set {1, 2} is not a call.", [], 0),
    ('{"name": "nope", "parameters": {}}', '{"name": "nope", "parameters": {}}', [], 1),
    ('<|python_tag|>print("hi")', '<|python_tag|>print("hi")', [], 1),
]
