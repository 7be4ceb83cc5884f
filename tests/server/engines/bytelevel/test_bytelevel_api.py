"""Byte-level models, a cross-tokenizer ensemble and proxy-tuning served by a real `braid serve`,
checked with the official openai client against the library run in the test process."""
from __future__ import annotations

import re
import time

import httpx
import openai
import pytest

from braid.server.decoding.bytelevel import END

from bytelevel_server_settings import API_KEY

PROMPT = "Hi, café"  # a multi-byte character; the walk covers a dozen byte positions


@pytest.fixture(scope="module")
def client(bytelevel_server):
    return openai.OpenAI(base_url=bytelevel_server.base_url, api_key=API_KEY, max_retries=0, timeout=300)


def _library_greedy(model, prompt: bytes, max_bytes: int) -> tuple[bytes, bool, list[float]]:
    out, ended = model.sample(prompt, max_bytes=max_bytes, temperature=0)
    steps = [float(model.next_byte_logprobs(prompt + out[:n])[out[n] if n < len(out) else END])
             for n in range(len(out) + ended)]
    return out, ended, steps


def test_models_endpoint_lists_the_byte_level_ids(client):
    cards = {c.id: c.model_extra for c in client.models.list().data}
    assert set(cards) == {"tiny", "bytes", "duo", "prod", "px"}
    assert all(cards[m]["engine"] == "bytelevel" for m in ("bytes", "duo", "prod", "px"))
    assert cards["duo"]["root"].startswith("mix(0.7*tiny, 0.3*")
    assert cards["bytes"]["max_model_len"] == 512 - 2  # BOS + one token may straddle the end


@pytest.mark.parametrize("model_id", ["bytes", "duo", "prod", "px"])
def test_echo_scores_each_prompt_byte_like_the_library(client, references, model_id):
    out = client.completions.create(model=model_id, prompt=PROMPT, max_tokens=0, echo=True, logprobs=2)
    prompt = PROMPT.encode()
    choice = out.choices[0]
    assert choice.text == PROMPT
    assert out.usage.prompt_tokens == len(prompt) and out.usage.completion_tokens == 0
    served = choice.logprobs.token_logprobs
    assert len(served) == len(prompt) and None not in served
    library = references.model(model_id)
    expected = [float(library.next_byte_logprobs(prompt[:n])[prompt[n]]) for n in range(len(prompt))]
    assert served == pytest.approx(expected, abs=1e-9)
    # the sum scores the text: log P(text starts with the prompt)
    assert sum(served) == pytest.approx(library.prefix_logprob(prompt), abs=1e-8)
    assert choice.logprobs.tokens[7] == "\\xc3" and choice.logprobs.tokens[:3] == ["H", "i", ","]
    top = choice.logprobs.top_logprobs[1]
    assert len(top) == 2 and max(top.values()) >= served[1] - 1e-12


@pytest.mark.parametrize("model_id", ["bytes", "duo"])
def test_greedy_output_is_the_library_greedy_byte_decode(client, references, model_id):
    out = client.completions.create(model=model_id, prompt=PROMPT, max_tokens=12, temperature=0, logprobs=0)
    want, ended, steps = _library_greedy(references.model(model_id), PROMPT.encode(), 12)
    choice = out.choices[0]
    assert choice.text == want.decode("utf-8", errors="ignore")
    assert choice.logprobs.token_logprobs == pytest.approx(steps, abs=1e-9)
    assert out.usage.completion_tokens == len(want) + ended  # bytes, plus END when the text ended
    assert choice.finish_reason == ("stop" if ended else "length")


def test_seeded_sampling_reproduces_the_library_sampler(client, references):
    kwargs = dict(temperature=0.8, top_p=0.9)
    out = client.completions.create(model="px", prompt=PROMPT, max_tokens=6, seed=5, n=2, **kwargs,
                                    extra_body={"top_k": 40})
    library = references.model("px")
    for choice in out.choices:
        want, _ = library.sample(PROMPT.encode(), max_bytes=6, seed=5 + choice.index, top_k=40, **kwargs)
        assert choice.text == want.decode("utf-8", errors="ignore")
    assert out.choices[0].text != out.choices[1].text


