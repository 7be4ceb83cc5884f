"""response_format and vLLM's structured_outputs through the official client, on a real server per engine.

Greedy constrained outputs are checked against a reference written here: plain transformers
forwards of the tiny model and an xgrammar matcher built with the options vLLM's xgrammar backend
uses for compact JSON (the model entry sets ``disable_any_whitespace``), taking the best allowed
token each step. Both engines matching it also means they match each other. Outputs are also
validated by independent checkers (jsonschema, re.fullmatch, json.loads).
"""
from __future__ import annotations

import asyncio
import json
import re
from typing import Literal

import httpx
import jsonschema
import openai
import pytest
import torch
import xgrammar as xgr
from pydantic import BaseModel, Field

from served_settings import API_KEY

MESSAGES = [{"role": "user", "content": "Give me the data as JSON."}]
MAX_TOKENS = 80


class Verdict(BaseModel):
    label: Literal["yes", "no", "maybe"]
    score: int = Field(ge=0, le=100)
    certain: bool


class Customer(BaseModel):
    name: str = Field(pattern=r"^[a-z]{1,6}$")
    tier: Literal["gold", "basic"]


class Line(BaseModel):
    sku: Literal["a1", "b2", "c3"]
    qty: int = Field(ge=1, le=5)


class Order(BaseModel):
    customer: Customer
    lines: list[Line] = Field(max_length=3)
    rush: bool


class Reading(BaseModel):
    unit: Literal["c", "f"]
    value: int = Field(ge=-40, le=60)
    note: Literal["ok", "bad"] | None = None
    tags: list[Literal["x", "y", "z"]] = Field(max_length=2)


OPTIONAL_KEYS = {"type": "object", "additionalProperties": False, "required": ["id"],
                 "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 999},
                                "nick": {"type": "string", "pattern": "^[a-z]{1,6}$"},
                                "mode": {"enum": ["on", "off"]}}}
BOUNDED_NUMBER = {"type": "object", "properties": {"p": {"type": "number", "minimum": 0, "maximum": 1}},
                  "required": ["p"]}
SHORT_ARRAY = {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 3}


@pytest.fixture(scope="module")
def sent() -> list[dict]:
    """The JSON bodies the client sent, newest last (the schema `parse` derived from a model)."""
    return []


@pytest.fixture(scope="module")
def client(structured_served, sent):
    def record(request: httpx.Request) -> None:
        sent.append(json.loads(request.content))

    http = httpx.Client(event_hooks={"request": [record]}, timeout=120)
    return openai.OpenAI(base_url=structured_served.base_url, api_key=API_KEY, max_retries=0, http_client=http)


@pytest.fixture(scope="module")
def compiler(tiny_2k_reference):
    model, tokenizer = tiny_2k_reference
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=model.config.vocab_size)
    return xgr.GrammarCompiler(info)


def compact_json(compiler, schema: dict) -> xgr.CompiledGrammar:
    return compiler.compile_json_schema(json.dumps(schema), any_whitespace=False, separators=(",", ":"))


def allowed_tokens(matcher: xgr.GrammarMatcher, vocab: int) -> torch.Tensor:
    bitmask = xgr.allocate_token_bitmask(1, vocab)
    matcher.fill_next_token_bitmask(bitmask)
    bits = (bitmask[0].unsqueeze(-1) >> torch.arange(32, dtype=torch.int32)) & 1
    return bits.flatten()[:vocab].bool()


_references: dict = {}


@torch.no_grad()
def constrained_greedy(reference, grammar: xgr.CompiledGrammar, prompt_ids: list[int], max_new: int,
                       negative_ids: list[int] | None = None, key=None, beta: float = 0.0) -> list[int]:
    """Best allowed token each step until the grammar ends (the stop token is the tokenizer's EOS).
    ``negative_ids``: ICD with alpha 1, ``2 log p - log n`` over the allowed tokens whose p (over the
    allowed tokens) is at least ``beta`` times the largest."""
    if key is not None and key in _references:
        return _references[key]
    model, _ = reference
    vocab = model.config.vocab_size
    matcher = xgr.GrammarMatcher(grammar)
    ids, negative, out = list(prompt_ids), list(negative_ids or []), []
    while len(out) < max_new and not matcher.is_terminated():
        allowed = allowed_tokens(matcher, vocab)
        scores = model(torch.tensor([ids])).logits[0, -1].double().masked_fill(~allowed, float("-inf")).log_softmax(-1)
        if negative_ids is not None:
            probs = scores.exp()
            scores = 2 * scores - model(torch.tensor([negative])).logits[0, -1].double().log_softmax(-1)
            scores = scores.masked_fill(probs < beta * probs.max(), float("-inf"))
        token = int(scores.masked_fill(~allowed, float("-inf")).argmax())
        assert matcher.accept_token(token)
        out.append(token)
        ids.append(token)
        negative.append(token)
    if key is not None:
        _references[key] = out
    return out


