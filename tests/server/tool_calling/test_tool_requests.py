from __future__ import annotations

import pytest

from braid.server.tool_calling import ToolCallingError, ToolChoice, ToolSpec, parse_tools, resolve_tool_choice
from tool_calling_samples import ADD_PARAMETERS, TOOLS


def function(name, **extra):
    return {"type": "function", "function": {"name": name, **extra}}


def test_tools_become_specs():
    specs = parse_tools([function("add", description="Adds.", parameters=ADD_PARAMETERS), function("ping")])
    assert specs == (ToolSpec("add", "Adds.", ADD_PARAMETERS),
                     ToolSpec("ping", None, {"type": "object", "properties": {}}))
    assert specs[0].to_openai() == function("add", description="Adds.", parameters=ADD_PARAMETERS)


@pytest.mark.parametrize("tools, param", [
    ([function("add"), function("ping"), function("add")], "tools"),
    ([function("add"), {"type": "code_interpreter"}], "tools[1].type"),
    ([function("has space")], "tools[0].function.name"),
    ([{"type": "function"}], "tools[0].function"),
    ([function("add", parameters=[1])], "tools[0].function.parameters"),
])
def test_bad_tools_name_the_field(tools, param):
    with pytest.raises(ToolCallingError) as caught:
        parse_tools(tools)
    assert caught.value.param == param


@pytest.mark.parametrize("raw, tools, expected", [
    (None, TOOLS, ToolChoice("auto")),
    (None, (), ToolChoice("none")),
    ("none", TOOLS, ToolChoice("none")),
    ("required", TOOLS, ToolChoice("required")),
    ("auto", (), ToolChoice("none")),
    ({"type": "function", "function": {"name": "add"}}, TOOLS, ToolChoice("named", "add")),
])
def test_tool_choice_resolves(raw, tools, expected):
    assert resolve_tool_choice(raw, tools) == expected


@pytest.mark.parametrize("raw, tools", [
    ({"type": "function", "function": {"name": "subtract"}}, TOOLS),
    ({"type": "function", "function": {"name": "add"}}, ()),
    ({"type": "function"}, TOOLS),
    ("sometimes", TOOLS),
    ("required", ()),
])
def test_bad_tool_choice_names_tool_choice(raw, tools):
    with pytest.raises(ToolCallingError) as caught:
        resolve_tool_choice(raw, tools)
    assert caught.value.param == "tool_choice"
