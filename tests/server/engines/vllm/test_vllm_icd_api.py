"""ICD through the OpenAI API on a real server whose model runs on the vLLM engine."""
from __future__ import annotations

import asyncio

import httpx
import openai
import pytest
import torch

from served_settings import API_KEY

pytestmark = pytest.mark.parametrize("served", ["vllm"], indirect=True)

DISTURBANCE = "You are a confused assistant who gives a fuzzy, unreliable impression of the question."


@torch.no_grad()
def icd_greedy(model, prompt, negative, steps, eos, alpha=1.0, beta=0.1):
    """Two plain forward passes per step, combined in float64; stops after eos."""
    generated = []
    for _ in range(steps):
        pos = model(torch.tensor([prompt + generated])).logits[0, -1].double().log_softmax(-1)
        neg = model(torch.tensor([negative + generated])).logits[0, -1].double().log_softmax(-1)
        scores = ((1 + alpha) * pos - alpha * neg).masked_fill(pos.exp() < beta * pos.exp().max(), float("-inf"))
        generated.append(int(scores.argmax()))
        if generated[-1] == eos:
            break
    return generated


def icd_body(**contrastive):
    return {"contrastive": {"method": "icd", **contrastive}}


@pytest.fixture
def client(served):
    return openai.OpenAI(base_url=served.base_url, api_key=API_KEY, max_retries=0, timeout=120)


def test_completion_with_negative_prompt_matches_reference(client, reference):
    model, tok = reference
    prompt, negative = "The capital of France", "Hello world! How are you"
    want = icd_greedy(model, tok.encode(prompt), tok.encode(negative), 12, tok.eos_token_id, 1.5, 0.05)
    out = client.completions.create(model="tiny", prompt=prompt, max_tokens=12, temperature=0,
                                    extra_body=icd_body(negative_prompt=negative, alpha=1.5, beta=0.05))
    assert out.choices[0].text == tok.decode(want, skip_special_tokens=True)
    assert out.usage.completion_tokens == len(want)
    plain = client.completions.create(model="tiny", prompt=prompt, max_tokens=12, temperature=0)
    assert plain.choices[0].text != out.choices[0].text


def test_chat_with_the_default_disturbance_matches_reference_and_streams(client, reference):
    model, tok = reference
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is Paris?"}]
    negative_messages = [{"role": "system", "content": DISTURBANCE}, messages[1]]
    ids = [tok.encode(tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False), add_special_tokens=False)
           for m in (messages, negative_messages)]
    want = icd_greedy(model, *ids, 10, tok.eos_token_id)
    kwargs = dict(model="tiny", messages=messages, max_tokens=10, temperature=0, extra_body=icd_body())
    whole = client.chat.completions.create(**kwargs)
    assert whole.choices[0].message.content == tok.decode(want, skip_special_tokens=True)
    chunks = list(client.chat.completions.create(**kwargs, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content


async def test_lock_step_eight_icd_requests_mixed_with_plain(served, reference):
    model, tok = reference
    client = openai.AsyncOpenAI(base_url=served.base_url, api_key=API_KEY, max_retries=0, timeout=300)
    words = ["One, two", "The capital of Italy", "def add(a, b)", "A quick brown fox", "Hello world",
             "Braid serves", "six, seven", "12345"]
    jobs = [(w, f"{DISTURBANCE}\n{w}", 4 + i) for i, w in enumerate(words)] + [("Rome", None, 9), ("Paris", None, 5)]

    async def one(prompt, negative, steps):
        extra = icd_body(negative_prompt=negative) if negative else {}
        out = await client.completions.create(model="tiny", prompt=prompt, max_tokens=steps, temperature=0,
                                              extra_body=extra)
        return out.choices[0].text

    texts = await asyncio.gather(*(one(*job) for job in jobs))
    for (prompt, negative, steps), text in zip(jobs, texts):
        ids = tok.encode(prompt)
        want = icd_greedy(model, ids, tok.encode(negative) if negative else ids, steps, tok.eos_token_id,
                          alpha=1.0 if negative else 0.0, beta=0.1 if negative else 0.0)
        assert text == tok.decode(want, skip_special_tokens=True), prompt


@pytest.mark.parametrize("body, param, words", [
    ({"steer": {"spans": [[0, 3]]}}, "steer", "engine 'transformers'"),
    ({"contrastive": {"method": "ascd", "steer": {"spans": [[0, 3]]}}}, "contrastive.method", "transformers engine"),
    (icd_body() | {"logprobs": 2}, None, "logprobs"),
])
def test_methods_the_vllm_engine_cannot_run_are_400(served, body, param, words):
    response = httpx.post(f"{served.base_url}/completions", headers=served.headers(), timeout=60,
                          json={"model": "tiny", "prompt": "The capital", "max_tokens": 4, **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert words in error["message"] and error["param"] == param