def chat_prompt_ids(tokenizer, messages) -> list[int]:
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer.encode(text, add_special_tokens=False)


def chat_reference(reference, compiler, schema: dict, max_new: int = MAX_TOKENS) -> tuple[str, list[int]]:
    model, tokenizer = reference
    ids = constrained_greedy(reference, compact_json(compiler, schema), chat_prompt_ids(tokenizer, MESSAGES),
                             max_new, key=("chat", json.dumps(schema, sort_keys=True), max_new))
    return tokenizer.decode(ids, skip_special_tokens=True), ids


@pytest.mark.parametrize("model", [Verdict, Order, Reading], ids=lambda m: m.__name__)
def test_parse_returns_the_parsed_reference(client, sent, tiny_2k_reference, compiler, model):
    completion = client.chat.completions.parse(model="tiny-2k", messages=MESSAGES, response_format=model,
                                               max_tokens=MAX_TOKENS, temperature=0)
    schema = sent[-1]["response_format"]["json_schema"]["schema"]
    choice = completion.choices[0]
    assert isinstance(choice.message.parsed, model)
    jsonschema.validate(json.loads(choice.message.content), schema)
    want, ids = chat_reference(tiny_2k_reference, compiler, schema)
    assert choice.message.content == want
    assert choice.message.parsed == model.model_validate_json(want)
    assert choice.finish_reason == "stop" and completion.usage.completion_tokens == len(ids)


@pytest.mark.parametrize("schema", [OPTIONAL_KEYS, BOUNDED_NUMBER, SHORT_ARRAY],
                         ids=["optional-keys", "bounded-number", "short-array"])
def test_json_schema_output_validates_and_equals_the_reference(client, tiny_2k_reference, compiler, schema):
    response_format = {"type": "json_schema", "json_schema": {"name": "data", "schema": schema, "strict": True}}
    completion = client.chat.completions.create(model="tiny-2k", messages=MESSAGES, response_format=response_format,
                                                max_tokens=MAX_TOKENS, temperature=0)
    content = completion.choices[0].message.content
    jsonschema.validate(json.loads(content), schema)
    assert content == chat_reference(tiny_2k_reference, compiler, schema)[0]


def test_vllm_structured_outputs_json_equals_response_format(client):
    schema = Verdict.model_json_schema()
    via_vllm = client.chat.completions.create(model="tiny-2k", messages=MESSAGES, max_tokens=MAX_TOKENS, temperature=0,
                                              extra_body={"structured_outputs": {"json": schema}})
    jsonschema.validate(json.loads(via_vllm.choices[0].message.content), schema)
    via_openai = client.chat.completions.create(
        model="tiny-2k", messages=MESSAGES, max_tokens=MAX_TOKENS, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "v", "schema": schema}})
    assert via_vllm.choices[0].message.content == via_openai.choices[0].message.content


@pytest.mark.parametrize("pattern", [r"[a-c]{2}-[0-9]{1,3}", r"(yes|no), [A-Z][a-z]{0,4}\."])
def test_regex_output_fullmatches_and_equals_the_reference(client, tiny_2k_reference, compiler, pattern):
    _, tokenizer = tiny_2k_reference
    completion = client.chat.completions.create(model="tiny-2k", messages=MESSAGES, max_tokens=20, temperature=0,
                                                extra_body={"structured_outputs": {"regex": pattern}})
    content = completion.choices[0].message.content
    assert re.fullmatch(pattern, content)
    want = constrained_greedy(tiny_2k_reference, compiler.compile_regex(pattern), chat_prompt_ids(tokenizer, MESSAGES),
                              20, key=("regex", pattern))
    assert content == tokenizer.decode(want, skip_special_tokens=True)


def test_choice_output_is_one_of_the_choices_and_equals_the_reference(client, tiny_2k_reference, compiler):
    _, tokenizer = tiny_2k_reference
    choices = ["alpha", "beta", "gamma delta", "Paris"]
    completion = client.chat.completions.create(model="tiny-2k", messages=MESSAGES, max_tokens=20, temperature=0,
                                                extra_body={"structured_outputs": {"choice": choices}})
    content = completion.choices[0].message.content
    assert content in choices
    grammar = compiler.compile_grammar("root ::= " + " | ".join(json.dumps(c) for c in choices))
    want = constrained_greedy(tiny_2k_reference, grammar, chat_prompt_ids(tokenizer, MESSAGES), 20, key="choice")
    assert content == tokenizer.decode(want, skip_special_tokens=True)


