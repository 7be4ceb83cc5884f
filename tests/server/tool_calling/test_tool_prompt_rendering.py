from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from braid.server.tool_calling import (
    ToolCallingError, get_tool_call_format, render_tool_prompt, template_renders_tools,
)
from tiny_models import train_bpe_tokenizer
from tool_calling_samples import TOOLS

# A small template that renders tools the Hugging Face way: tools, calls (arguments as a dict)
# and results (role "tool").
TOOL_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\nTOOLS:{% for t in tools %} {{ t.function.name }}"
    "{{ t.function.parameters | tojson }}{% endfor %}<|im_end|>\n{% endif %}"
    "{%- for m in messages %}<|im_start|>{{ m.role + '\\n' }}"
    "{%- if m.tool_calls %}{% for c in m.tool_calls %}CALL {{ c.id }} {{ c.function.name }} "
    "{{ c.function.arguments.a + c.function.arguments.b if c.function.name == 'add' else c.function.arguments.city }}"
    "{% endfor %}"
    "{%- elif m.role == 'tool' %}RESULT {{ m.tool_call_id }} {{ m.name }}: {{ m.content }}"
    "{%- else %}{{ m.content }}{% endif %}<|im_end|>\n{% endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CONVERSATION = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "Weather in Paris, and 1+2?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "22 C"},
    {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "3"}]},
]


@pytest.fixture(scope="module")
def chatml_tokenizer(tmp_path_factory):
    return train_bpe_tokenizer(tmp_path_factory.mktemp("chatml-tokenizer"))


def tokenizer_with_template(folder: Path, template: str):
    train_bpe_tokenizer(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = template
    return tokenizer


def test_template_tool_support_is_detected(chatml_tokenizer, tmp_path):
    assert not template_renders_tools(chatml_tokenizer)
    assert template_renders_tools(tokenizer_with_template(tmp_path, TOOL_TEMPLATE))


def test_a_template_with_tool_support_gets_tools_and_history_its_own_way(tmp_path):
    tokenizer = tokenizer_with_template(tmp_path, TOOL_TEMPLATE)
    prompt = render_tool_prompt(CONVERSATION, TOOLS, get_tool_call_format("hermes"), renders_tools=True)
    text = tokenizer.apply_chat_template(list(prompt.messages), tokenize=False, add_generation_prompt=True,
                                         **prompt.template_kwargs)
    weather, add = (json.dumps(tool.parameters) for tool in TOOLS)
    assert text == (
        f"<|im_start|>system\nTOOLS: get_weather{weather} add{add}<|im_end|>\n"
        "<|im_start|>system\nYou are helpful.<|im_end|>\n"
        "<|im_start|>user\nWeather in Paris, and 1+2?<|im_end|>\n"
        "<|im_start|>assistant\nCALL call_1 get_weather ParisCALL call_2 add 3<|im_end|>\n"
        "<|im_start|>tool\nRESULT call_1 get_weather: 22 C<|im_end|>\n"
        "<|im_start|>tool\nRESULT call_2 add: 3<|im_end|>\n"
        "<|im_start|>assistant\n")


def test_hermes_without_template_support_matches_qwen_template(chatml_tokenizer, tmp_path):
    """The ChatML template plus the hermes format gives what a Qwen2.5-style template renders itself
    (vLLM ships one, MiniCPM-V 4.5's, with Qwen2.5's tool prompt word for word)."""
    vllm_root = importlib.util.find_spec("vllm").submodule_search_locations[0]
    qwen_style = Path(vllm_root, "transformers_utils", "chat_templates", "template_minicpmv45.jinja")
    if not qwen_style.exists():
        pytest.skip("vLLM's Qwen-style template is not installed")
    reference = tokenizer_with_template(tmp_path, qwen_style.read_text())
    hf_prompt = render_tool_prompt(CONVERSATION, TOOLS, get_tool_call_format("hermes"), renders_tools=True)
    expected = reference.apply_chat_template(list(hf_prompt.messages), tokenize=False, add_generation_prompt=False,
                                             **hf_prompt.template_kwargs)
    prompt = render_tool_prompt(CONVERSATION, TOOLS, get_tool_call_format("hermes"), renders_tools=False)
    assert prompt.template_kwargs == {}
    text = chatml_tokenizer.apply_chat_template(list(prompt.messages), tokenize=False, add_generation_prompt=False)
    assert text == expected
    for tool in TOOLS:
        assert json.dumps(tool.to_openai()) in prompt.messages[0]["content"]


def test_llama_format_without_template_support(chatml_tokenizer):
    conversation = [message for message in CONVERSATION if message["role"] != "system"]
    prompt = render_tool_prompt(conversation, TOOLS[1:], get_tool_call_format("llama3_json"), renders_tools=False)
    text = chatml_tokenizer.apply_chat_template(list(prompt.messages), tokenize=False, add_generation_prompt=True)
    add_tool = json.dumps(TOOLS[1].to_openai(), indent=4)
    assert text == (
        "<|im_start|>system\nGiven the following functions, please respond with a JSON for a function call with "
        "its proper arguments that best answers the given prompt.\n\n"
        'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}. '
        'To call several functions, separate the JSON objects with "; ". Do not use variables.\n\n'
        f"{add_tool}\n\n<|im_end|>\n"
        "<|im_start|>user\nWeather in Paris, and 1+2?<|im_end|>\n"
        '<|im_start|>assistant\n{"name": "get_weather", "parameters": {"city": "Paris"}}; '
        '{"name": "add", "parameters": {"a": 1, "b": 2}}<|im_end|>\n'
        '<|im_start|>user\n{"output": "22 C"}\n{"output": "3"}<|im_end|>\n'
        "<|im_start|>assistant\n")


def call(arguments):
    return {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": arguments}}


@pytest.mark.parametrize("messages, param", [
    ([{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_9", "content": "x"}],
     "messages[1].tool_call_id"),
    ([{"role": "assistant", "tool_calls": [call('{"a": 1, "b": 2}')]}, {"role": "tool", "content": "3"}],
     "messages[1].tool_call_id"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [call('{"a": 1')]}],
     "messages[1].tool_calls[0].function.arguments"),
    ([{"role": "assistant", "tool_calls": [call('{"a": 1, "b": 2}'), call("[1, 2]")]}],
     "messages[0].tool_calls[1].function.arguments"),
    ([{"role": "tool", "tool_call_id": "call_1", "content": "3"},
      {"role": "assistant", "tool_calls": [call('{"a": 1, "b": 2}')]}], "messages[0].tool_call_id"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "messages[0].content"),
])
@pytest.mark.parametrize("renders_tools", [True, False])
def test_invalid_history_is_a_400_naming_the_field(messages, param, renders_tools):
    with pytest.raises(ToolCallingError) as caught:
        render_tool_prompt(messages, TOOLS, get_tool_call_format("hermes"), renders_tools)
    assert caught.value.param == param
