from __future__ import annotations

import json
import random

import jsonschema
import numpy as np
import pytest
import xgrammar as xgr
from xgrammar.testing import _is_grammar_accept_string

from braid.server.tool_calling import ToolCall, ToolChoice, get_tool_call_format, message_from_events
from tiny_models import train_bpe_tokenizer
from tool_calling_samples import TOOLS

FORMATS = ["hermes", "llama3_json"]
CHOICES = [ToolChoice("auto"), ToolChoice("required"), ToolChoice("named", "add")]
SCHEMAS = {tool.name: tool.parameters for tool in TOOLS}
WALKS = 30


@pytest.fixture(scope="module")
def tokenizer_and_compiler(tmp_path_factory):
    tokenizer = train_bpe_tokenizer(tmp_path_factory.mktemp("tool-calling-tokenizer"))
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=len(tokenizer))
    return tokenizer, xgr.GrammarCompiler(info)


@pytest.fixture(scope="module")
def punctuation_tokens(tokenizer_and_compiler):
    tokenizer, _ = tokenizer_and_compiler
    return frozenset(token for token in range(len(tokenizer))
                     if set(tokenizer.decode([token])) <= set('"}],:;0123456789'))


def names_and_arguments(message):
    return [(call.name, call.arguments) for call in message.tool_calls]


def random_walk(compiled, tokenizer, punctuation, rng: random.Random, forced_prefix: str = "",
                max_steps: int = 400):
    """Text of one random path through the grammar, ended by EOS, or None if it ran too long.

    Tokens made of JSON punctuation are favoured so strings and objects close in a few steps.
    """
    matcher = xgr.GrammarMatcher(compiled)
    assert matcher.accept_string(forced_prefix)
    vocab_size = len(tokenizer)
    bitmask = xgr.allocate_token_bitmask(1, vocab_size)
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for _ in range(max_steps):
        matcher.fill_next_token_bitmask(bitmask)
        bits = np.unpackbits(bitmask.numpy().view(np.uint8), bitorder="little")[:vocab_size]
        allowed = np.flatnonzero(bits).tolist()
        others = [token for token in allowed if token != eos]
        if eos in allowed and (not others or rng.random() < 0.3):
            return forced_prefix + tokenizer.decode(ids)
        favoured = [token for token in others if token in punctuation]
        token = rng.choice(favoured if favoured and rng.random() < 0.6 else others)
        assert matcher.accept_token(token)
        ids.append(token)
    return None


@pytest.mark.parametrize("format_name", FORMATS)
@pytest.mark.parametrize("choice", CHOICES, ids=lambda choice: choice.mode)
@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "single"])
def test_random_walks_through_the_constraint_are_valid_calls(tokenizer_and_compiler, punctuation_tokens,
                                                            format_name, choice, parallel):
    tokenizer, compiler = tokenizer_and_compiler
    fmt = get_tool_call_format(format_name)
    kind, spec = fmt.call_constraint(TOOLS, choice, parallel)
    assert kind == "structural_tag"
    compiled = compiler.compile_structural_tag(spec)
    rng = random.Random(f"{format_name}-{choice.mode}-{parallel}")
    prefixes = ["", "Sure. " + fmt.trigger] if choice.mode == "auto" else [""]
    finished = 0
    for walk in range(WALKS):
        forced_call = choice.mode == "auto" and walk % 2 == 1
        text = random_walk(compiled, tokenizer, punctuation_tokens, rng, prefixes[walk % len(prefixes)])
        if text is None:
            continue
        finished += 1
        parsed = fmt.parse(text, TOOLS)
        assert not parsed.problems, text
        for call in parsed.tool_calls:
            jsonschema.validate(json.loads(call.arguments), SCHEMAS[call.name])
        parser = fmt.stream_parser(TOOLS)
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, 8)))
        events = [e for a, b in zip([0, *cuts], [*cuts, len(text)]) for e in parser.feed(text[a:b])] + parser.finish()
        streamed = message_from_events(events, parser.problems)
        assert names_and_arguments(streamed) == names_and_arguments(parsed)
        assert streamed.content == parsed.content
        if choice.mode == "auto":
            if forced_call and not parallel:
                assert len(parsed.tool_calls) == 1, text
            else:
                assert bool(parsed.tool_calls) == forced_call, text
        else:
            assert parsed.tool_calls and parsed.content is None, text
            assert parallel or len(parsed.tool_calls) == 1, text
        if choice.mode == "named":
            assert {call.name for call in parsed.tool_calls} == {"add"}
    assert finished >= WALKS // 2


@pytest.mark.parametrize("format_name", FORMATS)
def test_forced_calls_reject_text_and_wrong_calls(format_name):
    fmt = get_tool_call_format(format_name)
    good = fmt.render_calls([ToolCall("call_1", "add", '{"a": 1, "b": 2}')])
    two = fmt.render_calls([ToolCall("call_1", "add", '{"a": 1, "b": 2}'),
                            ToolCall("call_2", "add", '{"a": 3, "b": 4}')])
    weather = fmt.render_calls([ToolCall("call_1", "get_weather", '{"city": "Oslo"}')])

    def accepts(choice, parallel, text):
        grammar = xgr.Grammar.from_structural_tag(fmt.call_constraint(TOOLS, choice, parallel)[1])
        return _is_grammar_accept_string(grammar, text)

    required, named = ToolChoice("required"), ToolChoice("named", "add")
    assert accepts(required, True, good) and accepts(required, True, two) and accepts(required, True, weather)
    assert not accepts(required, True, "")
    assert not accepts(required, True, "I would rather talk.")
    assert not accepts(required, True, good + " and some text after")
    assert not accepts(required, False, two)
    assert not accepts(named, True, weather)
    assert accepts(named, False, good)
    assert not accepts(required, True, fmt.render_calls([ToolCall("call_1", "add", '{"a": "one", "b": 2}')]))
    assert not accepts(required, True, fmt.render_calls([ToolCall("call_1", "nope", "{}")]))


@pytest.mark.parametrize("format_name", FORMATS)
def test_auto_allows_text_and_calls_but_single_stops_after_one(format_name):
    fmt = get_tool_call_format(format_name)
    call = fmt.render_calls([ToolCall("call_1", "add", '{"a": 1, "b": 2}')])
    parallel = xgr.Grammar.from_structural_tag(fmt.call_constraint(TOOLS, ToolChoice("auto"), True)[1])
    single = xgr.Grammar.from_structural_tag(fmt.call_constraint(TOOLS, ToolChoice("auto"), False)[1])
    assert _is_grammar_accept_string(parallel, "Just text.")
    assert _is_grammar_accept_string(parallel, "Let me add. " + call + " " + call)
    assert _is_grammar_accept_string(single, "Let me add. " + call)
    assert not _is_grammar_accept_string(single, "Let me add. " + call + " " + call)


def test_no_constraint_without_tools_or_with_none():
    fmt = get_tool_call_format("hermes")
    assert fmt.call_constraint(TOOLS, ToolChoice("none"), True) is None
    assert fmt.call_constraint((), ToolChoice("auto"), True) is None


def test_vllm_accepts_the_spec():
    sampling = pytest.importorskip("vllm.sampling_params")
    backend = pytest.importorskip("vllm.v1.structured_output.backend_xgrammar")
    for format_name in FORMATS:
        for choice in CHOICES:
            _, spec = get_tool_call_format(format_name).call_constraint(TOOLS, choice, False)
            params = sampling.SamplingParams(
                structured_outputs=sampling.StructuredOutputsParams(structural_tag=spec), max_tokens=8)
            backend.validate_xgrammar_grammar(params)
