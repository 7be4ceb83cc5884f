"""Contrastive decoding and steering through the OpenAI API, on a real transformers-engine server.

Every served output is checked against ``contrastive_reference``: plain transformers forwards of
both branches, recomputed from scratch each step, with an independent float64 eager attention
for steering.
"""
from __future__ import annotations

import asyncio

import httpx
import openai
import pytest
from transformers import AutoTokenizer

from braid.server.api.protocol import DEFAULT_DISTURBANCE
from contrastive_reference import Suppress, UpSteer, contrastive_greedy, load_reference_model, steered_greedy
from server_process import start_server, stop_server

KEY = "methods-key"
STEPS = 10


@pytest.fixture(scope="session")
def methods_server(tiny_llama_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("server-methods")
    settings = {"api_key": KEY, "max_queue": 16, "log_level": "info",
                "models": [{"id": "tiny", "source": str(tiny_llama_dir), "engine": "transformers",
                            "dtype": "float32", "max_num_seqs": 8}]}
    # One torch thread: faster for a tiny model, and much faster on a shared CPU.
    handle = start_server(settings, workdir, env={"OMP_NUM_THREADS": "1"})
    handle.home = workdir / "home"
    yield handle
    stop_server(handle)


@pytest.fixture(scope="module")
def client(methods_server):
    return openai.OpenAI(base_url=methods_server.base_url, api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def ref(tiny_llama_dir):
    return load_reference_model(tiny_llama_dir), AutoTokenizer.from_pretrained(tiny_llama_dir)


def positions(tokenizer, text: str, start: int, end: int, special: bool) -> list[int]:
    offsets = tokenizer(text, add_special_tokens=special, return_offsets_mapping=True)["offset_mapping"]
    return [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]


def assert_logprobs(want: list[int], chosen: list[float], tops: list[list[float]], dists, k: int, atol=1e-4):
    """Served logprobs of the chosen tokens and the top alternatives (values; the texts of byte-level
    tokens are ambiguous) against the reference distributions."""
    assert len(chosen) == len(want) == len(dists) == len(tops)
    for token, logprob, top, dist in zip(want, chosen, tops, dists):
        assert logprob == pytest.approx(float(dist[token]), abs=atol)
        best = dist.topk(k).values.tolist()
        assert 0 < len(top) <= k
        for value in top:  # a completions top_logprobs dict may merge tokens with the same text
            assert min(abs(value - b) for b in best) <= atol
        if len(top) == k:
            assert sorted(top, reverse=True) == pytest.approx(best, abs=atol)


def completion_logprobs(choice) -> tuple[list[float], list[list[float]]]:
    lp = choice.logprobs
    return lp.token_logprobs, [list(top.values()) for top in lp.top_logprobs]


def chat_logprobs(entries) -> tuple[list[float], list[list[float]]]:
    return [e.logprob for e in entries], [[t.logprob for t in e.top_logprobs] for e in entries]


def test_icd_completion_matches_reference(client, ref):
    model, tokenizer = ref
    prompt = "The capital of France is"
    pos, neg = tokenizer.encode(prompt), tokenizer.encode(f"{DEFAULT_DISTURBANCE}\n{prompt}")
    want, dists = contrastive_greedy(model, pos, neg, STEPS, tokenizer.eos_token_id)
    out = client.completions.create(model="tiny", prompt=prompt, max_tokens=STEPS, temperature=0, logprobs=3,
                                    extra_body={"contrastive": {"method": "icd"}})
    choice = out.choices[0]
    assert choice.text == tokenizer.decode(want, skip_special_tokens=True)
    assert_logprobs(want, *completion_logprobs(choice), dists, k=3)
    assert out.usage.prompt_tokens == len(pos) + len(neg)  # both branches read their prompt
    assert out.usage.completion_tokens == len(want)


def test_icd_chat_streams_the_reference(client, ref):
    model, tokenizer = ref
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is Paris?"}]
    negative_system = "Answer wrongly."
    render = lambda msgs: tokenizer.encode(  # noqa: E731
        tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True), add_special_tokens=False)
    pos = render(messages)
    neg = render([{"role": "system", "content": negative_system}, messages[1]])
    want, dists = contrastive_greedy(model, pos, neg, STEPS, tokenizer.eos_token_id, alpha=0.5, beta=0.2)
    chunks = list(client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=STEPS, temperature=0, logprobs=True, top_logprobs=2, stream=True,
        stream_options={"include_usage": True},
        extra_body={"contrastive": {"method": "icd", "alpha": 0.5, "beta": 0.2,
                                    "negative_system_prompt": negative_system}}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == tokenizer.decode(want, skip_special_tokens=True)
    entries = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert_logprobs(want, *chat_logprobs(entries), dists, k=2)
    assert chunks[-1].usage.prompt_tokens == len(pos) + len(neg)


def test_ascd_with_auto_heads_matches_reference_and_caches_the_profile(client, ref, methods_server):
    model, tokenizer = ref
    user = "In this story the capital of France is Lyon. What is the capital of France?"
    messages = [{"role": "user", "content": user}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    base = rendered.rindex(user)
    prompt = tokenizer.encode(rendered, add_special_tokens=False)
    steered = positions(tokenizer, rendered, base, base + 44, special=False)
    assert len(steered) > 5
    # The tiny model has 4 heads: "auto" with the default top-32 selects all of them.
    want, dists = contrastive_greedy(model, prompt, prompt, STEPS, tokenizer.eos_token_id,
                                     pos_how=UpSteer(steered, None, 0.625), neg_how=Suppress(steered, 1.0, 0.1))
    out = client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=STEPS, temperature=0, logprobs=True, top_logprobs=3,
        extra_body={"contrastive": {"method": "ascd", "steer": {"spans": [[0, 44]]}}})
    assert out.choices[0].message.content == tokenizer.decode(want, skip_special_tokens=True)
    assert_logprobs(want, *chat_logprobs(out.choices[0].logprobs.content), dists, k=3)
    assert out.usage.prompt_tokens == 2 * len(prompt)
    assert len(list((methods_server.home / "steering").glob("heads-*.json"))) == 1


def test_span_steering_matches_reference_and_strength_zero_is_plain(client, ref):
    model, tokenizer = ref
    prompt = "Braid serves language models with contrastive decoding. One, two"
    steered = positions(tokenizer, prompt, 6, 22, special=True)
    heads = [[0, 1], [1, 0]]
    want, dists = steered_greedy(model, tokenizer.encode(prompt), STEPS, tokenizer.eos_token_id,
                                 UpSteer(steered, {tuple(h) for h in heads}, 2.0))
    out = client.completions.create(model="tiny", prompt=prompt, max_tokens=STEPS, temperature=0, logprobs=2,
                                    extra_body={"steer": {"spans": [[6, 22]], "heads": heads, "strength": 2.0}})
    assert out.choices[0].text == tokenizer.decode(want, skip_special_tokens=True)
    assert_logprobs(want, *completion_logprobs(out.choices[0]), dists, k=2)
    plain_want, plain_dists = steered_greedy(model, tokenizer.encode(prompt), STEPS, tokenizer.eos_token_id)
    zero = client.completions.create(model="tiny", prompt=prompt, max_tokens=STEPS, temperature=0, logprobs=2,
                                     extra_body={"steer": {"spans": [[6, 22]], "heads": "all", "strength": 0.0}})
    assert zero.choices[0].text == tokenizer.decode(plain_want, skip_special_tokens=True)
    assert_logprobs(plain_want, *completion_logprobs(zero.choices[0]), plain_dists, k=2, atol=1e-5)
    assert zero.usage.prompt_tokens == len(tokenizer.encode(prompt))


def test_alpha_zero_reproduces_plain_decoding(client):
    kwargs = dict(model="tiny", prompt="One, two, three", max_tokens=16, temperature=0, logprobs=1)
    plain = client.completions.create(**kwargs)
    icd = client.completions.create(**kwargs, extra_body={"contrastive": {"method": "icd", "alpha": 0.0, "beta": 0.0}})
    assert icd.choices[0].text == plain.choices[0].text
    assert icd.choices[0].logprobs.token_logprobs == pytest.approx(plain.choices[0].logprobs.token_logprobs, abs=1e-5)


def test_n_seed_and_stop_with_contrastive(client, ref):
    tokenizer = ref[1]
    kwargs = dict(model="tiny", prompt="Hello world", max_tokens=12, temperature=1.0, n=3, seed=99,
                  extra_body={"contrastive": {"method": "icd", "negative_prompt": "Goodbye"}, "ignore_eos": True})
    first, second = client.completions.create(**kwargs), client.completions.create(**kwargs)
    assert [c.text for c in first.choices] == [c.text for c in second.choices]
    assert len({c.text for c in first.choices}) > 1
    # Each prompt (positive and negative) counted once, however large n is.
    assert first.usage.prompt_tokens == len(tokenizer.encode("Hello world")) + len(tokenizer.encode("Goodbye"))
    text = first.choices[0].text
    stop = text[len(text) // 2:len(text) // 2 + 2]
    cut = client.completions.create(**{**kwargs, "n": 1}, stop=[stop])
    assert cut.choices[0].text == text[:text.index(stop)] and cut.choices[0].finish_reason == "stop"


async def test_concurrent_contrastive_and_plain_requests_match_references(methods_server, ref):
    model, tokenizer = ref
    client = openai.AsyncOpenAI(base_url=methods_server.base_url, api_key=KEY, max_retries=0, timeout=300)
    prompts = ["The capital of France", "def add(a, b):", "One, two, three", "Hello world! How",
               "A quick brown fox", "Braid serves", "The capital of Italy", "six, seven"]
    icd = lambda p: {"contrastive": {"method": "icd", "negative_prompt": "Nonsense: " + p}}  # noqa: E731
    jobs = [client.completions.create(model="tiny", prompt=p, max_tokens=STEPS, temperature=0, extra_body=icd(p))
            for p in prompts]
    jobs += [client.completions.create(model="tiny", prompt=p, max_tokens=STEPS, temperature=0) for p in prompts[:4]]
    results = await asyncio.gather(*jobs)
    for p, out in zip(prompts, results):
        want, _ = contrastive_greedy(model, tokenizer.encode(p), tokenizer.encode("Nonsense: " + p), STEPS,
                                     tokenizer.eos_token_id)
        assert out.choices[0].text == tokenizer.decode(want, skip_special_tokens=True)
    for p, out in zip(prompts, results[len(prompts):]):
        want, _ = steered_greedy(model, tokenizer.encode(p), STEPS, tokenizer.eos_token_id)
        assert out.choices[0].text == tokenizer.decode(want, skip_special_tokens=True)


@pytest.mark.parametrize("path,body,param,needle", [
    ("completions", {"prompt": "Hi there", "steer": {"spans": [[3, 40]]}}, "steer.spans", "past the text"),
    ("completions", {"prompt": "Hi there", "steer": {"spans": [[5, 2]]}}, "steer.spans", "start < end"),
    ("completions", {"prompt": [5, 6, 7], "steer": {"spans": [[0, 1]]}}, "steer.spans", "token ids"),
    ("completions", {"prompt": "Hi there", "steer": {"spans": [[0, 2]], "heads": [[7, 0]]}}, None, "do not exist"),
    ("completions", {"prompt": "Hi", "contrastive": {"method": "vcd"}}, "contrastive.method", "multimodal"),
    ("completions", {"prompt": "Hi", "contrastive": {"method": "dola"}}, "contrastive.method", "icd"),
    ("completions", {"prompt": "Hi", "contrastive": {"method": "ascd"}}, "contrastive.steer", "spans"),
    ("completions", {"prompt": "Hi", "contrastive": {"method": "ascd", "steer": {"heads": "all"}}},
     "contrastive.steer.spans", "needs spans"),
    ("completions", {"prompt": "Hi", "steer": {}}, "steer.spans", "needs spans"),
    ("completions", {"prompt": "Hi", "contrastive": {"method": "icd", "alpha": -1}}, "contrastive.alpha", "0"),
    ("completions", {"prompt": "Hi", "contrastive": {"method": "icd"}, "steer": {"spans": [[0, 1]]}}, "steer",
     "ascd"),
    ("completions", {"prompt": "Hi", "contrastive": {"method": "icd", "steer": {"spans": [[0, 1]]}}},
     "contrastive.steer", "ascd"),
    ("completions", {"prompt": "Hi", "contrastive": {"method": "ascd", "steer": {"spans": [[0, 1]]}},
                     "steer": {"spans": [[0, 1]]}}, "steer", "once"),
    ("chat/completions", {"messages": [{"role": "user", "content": "Hi"}],
                          "contrastive": {"method": "icd", "negative_prompt": "x"}}, "contrastive.negative_prompt",
     "negative_system_prompt"),
])
def test_bad_method_requests_are_400_with_openai_error_shape(methods_server, path, body, param, needle):
    response = httpx.post(f"{methods_server.base_url}/{path}", json={"model": "tiny", "max_tokens": 4, **body},
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["code"] == 400 and needle in error["message"]
    if param is not None:
        assert error["param"] == param
