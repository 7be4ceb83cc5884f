"""Image chat, VCD and ASCD on image tokens through the OpenAI API, on a real transformers-engine
server with a tiny LLaVA.

References are plain ``LlavaForConditionalGeneration`` runs (no Braid code): ``generate`` for plain
image chat, for VCD two full forward passes per step, over the clean and the noised image, and for
ASCD two passes over the clean image whose language model runs the test's own steerable attention.
"""
from __future__ import annotations

import asyncio
import base64

import httpx
import openai
import pytest

from contrastive_reference import Suppress, UpSteer
from server_process import start_server, stop_server
from tiny_multimodal import IMAGE_TOKENS
from vision_reference import (QUESTION, chat_answers, data_uri, encode, image_messages, load_reference,
                              load_steerable_llava, pair_greedy, picture, plain_greedy)

KEY = "vision-key"
STEPS = 8


@pytest.fixture(scope="session")
def vision_server(tiny_llava_dir, tiny_llama_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("server-vision")
    models = [{"id": "vision", "source": str(tiny_llava_dir), "engine": "transformers", "dtype": "float32",
               "max_num_seqs": 8},
              {"id": "text", "source": str(tiny_llama_dir), "engine": "transformers", "dtype": "float32",
               "max_num_seqs": 4}]
    handle = start_server({"api_key": KEY, "log_level": "info", "models": models}, workdir,
                          env={"OMP_NUM_THREADS": "1"})
    yield handle
    stop_server(handle)


@pytest.fixture(scope="module")
def ref(tiny_llava_dir):
    return load_reference(tiny_llava_dir)


def chat(server, body: dict) -> httpx.Response:
    return httpx.post(f"{server.base_url}/chat/completions", json={"max_tokens": STEPS, **body},
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=120)


async def test_vcd_plain_image_and_text_requests_together_match_references(vision_server, ref, tmp_path):
    model, processor = ref
    tokenizer = processor.tokenizer
    want = chat_answers(model, processor, STEPS, tmp_path)
    image, ids, neg_ids = want.image, want.ids, want.neg_ids

    client = openai.AsyncOpenAI(base_url=vision_server.base_url, api_key=KEY, max_retries=0, timeout=300)
    vcd, plain, from_file, text, icd = await asyncio.gather(
        client.chat.completions.create(model="vision", messages=image_messages(data_uri(image)), max_tokens=STEPS,
                                       temperature=0, seed=7, logprobs=True, top_logprobs=3,
                                       extra_body={"contrastive": {"method": "vcd", "noise_step": 300}}),
        client.chat.completions.create(model="vision", messages=image_messages(data_uri(image)), max_tokens=STEPS,
                                       temperature=0),
        client.chat.completions.create(model="vision", messages=image_messages(f"file://{want.other_path}"),
                                       max_tokens=STEPS, temperature=0),
        client.chat.completions.create(model="vision", messages=[{"role": "user", "content": QUESTION}],
                                       max_tokens=STEPS, temperature=0),
        client.chat.completions.create(model="vision", messages=image_messages(data_uri(image)), max_tokens=STEPS,
                                       temperature=0, extra_body={"contrastive": {
                                           "method": "icd", "alpha": 0.5, "negative_system_prompt": "Be confused."}}))
    assert plain.choices[0].message.content == tokenizer.decode(want.plain, skip_special_tokens=True)
    assert from_file.choices[0].message.content == tokenizer.decode(want.other, skip_special_tokens=True)
    assert plain.usage.prompt_tokens == len(ids)
    assert icd.choices[0].message.content == tokenizer.decode(want.icd, skip_special_tokens=True)
    assert icd.usage.prompt_tokens == len(ids) + len(neg_ids)

    assert vcd.choices[0].message.content == tokenizer.decode(want.vcd, skip_special_tokens=True)
    entries = vcd.choices[0].logprobs.content
    assert len(entries) == len(want.vcd)
    for token, entry, dist in zip(want.vcd, entries, want.vcd_dists):
        assert entry.logprob == pytest.approx(float(dist[token]), abs=1e-4)
        assert [t.logprob for t in entry.top_logprobs] == pytest.approx(dist.topk(3).values.tolist(), abs=1e-4)
    assert vcd.usage.prompt_tokens == 2 * len(ids)  # both branches read the prompt
    assert text.choices[0].message.content == tokenizer.decode(want.text, skip_special_tokens=True)


def test_vcd_alpha_zero_is_plain_decoding(vision_server):
    body = {"model": "vision", "messages": image_messages(data_uri(picture(2))), "temperature": 0,
            "logprobs": True, "max_tokens": 12}
    plain = chat(vision_server, body).json()["choices"][0]
    vcd = chat(vision_server, {**body, "contrastive": {"method": "vcd", "alpha": 0.0, "beta": 0.0}}).json()
    assert vcd["choices"][0]["message"]["content"] == plain["message"]["content"]
    assert ([e["logprob"] for e in vcd["choices"][0]["logprobs"]["content"]]
            == pytest.approx([e["logprob"] for e in plain["logprobs"]["content"]], abs=1e-5))


@pytest.mark.parametrize("model,messages,contrastive,needle", [
    ("vision", image_messages("https://example.com/cat.png"), None, "not fetched"),
    ("vision", image_messages("data:image/png;base64,@@not base64@@"), None, "base64"),
    ("vision", image_messages("data:image/png;base64," + base64.b64encode(b"not an image").decode()), None,
     "could not be decoded"),
    ("vision", image_messages("/nonexistent/picture.png"), None, "cannot read"),
    ("text", image_messages("data:image/png;base64,AAAA"), None, "does not accept image"),
    ("vision", [{"role": "user", "content": QUESTION}], {"method": "vcd"}, "image_url"),
    ("text", [{"role": "user", "content": QUESTION}], {"method": "vcd"}, "multimodal"),
    ("vision", None, {"method": "vcd", "negative_system_prompt": "x"}, "noised"),
    ("vision", None, {"method": "ascd", "steer": {"spans": [[0, 4]]}}, "steers its image tokens"),
    ("vision", [{"role": "user", "content": QUESTION}], {"method": "ascd"}, "spans"),
])
def test_bad_image_requests_are_400_with_openai_error_shape(vision_server, model, messages, contrastive, needle):
    # messages None: a valid image, so the request gets as far as the method check
    body = {"model": model, "messages": messages or image_messages(data_uri(picture(3)))}
    if contrastive is not None:
        body["contrastive"] = contrastive
    assert_400(chat(vision_server, body), needle)


@pytest.mark.parametrize("extra,param,needle", [
    ({"steer": {"spans": [[0, 4]]}}, "steer.spans", "steers its image tokens"),
    ({"contrastive": {"method": "ascd"}, "steer": {"spans": [[0, 4]]}}, "steer.spans", "steers its image tokens"),
    ({"contrastive": {"method": "vcd"}, "steer": {}}, "steer", "ascd"),
])
def test_steer_spans_with_images_are_400(vision_server, extra, param, needle):
    response = chat(vision_server, {"model": "vision", "messages": image_messages(data_uri(picture(3))), **extra})
    assert_400(response, needle)
    assert response.json()["error"]["param"] == param


def assert_400(response: httpx.Response, needle: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["code"] == 400 and needle in error["message"], error["message"]


@pytest.fixture(scope="module")
def steer_ref(tiny_llava_dir):
    return load_steerable_llava(tiny_llava_dir)


async def test_ascd_and_steer_on_image_tokens_match_references(vision_server, ref, steer_ref):
    _, processor = ref
    tokenizer, eos = processor.tokenizer, processor.tokenizer.eos_token_id
    image = picture(7)
    ids, pixels = encode(processor, [image], QUESTION)
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    steered = [i for i, t in enumerate(ids) if t == image_token]
    assert len(steered) == IMAGE_TOKENS
    plain_want, plain_dists = plain_greedy(steer_ref, ids, pixels, STEPS, eos)
    # The tiny model has 4 heads: "auto" with the default top-32 selects all of them.
    ascd_want, ascd_dists = pair_greedy(steer_ref, ids, pixels, ids, pixels, STEPS, eos,
                                        pos_how=UpSteer(steered, None, 0.625), neg_how=Suppress(steered, 1.0, 0.1))
    heads = [[0, 1], [1, 0]]
    tuned_want, _ = pair_greedy(steer_ref, ids, pixels, ids, pixels, STEPS, eos, alpha=0.5,
                                pos_how=UpSteer(steered, {tuple(h) for h in heads}, 2.0),
                                neg_how=Suppress(steered, 0.5, 0.25))
    steer_want, _ = plain_greedy(steer_ref, ids, pixels, STEPS, eos, UpSteer(steered, {(1, 0)}, 5.0))
    # Steering the image tokens changes the distribution (default ASCD) and the answer (stronger settings).
    assert abs(float(ascd_dists[0][ascd_want[0]] - plain_dists[0][ascd_want[0]])) > 1e-2
    assert tuned_want != plain_want and steer_want != plain_want and steer_want != tuned_want

    client = openai.AsyncOpenAI(base_url=vision_server.base_url, api_key=KEY, max_retries=0, timeout=300)
    messages = image_messages(data_uri(image))
    ascd, tuned, steer, plain = await asyncio.gather(
        client.chat.completions.create(model="vision", messages=messages, max_tokens=STEPS, temperature=0,
                                       logprobs=True, top_logprobs=3, extra_body={"contrastive": {"method": "ascd"}}),
        client.chat.completions.create(model="vision", messages=messages, max_tokens=STEPS, temperature=0,
                                       extra_body={"contrastive": {"method": "ascd", "alpha": 0.5, "steer": {
                                           "heads": heads, "strength": 2.0, "negative_strength": 0.5,
                                           "negative_fraction": 0.25}}}),
        client.chat.completions.create(model="vision", messages=messages, max_tokens=STEPS, temperature=0,
                                       extra_body={"steer": {"heads": [[1, 0]], "strength": 5.0}}),
        client.chat.completions.create(model="vision", messages=messages, max_tokens=STEPS, temperature=0))
    assert plain.choices[0].message.content == tokenizer.decode(plain_want, skip_special_tokens=True)
    assert ascd.choices[0].message.content == tokenizer.decode(ascd_want, skip_special_tokens=True)
    entries = ascd.choices[0].logprobs.content
    assert len(entries) == len(ascd_want)
    for token, entry, dist in zip(ascd_want, entries, ascd_dists):
        assert entry.logprob == pytest.approx(float(dist[token]), abs=1e-4)
        assert [t.logprob for t in entry.top_logprobs] == pytest.approx(dist.topk(3).values.tolist(), abs=1e-4)
    assert ascd.usage.prompt_tokens == 2 * len(ids)  # both branches read the prompt
    assert tuned.choices[0].message.content == tokenizer.decode(tuned_want, skip_special_tokens=True)
    assert steer.choices[0].message.content == tokenizer.decode(steer_want, skip_special_tokens=True)
    assert steer.usage.prompt_tokens == len(ids)