@pytest.mark.parametrize("grammar", ['root ::= "id-" [0-9] [0-9]? ("x" | "yz")',
                                     'start: "id-" DIGIT DIGIT? ("x" | "yz")\nDIGIT: /[0-9]/'],
                         ids=["ebnf", "lark"])
def test_grammar_output_equals_the_reference(client, tiny_2k_reference, compiler, grammar):
    _, tokenizer = tiny_2k_reference
    completion = client.chat.completions.create(model="tiny-2k", messages=MESSAGES, max_tokens=20, temperature=0,
                                                extra_body={"structured_outputs": {"grammar": grammar}})
    content = completion.choices[0].message.content
    assert re.fullmatch(r"id-[0-9]{1,2}(x|yz)", content)
    ebnf = 'root ::= "id-" [0-9] [0-9]? ("x" | "yz")'  # the same language: both must give this output
    want = constrained_greedy(tiny_2k_reference, compiler.compile_grammar(ebnf), chat_prompt_ids(tokenizer, MESSAGES),
                              20, key="grammar")
    assert content == tokenizer.decode(want, skip_special_tokens=True)


@pytest.mark.parametrize("how", ["response_format", "structured_outputs"])
def test_json_object_is_a_json_object(client, tiny_2k_tokenizer, how):
    # "}" pushed up: unconstrained the reply would be "}}}}..."; the grammar must open the object
    # first and end the reply once it is closed. (Unbiased, the random model writes a key to max_tokens.)
    brace = tiny_2k_tokenizer.encode("}", add_special_tokens=False)
    assert len(brace) == 1
    extra = {"structured_outputs": {"json_object": True}} if how == "structured_outputs" else {}
    kwargs = {"response_format": {"type": "json_object"}} if how == "response_format" else {}
    completion = client.chat.completions.create(model="tiny-2k", messages=MESSAGES, max_tokens=20, temperature=0,
                                                logit_bias={str(brace[0]): 100}, extra_body=extra, **kwargs)
    assert isinstance(json.loads(completion.choices[0].message.content), dict)
    assert completion.choices[0].finish_reason == "stop"


def test_completions_take_response_format_as_an_extension(client, tiny_2k_reference, compiler):
    _, tokenizer = tiny_2k_reference
    prompt = "The capital of France is"
    schema = Order.model_json_schema()
    completion = client.completions.create(
        model="tiny-2k", prompt=prompt, max_tokens=MAX_TOKENS, temperature=0,
        extra_body={"response_format": {"type": "json_schema", "json_schema": {"name": "order", "schema": schema}}})
    jsonschema.validate(json.loads(completion.choices[0].text), schema)
    want = constrained_greedy(tiny_2k_reference, compact_json(compiler, schema), tokenizer.encode(prompt), MAX_TOKENS,
                              key=("completion", prompt))
    assert completion.choices[0].text == tokenizer.decode(want, skip_special_tokens=True)


def test_running_out_of_max_tokens_returns_the_partial_text(client, tiny_2k_reference, compiler):
    _, tokenizer = tiny_2k_reference
    schema = Order.model_json_schema()
    response_format = {"type": "json_schema", "json_schema": {"name": "order", "schema": schema}}
    completion = client.chat.completions.create(model="tiny-2k", messages=MESSAGES, response_format=response_format,
                                                max_tokens=5, temperature=0)
    _, ids = chat_reference(tiny_2k_reference, compiler, schema)
    assert len(ids) > 5
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == tokenizer.decode(ids[:5], skip_special_tokens=True)
    with pytest.raises(ValueError):
        json.loads(completion.choices[0].message.content)


