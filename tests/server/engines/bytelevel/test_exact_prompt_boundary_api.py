"""``prompt_boundary: "exact"`` on a token-level model (the transformers-served `tiny`): prompts cut
mid-token are conditioned on exactly, then ordinary token-level decoding continues."""
from __future__ import annotations

import httpx
import openai
import pytest
import torch

from braid.server.decoding.bytelevel import ByteLM, CanonicalityChecker, TokenVocabulary, TransformersLM

from bytelevel_server_settings import API_KEY

PROMPTS = ["The capit", "Hello wor", "def ad", "One, tw"]
MAX_NEW = 6


@pytest.fixture(scope="module")
def client(bytelevel_server):
    return openai.OpenAI(base_url=bytelevel_server.base_url, api_key=API_KEY, max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def tiny32(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    return tokenizer, model


@torch.no_grad()
def _greedy(model, ids: list[int], max_new: int, eos: int) -> list[int]:
    out = []
    for _ in range(max_new):
        token = int(model(torch.tensor([ids + out])).logits[0, -1].argmax())
        out.append(token)
        if token == eos:
            break
    return out


def _exact_then_greedy(tiny32, prompt: str) -> str:
    """Independent of the server's split: the whole prompt read at byte level after BOS, the most
    likely token sequence reaching past it, then plain greedy decoding from there."""
    tokenizer, model = tiny32
    vocab = TokenVocabulary.from_tokenizer(tokenizer)
    lm = ByteLM(TransformersLM(model), vocab, CanonicalityChecker(tokenizer, vocab),
                context_ids=(tokenizer.bos_token_id,))
    data = prompt.encode()
    ids, ended, _ = max(lm.continuation_choices(data), key=lambda choice: choice[2])
    extra = vocab.decode(ids)[len(data):].decode()
    if ended:
        return extra
    rest = _greedy(model, [tokenizer.bos_token_id, *ids], MAX_NEW, tokenizer.eos_token_id)
    return extra + tokenizer.decode(rest, skip_special_tokens=True)


def test_exact_boundary_conditions_on_the_prompt_text(client, tiny32):
    differs = 0
    for prompt in PROMPTS:
        exact = client.completions.create(model="tiny", prompt=prompt, max_tokens=MAX_NEW, temperature=0,
                                          extra_body={"prompt_boundary": "exact"}).choices[0].text
        assert exact == _exact_then_greedy(tiny32, prompt), prompt
        plain = client.completions.create(model="tiny", prompt=prompt, max_tokens=MAX_NEW, temperature=0)
        differs += exact != plain.choices[0].text
    assert differs  # the prompt-boundary problem is real: the plain tokenization continues differently


def test_exact_boundary_streams_the_same_text(client):
    kwargs = dict(model="tiny", prompt="The capit", max_tokens=MAX_NEW, temperature=0,
                  extra_body={"prompt_boundary": "exact"})
    whole = client.completions.create(**kwargs).choices[0].text
    streamed = "".join(c.choices[0].text for c in client.completions.create(**kwargs, stream=True) if c.choices)
    assert streamed == whole and whole


def test_seeded_exact_boundary_is_reproducible(client):
    kwargs = dict(model="tiny", prompt="Hello wor", max_tokens=4, temperature=1.0, seed=3, n=2,
                  extra_body={"prompt_boundary": "exact"})
    first = [c.text for c in client.completions.create(**kwargs).choices]
    assert first == [c.text for c in client.completions.create(**kwargs).choices]


@pytest.mark.parametrize("body, message", [
    ({"prompt": [1, 2, 3]}, "text prompts"),
    ({"prompt": "The capit", "echo": True}, "echo or logprobs"),
    ({"prompt": "The capit", "prompt_boundary": "fuzzy"}, "prompt_boundary"),
])
def test_bad_exact_boundary_requests_get_400(bytelevel_server, body, message):
    r = httpx.post(f"{bytelevel_server.base_url}/completions",
                   json={"model": "tiny", "max_tokens": 2, "prompt_boundary": "exact", **body},
                   headers=bytelevel_server.headers(), timeout=120)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]["message"]