def test_streaming_chunks_are_whole_characters_and_add_up(client, references):
    library = references.model("bytes")
    seed = next(s for s in range(50) if max(library.sample(b"Hi", max_bytes=10, seed=s)[0]) >= 0x80)
    want, _ = library.sample(b"Hi", max_bytes=10, seed=seed)
    kwargs = dict(model="bytes", prompt="Hi", max_tokens=10, seed=seed, temperature=1.0)
    whole = client.completions.create(**kwargs).choices[0].text
    chunks = [c for c in client.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})]
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert "".join(texts) == whole == want.decode("utf-8", errors="ignore")
    assert all("\ufffd" not in t for t in texts) and any(not t.isascii() for t in texts)
    assert chunks[-1].usage.completion_tokens == len(want) + (len(want) < 10)


def test_stop_strings_end_the_text(client, references):
    want, _, _ = _library_greedy(references.model("bytes"), b"One, two", 8)
    text = want.decode("utf-8", errors="ignore")
    stop = text[4:6]
    out = client.completions.create(model="bytes", prompt="One, two", max_tokens=8, temperature=0, stop=[stop])
    assert out.choices[0].text == text[:text.index(stop)]
    assert out.choices[0].finish_reason == "stop"


def test_chat_renders_each_members_own_template(client, references):
    messages = [{"role": "user", "content": "Where is Paris?"}]
    out = client.chat.completions.create(model="duo", messages=messages, max_tokens=6, temperature=0,
                                         logprobs=True, top_logprobs=2)
    want, ended, steps = _library_greedy(references.model("duo", messages), b"", 6)
    assert out.choices[0].message.content == want.decode("utf-8", errors="ignore")
    entries = out.choices[0].logprobs.content
    assert [e.logprob for e in entries] == pytest.approx(steps, abs=1e-9)
    assert bytes(b for e in entries for b in e.bytes) == want  # one byte per entry (END has none)
    rendered = [r.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                for r in (references.tiny, references.sentencepiece)]
    assert "<|im_start|>assistant" in rendered[0] and "<start_of_turn>model" in rendered[1]
    assert out.usage.prompt_tokens == len(rendered[0].encode())  # counted in the first member's rendering


@pytest.mark.parametrize("body, message", [
    ({"model": "bytes", "prompt": "Hi", "presence_penalty": 0.5}, "presence_penalty"),
    ({"model": "bytes", "prompt": [72, 300]}, "bytes (0..255)"),
    ({"model": "bytes", "prompt": [72, 0xFF, 0xFE]}, "probability zero"),
    ({"model": "duo", "prompt": "Hi", "logit_bias": {"300": 1}}, "outside the vocabulary"),
    ({"model": "prod", "prompt": "Hi", "max_tokens": 600}, "maximum context length"),
    ({"model": "px", "prompt": "Hi", "contrastive": {"method": "icd"}}, "contrastive"),
])
def test_bad_requests_get_400(bytelevel_server, body, message):
    r = httpx.post(f"{bytelevel_server.base_url}/completions", json={"max_tokens": 2, **body},
                   headers=bytelevel_server.headers(), timeout=120)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]["message"]


def _metric(server, name: str, model: str = "duo") -> float:
    text = httpx.get(f"{server.root_url}/metrics", timeout=10).text
    found = re.search(rf'^{re.escape(name)}{{model_name="{model}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_client_that_disconnects_frees_the_engine(bytelevel_server):
    """It was running while the client read, and stopped early: far fewer bytes than asked for, and
    no more once the engine let it go."""
    body = {"model": "duo", "prompt": "Hi", "max_tokens": 400, "temperature": 1.0, "ignore_eos": True, "stream": True}
    generated_before = _metric(bytelevel_server, "braid:generation_tokens_total")
    with httpx.stream("POST", f"{bytelevel_server.base_url}/completions", json=body,
                      headers=bytelevel_server.headers(), timeout=120) as r:
        lines = r.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
        assert _metric(bytelevel_server, "braid:num_requests_running") == 1
    deadline = time.monotonic() + 30
    while _metric(bytelevel_server, "braid:num_requests_running") != 0:
        if time.monotonic() > deadline:
            pytest.fail("the aborted request still runs")
        time.sleep(0.2)
    generated = _metric(bytelevel_server, "braid:generation_tokens_total") - generated_before
    assert 0 < generated < 400
    time.sleep(1.0)
    assert _metric(bytelevel_server, "braid:generation_tokens_total") - generated_before == generated