def test_streamed_constrained_output_equals_the_whole(client):
    response_format = {"type": "json_schema", "json_schema": {"name": "order", "schema": Order.model_json_schema()}}
    kwargs = dict(model="tiny-2k", messages=MESSAGES, response_format=response_format, max_tokens=MAX_TOKENS,
                  temperature=0)
    whole = client.chat.completions.create(**kwargs).choices[0].message.content
    chunks = list(client.chat.completions.create(**kwargs, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole


def _post(served, path: str, body: dict) -> httpx.Response:
    return httpx.post(served.root_url + path, json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)


def _json_schema(schema) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}


PATTERN_AND_PROPERTIES = {"type": "object", "properties": {"a": {"type": "integer"}},
                          "patternProperties": {"^x": {"type": "string"}}}


@pytest.mark.parametrize("path, extra, param, says", [
    ("/v1/chat/completions", {"response_format": _json_schema(PATTERN_AND_PROPERTIES)}, "response_format",
     "patternProperties"),
    ("/v1/chat/completions", {"response_format": _json_schema({"type": "nope"})}, "response_format", "nope"),
    ("/v1/completions", {"response_format": _json_schema({"type": "nope"})}, "response_format", "nope"),
    ("/v1/chat/completions", {"structured_outputs": {"json": {"type": "array", "uniqueItems": True}}},
     "structured_outputs.json", "uniqueItems"),
    ("/v1/chat/completions", {"structured_outputs": {"regex": "(unclosed"}}, "structured_outputs.regex", ""),
    ("/v1/chat/completions", {"response_format": {"type": "json_object"}, "structured_outputs": {"regex": "a+"}},
     "structured_outputs", ""),
    ("/v1/chat/completions", {"structured_outputs": {"regex": "a+", "choice": ["a"]}}, "structured_outputs",
     "exactly one"),
    ("/v1/completions", {"structured_outputs": {"choice": []}}, "structured_outputs", ""),
])
def test_bad_constraints_are_400_naming_the_parameter(structured_served, path, extra, param, says):
    body = {"model": "tiny-2k", "max_tokens": 4, **extra}
    body.update({"messages": MESSAGES} if "chat" in path else {"prompt": "Hi"})
    response = _post(structured_served, path, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] is not None and error["param"].startswith(param), error
    assert says in error["message"]


ICD_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["city", "n"],
              "properties": {"city": {"enum": ["paris", "rome", "oslo", "lima"]},
                             "n": {"type": "integer", "minimum": 0, "maximum": 99}}}


def test_constrained_icd(structured_served, client, tiny_2k_reference, compiler):
    """ICD (beta 0: no plausibility cut) with a schema: the transformers engine masks the combined
    scores, as the reference does; the vllm engine refuses the pair, naming `contrastive`."""
    _, tokenizer = tiny_2k_reference
    prompt, negative = "The capital of France is", "Nonsense words:"
    contrastive = {"method": "icd", "alpha": 1.0, "beta": 0.0, "negative_prompt": negative}
    kwargs = dict(model="tiny-2k", prompt=prompt, max_tokens=MAX_TOKENS, temperature=0,
                  extra_body={"response_format": _json_schema(ICD_SCHEMA), "contrastive": contrastive})
    if structured_served.engine == "vllm":
        with pytest.raises(openai.BadRequestError) as refused:
            client.completions.create(**kwargs)
        assert "contrastive" in refused.value.body["message"]
        return
    text = client.completions.create(**kwargs).choices[0].text
    jsonschema.validate(json.loads(text), ICD_SCHEMA)
    grammar = compact_json(compiler, ICD_SCHEMA)
    want = constrained_greedy(tiny_2k_reference, grammar, tokenizer.encode(prompt), MAX_TOKENS,
                              negative_ids=tokenizer.encode(negative))
    plain = constrained_greedy(tiny_2k_reference, grammar, tokenizer.encode(prompt), MAX_TOKENS)
    assert want != plain  # the contrast changes the answer, so matching `want` shows it was applied
    assert text == tokenizer.decode(want, skip_special_tokens=True)


def test_vllm_refusal_of_constrained_contrastive_names_the_parameter(structured_served):
    if structured_served.engine != "vllm":
        pytest.skip("the transformers engine runs constrained contrastive decoding")
    response = _post(structured_served, "/v1/completions",
                     {"model": "tiny-2k", "prompt": "Hi", "max_tokens": 4, "response_format": {"type": "json_object"},
                      "contrastive": {"method": "icd", "beta": 0.0}})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "contrastive"


