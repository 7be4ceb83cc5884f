"""Image chat and VCD through the OpenAI API on a real server whose tiny LLaVA runs on the vLLM engine.

References are plain ``LlavaForConditionalGeneration`` runs (no Braid or vLLM code): ``generate``
for plain image chat, and for VCD and ICD two full forward passes per step. VCD's negative branch
is defined as the processor's pixel tensor noised by ``decoding.visual_noise`` (the transformers
engine's definition): the reference feeds that tensor to the model directly.
"""
from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from braid.server.decoding.visual_noise import noise_image
from braid.server.engines.vllm.plugin import missing_plugin
from server_process import start_server, stop_server
from tiny_multimodal import with_hub_layout
from vision_reference import QUESTION, chat_answers, data_uri, image_messages, load_reference, pair_greedy, picture

KEY = "vllm-vision-key"
STEPS = 8


@pytest.fixture(scope="module")
def llava_dir(tiny_llava_dir, tmp_path_factory):
    return with_hub_layout(tiny_llava_dir, tmp_path_factory.mktemp("tiny-llava-hub"))


@pytest.fixture(scope="module")
def server(llava_dir, tmp_path_factory):
    assert not missing_plugin(), ("vLLM cannot load LLaVA here without Braid's vllm.general_plugins entry point: "
                                  "reinstall braid (pip install -e . --no-deps)")
    models = [{"id": "vision", "source": str(llava_dir), "engine": "vllm", "dtype": "float32", "max_num_seqs": 8,
               "engine_options": {"enforce_eager": True, "kv_cache_memory_bytes": 256 << 20}}]
    handle = start_server({"api_key": KEY, "log_level": "info", "models": models},
                          tmp_path_factory.mktemp("server-vllm-vision"))
    yield handle
    stop_server(handle)


@pytest.fixture(scope="module")
def ref(llava_dir):
    return load_reference(llava_dir)


async def test_vcd_icd_plain_image_and_text_chats_together_match_references(server, ref, tmp_path):
    model, processor = ref
    tokenizer, eos = processor.tokenizer, processor.tokenizer.eos_token_id
    want = chat_answers(model, processor, STEPS, tmp_path)
    ids, neg_ids, pixels = want.ids, want.neg_ids, want.pixels
    default_noise_want, _ = pair_greedy(model, ids, pixels, ids, noise_image(pixels, 500), STEPS, eos, alpha=0.5)

    client = openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=300)

    def ask(messages, **extra):
        return client.chat.completions.create(model="vision", messages=messages, max_tokens=STEPS, temperature=0,
                                              extra_body=extra or None)

    messages = image_messages(data_uri(want.image))
    vcd, default_noise, plain, from_file, text, icd = await asyncio.gather(
        client.chat.completions.create(model="vision", messages=messages, max_tokens=STEPS, temperature=0, seed=7,
                                       extra_body={"contrastive": {"method": "vcd", "noise_step": 300}}),
        ask(messages, contrastive={"method": "vcd", "alpha": 0.5}),
        ask(messages),
        ask(image_messages(f"file://{want.other_path}")),
        ask([{"role": "user", "content": QUESTION}]),
        ask(messages, contrastive={"method": "icd", "alpha": 0.5, "negative_system_prompt": "Be confused."}))
    for name, response, answer in (("vcd", vcd, want.vcd), ("default noise", default_noise, default_noise_want),
                                   ("plain", plain, want.plain), ("file", from_file, want.other),
                                   ("text", text, want.text), ("icd", icd, want.icd)):
        assert response.choices[0].message.content == tokenizer.decode(answer, skip_special_tokens=True), name
    assert plain.usage.prompt_tokens == len(ids)
    assert vcd.usage.prompt_tokens == 2 * len(ids)  # both branches read the prompt
    assert icd.usage.prompt_tokens == len(ids) + len(neg_ids)

    stream = await client.chat.completions.create(
        model="vision", messages=messages, max_tokens=STEPS, temperature=0, seed=7, stream=True,
        extra_body={"contrastive": {"method": "vcd", "noise_step": 300}})
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == \
        vcd.choices[0].message.content


@pytest.mark.parametrize("extra,param,needle", [
    ({"contrastive": {"method": "vcd"}, "logprobs": True}, None, "logprobs"),
    ({"contrastive": {"method": "ascd"}}, "contrastive.method", "transformers engine"),
    ({"steer": {"heads": "all"}}, "steer", "engine 'transformers'"),
])
def test_what_vllm_cannot_do_with_images_is_400(server, extra, param, needle):
    body = {"model": "vision", "messages": image_messages(data_uri(picture(3))), "max_tokens": 4, **extra}
    response = httpx.post(f"{server.base_url}/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert needle in error["message"] and error["param"] == param, error
