"""Structured outputs against independent references: brute-force prefix enumeration for choices,
``json`` + ``jsonschema`` and ``re.fullmatch`` for random walks, a bit formula for the bitmask,
and vLLM 0.32's own xgrammar backend for the masks the vLLM engine would apply."""
from __future__ import annotations

import json
import random
import re
from types import SimpleNamespace

import jsonschema
import numpy as np
import pytest
import torch

from braid.server.decoding.grammar import (GrammarCompilerCache, GrammarConstraint, allocate_bitmask, apply_bitmask,
                                          fill_bitmasks)
from braid.server.decoding.structured import StructuredOutputError, StructuredOutputPlan, validate_plan

VOCAB = 352  # the model's logits width: 32 padded ids past the tokenizer's 320
EOS = 2
STOPS = {0, EOS}  # EOS plus a generation-config EOS id


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from tiny_models import train_bpe_tokenizer

    return train_bpe_tokenizer(tmp_path_factory.mktemp("bpe"))


@pytest.fixture(scope="module")
def compiler_cache(tokenizer):
    return GrammarCompilerCache(tokenizer, VOCAB)


@pytest.fixture(scope="module")
def token_bytes(tokenizer) -> list[bytes | None]:
    """Each id's bytes through GPT-2's byte alphabet; None past the tokenizer."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    char_to_byte = {chr(b): b for b in printable} | {chr(256 + i): b for i, b in enumerate(others)}
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return [bytes(char_to_byte[c] for c in piece) for piece in pieces] + [None] * (VOCAB - len(tokenizer))


def allowed_ids(bitmask_row: torch.Tensor) -> set[int]:
    bits = np.unpackbits(bitmask_row.numpy().astype("<i4").view(np.uint8), bitorder="little")
    return set(np.flatnonzero(bits[:VOCAB]).tolist())


def next_allowed(constraint: GrammarConstraint) -> set[int]:
    bitmask = allocate_bitmask(1, VOCAB)
    constraint.fill(bitmask, 0)
    return allowed_ids(bitmask[0])


def random_walk(constraint, token_bytes, rng, stop_chance=1.0, max_tokens=300, check=None) -> bytes | None:
    """Uniform over the allowed tokens (a stop token with ``stop_chance`` once allowed); None if too long."""
    text = b""
    for _ in range(max_tokens):
        allowed = next_allowed(constraint)
        if check:
            check(text, allowed)
        if allowed & STOPS and (rng.random() < stop_chance or not allowed - STOPS):
            assert constraint.accept(min(allowed & STOPS)) and constraint.is_terminated()
            return text
        token = rng.choice(sorted(allowed - STOPS))
        assert constraint.accept(token)
        text += token_bytes[token]
    return None


def test_choice_masks_equal_prefix_enumeration(compiler_cache, token_bytes):
    choices = ["Paris", "Rome", "yes", "yes please", 'say "hi"\n', "café", "a\\b"]
    targets = [c.encode() for c in choices]

    def check(text: bytes, allowed: set[int]):
        expected = {t for t, piece in enumerate(token_bytes) if t not in STOPS and piece
                    and any(c.startswith(text + piece) for c in targets)}
        assert allowed == expected | (STOPS if text in targets else set()), text

    rng = random.Random(0)
    produced = {random_walk(compiler_cache.constraint(StructuredOutputPlan.from_choice(choices), STOPS), token_bytes, rng,
                            stop_chance=0.5, check=check) for _ in range(60)}
    assert produced <= set(targets) and len(produced) >= 5


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 6},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "score": {"type": "number", "minimum": -1.5, "maximum": 2.5},
        "tags": {"type": "array", "items": {"enum": ["a", "b", 3]}, "minItems": 1, "maxItems": 3},
        "address": {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]},
                                                     "zip": {"type": "integer", "minimum": 10, "maximum": 99}},
                    "required": ["city"]},
        "ok": {"type": ["boolean", "null"]},
    },
    "required": ["name", "age", "tags"],
}
POINTS = {
    "type": "array", "minItems": 2, "maxItems": 4,
    "items": {"$ref": "#/$defs/point"},
    "$defs": {"point": {"type": "object", "properties": {"x": {"type": "integer", "minimum": -9, "maximum": 9},
                                                         "label": {"anyOf": [{"const": "origin"}, {"type": "null"}]}},
                        "required": ["x"], "additionalProperties": False}},
}


@pytest.mark.parametrize("schema", [PERSON, POINTS], ids=["nested-object", "array-of-refs"])
def test_json_schema_walks_validate(compiler_cache, token_bytes, schema):
    rng = random.Random(1)
    plan = StructuredOutputPlan.from_json_schema(schema)
    validate_plan(plan, "response_format.json_schema.schema")
    texts = [random_walk(compiler_cache.constraint(plan, STOPS), token_bytes, rng) for _ in range(40)]
    finished = [t for t in texts if t is not None]
    assert len(finished) >= 20
    for text in finished:
        jsonschema.validate(json.loads(text, strict=False), schema)  # strict=False: see the xfail below


@pytest.mark.xfail(strict=True, reason="xgrammar 0.2.8 (and so vLLM 0.32) lets length-bounded strings hold raw "
                                       "control characters: mlc-ai/xgrammar#800")
def test_length_bounded_strings_refuse_raw_control_characters(compiler_cache, token_bytes):
    constraint = compiler_cache.constraint(StructuredOutputPlan.from_json_schema({"type": "string", "maxLength": 6}), STOPS)
    assert constraint.accept(token_bytes.index(b'"'))
    assert token_bytes.index(b"\x18") not in next_allowed(constraint)


@pytest.mark.parametrize("pattern", [r"[a-c]{2,4}-\d{2}", r"(cat|dog)s? (and|or) (mice|fish)",
                                     r"\d{1,3}(\.\d{1,3}){3}", r"[A-Z][a-z]{0,5}( [A-Z][a-z]{0,5})?"])
def test_regex_walks_fullmatch(compiler_cache, token_bytes, pattern):
    rng = random.Random(2)
    plan = StructuredOutputPlan.from_regex(pattern)
    validate_plan(plan, "structured_outputs.regex")
    texts = {random_walk(compiler_cache.constraint(plan, STOPS), token_bytes, rng, stop_chance=0.5) for _ in range(40)}
    assert None not in texts and len(texts) >= 5
    for text in texts:
        assert re.fullmatch(pattern, text.decode()), text


def test_json_object_accepts_objects_only(compiler_cache, tokenizer):
    def accepts(text: str) -> bool:
        constraint = compiler_cache.constraint(StructuredOutputPlan.for_json_object(), STOPS)
        ids = tokenizer.encode(text, add_special_tokens=False) + [EOS]
        return all(constraint.accept(t) for t in ids) and constraint.is_terminated()

    assert accepts('{"a": [1, 2.5, {"b": null}], "c": "d"}') and accepts("{ }")
    assert not accepts("[1]") and not accepts('"text"') and not accepts('{"a": 1')


def test_stop_tokens_end_only_a_complete_output(compiler_cache):
    constraint = compiler_cache.constraint(StructuredOutputPlan.from_regex("ab"), STOPS)
    assert not constraint.accept(EOS)
    assert next_allowed(constraint) & STOPS == set()
    bitmask = allocate_bitmask(3, VOCAB)
    assert fill_bitmasks(bitmask, {2: constraint}) == [2] and allowed_ids(bitmask[1]) == set(range(VOCAB))


def test_terminated_constraint_allows_everything_and_ignores_tokens(compiler_cache, tokenizer):
    constraint = compiler_cache.constraint(StructuredOutputPlan.from_choice(["ab"]), {EOS})
    for token in [*tokenizer.encode("ab", add_special_tokens=False), EOS]:
        assert constraint.accept(token)
    assert constraint.is_terminated() and constraint.accept(7) and next_allowed(constraint) == set(range(VOCAB))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_apply_bitmask_matches_formula(dtype):
    generator = torch.Generator().manual_seed(3)
    batch, width = 5, 70
    logits = torch.randn(batch, width, generator=generator).to(dtype)
    allowed = torch.rand(batch, width, generator=generator) < 0.4
    words = np.zeros((batch, (width + 31) // 32), dtype=np.uint32)
    for row, token in allowed.nonzero().tolist():
        words[row, token // 32] |= np.uint32(1) << np.uint32(token % 32)
    bitmask = torch.from_numpy(words.view(np.int32))
    rows = [0, 2, 4]
    expected = logits.clone()
    for row in rows:
        expected[row][~allowed[row]] = float("-inf")
    assert apply_bitmask(logits, bitmask, rows) is logits
    assert torch.equal(logits, expected)


def test_apply_bitmask_refuses_a_narrow_bitmask():
    with pytest.raises(ValueError, match="logits width"):
        apply_bitmask(torch.zeros(1, 65), allocate_bitmask(1, 64), [0])


UNENFORCEABLE = [
    ({"type": "object", "patternProperties": {"^a": {}}, "properties": {"b": {}}}, "patternProperties"),
    ({"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 3}}}, "multipleOf"),
    ({"type": "array", "uniqueItems": True}, "uniqueItems"),
    ({"type": "array", "contains": {"const": 1}}, "contains"),
    ({"type": "string", "format": "color"}, "format: color"),
    ({"type": "string", "pattern": "^a+$", "maxLength": 3}, "maxLength"),
    ({"type": "object", "propertyNames": {"pattern": "^a"}, "properties": {"a": {}}}, "propertyNames"),
    ({"allOf": [{"type": "string"}, {"enum": ["yes", "no"]}]}, "allOf"),
    ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "not"),
    ({"type": "object", "if": {"required": ["a"]}, "then": {"required": ["b"]}}, "if"),
    ({"type": "object", "dependentRequired": {"a": ["b"]}}, "dependentRequired"),
    ({"items": {"type": "integer"}, "uniqueItems": True}, "uniqueItems"),
    ({"minimum": 0, "multipleOf": 2}, "multipleOf"),
    ({"$ref": "https://example.com/schema.json"}, "$ref"),
]


@pytest.mark.parametrize(("schema", "keyword"), UNENFORCEABLE)
def test_unenforceable_keyword_is_named(schema, keyword):
    with pytest.raises(StructuredOutputError) as refused:
        validate_plan(StructuredOutputPlan.from_json_schema(schema), "response_format.json_schema.schema")
    assert f"`{keyword}" in str(refused.value) and "cannot be enforced" in str(refused.value)
    assert refused.value.param == "response_format.json_schema.schema"


def test_everything_vllm_refuses_is_refused():
    pytest.importorskip("vllm")
    from vllm.v1.structured_output.backend_xgrammar import has_xgrammar_unsupported_json_features

    assert not has_xgrammar_unsupported_json_features(PERSON) and not has_xgrammar_unsupported_json_features(POINTS)
    refused_by_vllm = [schema for schema, _ in UNENFORCEABLE if has_xgrammar_unsupported_json_features(schema)]
    assert len(refused_by_vllm) >= 8
    for schema in refused_by_vllm:
        with pytest.raises(StructuredOutputError):
            validate_plan(StructuredOutputPlan.from_json_schema(schema), "structured_outputs.json")


def test_keyword_names_as_property_names_are_fine():
    schema = {"type": "object", "properties": {"not": {"type": "integer"}, "contains": {"type": "string"},
                                               "if": {"enum": ["x"]}}, "default": {"not": 1}}
    validate_plan(StructuredOutputPlan.from_json_schema(schema), "response_format.json_schema.schema")


@pytest.mark.parametrize(("plan", "param", "message"), [
    (StructuredOutputPlan.from_json_schema({"type": "nope"}), "response_format.json_schema.schema", "nope"),
    (StructuredOutputPlan.from_json_schema({"type": "object", "properties": {"a": {"minimum": "x"}}}),
     "structured_outputs.json", "properties.a.minimum"),
    (StructuredOutputPlan("json", "{"), "structured_outputs.json", "not valid JSON"),
    (StructuredOutputPlan.from_regex("a(b"), "structured_outputs.regex", "parenthesis"),
    (StructuredOutputPlan.from_regex("a\x00"), "structured_outputs.regex", "NUL"),
    (StructuredOutputPlan.from_grammar('root ::= "a" | x'), "structured_outputs.grammar", "x"),
    (StructuredOutputPlan.from_grammar("  "), "structured_outputs.grammar", "empty"),
    (StructuredOutputPlan.from_choice([]), "structured_outputs.choice", "non-empty"),
    (StructuredOutputPlan.from_structural_tag({"type": "structural_tag", "format": {"type": "nope"}}),
     "response_format", "nope"),
    (StructuredOutputPlan.from_structural_tag({"type": "structural_tag", "format": {
        "type": "tag", "begin": "<a>", "end": "</a>",
        "content": {"type": "json_schema", "json_schema": {"type": "array", "uniqueItems": True}}}}),
     "response_format", "uniqueItems"),
    (StructuredOutputPlan.from_json_schema(json.loads('{"items": ' * 65 + "{}" + "}" * 65)),
     "structured_outputs.json", "nested too deeply"),
])
def test_invalid_plans_are_refused_with_their_param(plan, param, message):
    with pytest.raises(StructuredOutputError, match=re.escape(message)) as refused:
        validate_plan(plan, param)
    assert refused.value.param == param


@pytest.mark.parametrize("plan", [
    StructuredOutputPlan.from_grammar('start: "yes" | "no"'),
    StructuredOutputPlan.from_grammar('root ::= ("a" | "b")+'),
    StructuredOutputPlan.from_structural_tag({"type": "structural_tag", "structures": [
        {"begin": "<f=a>", "schema": {"type": "object"}, "end": "</f>"}], "triggers": ["<f="]}),
])
def test_valid_grammars_and_tags_pass(plan):
    validate_plan(plan, "structured_outputs")


# The same plans through vLLM's own code: its server mapping, its request validation and its
# xgrammar backend. Masks must match step by step for greedy output to match across engines.
TAG = {"type": "structural_tag", "format": {"type": "triggered_tags", "triggers": ["<f="], "tags": [
    {"type": "tag", "begin": "<f=add>", "content": {"type": "json_schema", "json_schema": {
        "type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["a"]}},
     "end": "</f>"}], "at_least_one": True, "stop_after_first": True}}
LEGACY_TAG = {"type": "structural_tag", "structures": [
    {"begin": "<f=add>", "schema": {"type": "object", "properties": {"a": {"enum": [1, 2]}}, "required": ["a"]},
     "end": "</f>"}], "triggers": ["<f="]}
VLLM_PLANS = {
    "json": StructuredOutputPlan.from_json_schema(PERSON),
    "json_object": StructuredOutputPlan.for_json_object(),
    "regex": StructuredOutputPlan.from_regex(r"(cat|dog)s? \d{1,3}"),
    "choice": StructuredOutputPlan.from_choice(["Paris", "Rome", 'say "hi"']),
    "ebnf": StructuredOutputPlan.from_grammar('root ::= "[" item ("," item)* "]"\nitem ::= [a-c]+'),
    "lark": StructuredOutputPlan.from_grammar('start: "[" ITEM ("," ITEM)* "]"\nITEM: /[a-c]{1,3}/'),
    "structural_tag": StructuredOutputPlan.from_structural_tag(TAG),
    "legacy_structural_tag": StructuredOutputPlan.from_structural_tag(LEGACY_TAG),
}


@pytest.fixture(scope="module")
def vllm_xgrammar(tokenizer):
    pytest.importorskip("vllm")
    from vllm.v1.structured_output.backend_xgrammar import XgrammarBackend

    def backend(disable_any_whitespace: bool):
        config = SimpleNamespace(
            structured_outputs_config=SimpleNamespace(disable_any_whitespace=disable_any_whitespace),
            model_config=SimpleNamespace(hf_config=SimpleNamespace(model_type="llama")), speculative_config=None)
        return XgrammarBackend(config, tokenizer=tokenizer, vocab_size=VOCAB)

    return {False: backend(False), True: backend(True)}


def test_to_vllm_fields():
    pytest.importorskip("vllm")
    from vllm.sampling_params import StructuredOutputsParams as Params

    assert VLLM_PLANS["json"].to_vllm() == Params(json=PERSON)
    assert VLLM_PLANS["json_object"].to_vllm() == Params(json_object=True)
    assert VLLM_PLANS["regex"].to_vllm() == Params(regex=r"(cat|dog)s? \d{1,3}")
    assert VLLM_PLANS["choice"].to_vllm() == Params(choice=["Paris", "Rome", 'say "hi"'])
    assert VLLM_PLANS["lark"].to_vllm() == Params(grammar='start: "[" ITEM ("," ITEM)* "]"\nITEM: /[a-c]{1,3}/')
    assert VLLM_PLANS["structural_tag"].to_vllm() == Params(structural_tag=json.dumps(TAG))


@pytest.mark.parametrize(("response_format", "plan"), [
    ({"type": "json_object"}, VLLM_PLANS["json_object"]),
    ({"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}, VLLM_PLANS["json"]),
    (TAG, VLLM_PLANS["structural_tag"]),
    (LEGACY_TAG, VLLM_PLANS["legacy_structural_tag"]),
])
def test_to_vllm_equals_vllm_server_mapping(response_format, plan):
    pytest.importorskip("vllm")
    from pydantic import TypeAdapter
    from vllm.entrypoints.generate.base.protocol import AnyResponseFormat, structured_outputs_from_response_format

    parsed = TypeAdapter(AnyResponseFormat).validate_python(response_format)
    assert plan.to_vllm() == structured_outputs_from_response_format(None, parsed)


@pytest.mark.parametrize("disable_any_whitespace", [False, True])
@pytest.mark.parametrize("name", list(VLLM_PLANS))
def test_masks_equal_vllm_backend(tokenizer, token_bytes, vllm_xgrammar, name, disable_any_whitespace):
    from vllm.sampling_params import SamplingParams
    from vllm.v1.structured_output.backend_xgrammar import validate_xgrammar_grammar
    from vllm.v1.structured_output.request import get_structured_output_key

    plan = VLLM_PLANS[name]
    ours = GrammarCompilerCache(tokenizer, VOCAB, disable_any_whitespace=disable_any_whitespace)
    rng = random.Random(4)
    for _ in range(6):
        params = SamplingParams(structured_outputs=plan.to_vllm())
        validate_xgrammar_grammar(params)
        theirs = vllm_xgrammar[disable_any_whitespace].compile_grammar(
            *get_structured_output_key(params.structured_outputs), stop_token_ids=STOPS)
        constraint = ours.constraint(plan, STOPS)
        for _ in range(120):
            expected = allocate_bitmask(1, VOCAB)
            theirs.fill_bitmask(expected, 0)
            allowed = next_allowed(constraint)
            assert allowed == allowed_ids(expected[0])
            if allowed & STOPS and (rng.random() < 0.3 or not allowed - STOPS):
                token = min(allowed & STOPS)
            else:
                token = rng.choice(sorted(allowed - STOPS))
            assert constraint.accept(token) and theirs.accept_tokens("walk", [token])
            assert constraint.is_terminated() == theirs.is_terminated()
            if constraint.is_terminated():
                break