def test_constrained_icd_with_the_default_plausibility_cut(structured_served, client, tiny_2k_reference, compiler):
    """The plausibility cut (beta 0.1) ranks only the tokens the grammar allows: the mask comes first,
    else a forced token the positive branch finds implausible would leave nothing to choose."""
    if structured_served.engine == "vllm":
        pytest.skip("the vllm engine refuses constrained contrastive decoding")
    _, tokenizer = tiny_2k_reference
    prompt, negative = "The capital of France is", "Nonsense words:"
    text = client.completions.create(
        model="tiny-2k", prompt=prompt, max_tokens=MAX_TOKENS, temperature=0,
        extra_body={"response_format": _json_schema(ICD_SCHEMA),
                    "contrastive": {"method": "icd", "alpha": 1.0, "negative_prompt": negative}}).choices[0].text
    jsonschema.validate(json.loads(text), ICD_SCHEMA)
    want = constrained_greedy(tiny_2k_reference, compact_json(compiler, ICD_SCHEMA), tokenizer.encode(prompt),
                              MAX_TOKENS, negative_ids=tokenizer.encode(negative), beta=0.1)
    assert text == tokenizer.decode(want, skip_special_tokens=True)


def test_constrained_logprobs_are_those_of_the_allowed_tokens(client, tiny_2k_reference, compiler):
    """Both engines mask before logprobs (vLLM's order): a token the grammar forces has logprob 0,
    and each chosen token's logprob is its log-softmax over the allowed tokens."""
    model, tokenizer = tiny_2k_reference
    schema = Verdict.model_json_schema()
    completion = client.chat.completions.create(model="tiny-2k", messages=MESSAGES, max_tokens=MAX_TOKENS,
                                                temperature=0, response_format=_json_schema(schema),
                                                logprobs=True, top_logprobs=1)
    want, ids = chat_reference(tiny_2k_reference, compiler, schema)
    assert completion.choices[0].message.content == want
    matcher, prompt = xgr.GrammarMatcher(compact_json(compiler, schema)), chat_prompt_ids(tokenizer, MESSAGES)
    expected = []
    with torch.no_grad():
        logits = model(torch.tensor([prompt + ids])).logits[0, len(prompt) - 1:-1].double()
    for row, token in zip(logits, ids):
        allowed = allowed_tokens(matcher, model.config.vocab_size)
        expected.append(float(row.masked_fill(~allowed, float("-inf")).log_softmax(-1)[token]))
        matcher.accept_token(token)
    entries = completion.choices[0].logprobs.content
    assert [e.logprob for e in entries] == pytest.approx(expected, abs=2e-3)
    assert expected.count(0.0) > 5  # the keys and punctuation are forced


def test_constrained_top_logprobs_are_a_valid_response(structured_served):
    """Masked alternatives (-inf) are sent as -9999.0, as vLLM's server sends them: JSON has no infinity."""
    response = _post(structured_served, "/v1/chat/completions",
                     {"model": "tiny-2k", "messages": MESSAGES, "max_tokens": 8, "temperature": 0,
                      "response_format": {"type": "json_object"}, "logprobs": True, "top_logprobs": 3})
    assert response.status_code == 200, response.text
    first = response.json()["choices"][0]["logprobs"]["content"][0]  # "{" is forced: the others are masked
    assert first["logprob"] == 0.0
    assert sorted(top["logprob"] for top in first["top_logprobs"])[:2] == [-9999.0, -9999.0]


def test_sampled_choices_each_follow_the_schema(client):
    """n sampled choices: each sequence is matched against its own grammar state."""
    schema = Reading.model_json_schema()
    completion = client.chat.completions.create(model="tiny-2k", messages=MESSAGES, max_tokens=MAX_TOKENS,
                                                temperature=1.0, n=3, seed=5, response_format=_json_schema(schema))
    contents = [choice.message.content for choice in completion.choices]
    for content in contents:
        jsonschema.validate(json.loads(content), schema)
    assert len(set(contents)) > 1


async def test_concurrent_requests_with_different_constraints_keep_their_own(structured_served, client):
    """Requests batched together (different grammars, one unconstrained) each get what they get alone."""
    requests = [
        dict(response_format=_json_schema(Order.model_json_schema())),
        dict(extra_body={"structured_outputs": {"regex": r"[a-c]{2}-[0-9]{1,3}"}}),
        dict(extra_body={"structured_outputs": {"choice": ["alpha", "beta", "gamma delta"]}}),
        dict(response_format=_json_schema(Verdict.model_json_schema())),
        dict(),
    ]
    common = dict(model="tiny-2k", messages=MESSAGES, max_tokens=40, temperature=0)
    alone = [client.chat.completions.create(**common, **r).choices[0].message.content for r in requests]
    together = openai.AsyncOpenAI(base_url=structured_served.base_url, api_key=API_KEY, max_retries=0, timeout=120)
    replies = await asyncio.gather(*(together.chat.completions.create(**common, **r) for r in requests))
    assert [reply.choices[0].message.content for reply in replies] == alone
