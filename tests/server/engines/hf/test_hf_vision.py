"""Images and VCD in the HF engine, against plain ``LlavaForConditionalGeneration`` forwards."""
from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio
import torch

from braid.server.decoding.visual_noise import noise_image
from braid.server.engines.base import EngineError
from braid.server.engines.hf import HFEngine
from braid.server.plans import Capability, ContrastiveMethod, ContrastivePlan, DecodingPlan, ImageInputs
from braid.server.sampling import SamplingSpec
from contrastive_reference import one_thread, run
from vision_reference import encode, pair_greedy, picture, plain_greedy

pytestmark = pytest.mark.asyncio(loop_scope="session")

STEPS = 10


@pytest.fixture(scope="module")
def ref(tiny_llava_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_llava_dir, dtype=torch.float32).eval()
    return model, AutoProcessor.from_pretrained(tiny_llava_dir)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    with one_thread():
        yield


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine(tiny_llava_dir):
    # 512 bytes per cached token: 420 cells hold the first three pairs (longest prompt 65) for a few steps only.
    eng = HFEngine("vision", str(tiny_llava_dir), max_num_seqs=8, dtype="float32", kv_cache_memory_bytes=420 * 512)
    await eng.start()
    yield eng
    await eng.shutdown()



def vcd(pixels, step, alpha=1.0, beta=0.1, prompt=None):
    return DecodingPlan(images=ImageInputs(pixels), contrastive=ContrastivePlan(
        ContrastiveMethod.VCD, alpha, beta, negative_prompt_ids=prompt, noise_step=step))


async def test_vcd_icd_and_plain_image_requests_batch_and_survive_preemption(engine, ref, monkeypatch):
    model, processor = ref
    preempted = []
    preempt = engine.scheduler.preempt
    monkeypatch.setattr(engine.scheduler, "preempt", lambda unit: (preempted.append(unit.request_id),
                                                                  preempt(unit))[1])
    a, pix_a = encode(processor, [picture(0)], "Describe this.")
    b, pix_b = encode(processor, [picture(1)], "What is it?")
    two, pix_two = encode(processor, [picture(2), picture(3)], "Compare them.")
    neg_a, _ = encode(processor, [picture(0)], "Describe this.", system="Be confused.")
    text = processor.tokenizer.encode("One, two, three")
    greedy = dict(max_tokens=STEPS, temperature=0.0, logprobs=3)
    results = await asyncio.gather(
        run(engine, "vcd-a", a, **greedy, seed=11, plan=vcd(pix_a, 500, prompt=a)),
        run(engine, "vcd-b", b, **greedy, plan=vcd(pix_b, 200, alpha=0.5, beta=0.2, prompt=b)),
        run(engine, "icd-a", a, **greedy, plan=DecodingPlan(images=ImageInputs(pix_a), contrastive=ContrastivePlan(
            ContrastiveMethod.ICD, 1.0, 0.1, negative_prompt_ids=neg_a))),
        run(engine, "two-images", two, **greedy, plan=DecodingPlan(images=ImageInputs(pix_two))),
        run(engine, "text", text, **greedy),
    )
    assert preempted, "the KV budget should force preemption (and recomputation of image prefills)"
    wants = [
        pair_greedy(model, a, pix_a, a, noise_image(pix_a, 500, 11), STEPS, None),
        pair_greedy(model, b, pix_b, b, noise_image(pix_b, 200, None), STEPS, None, alpha=0.5, beta=0.2),
        pair_greedy(model, a, pix_a, neg_a, pix_a, STEPS, None),
        plain_greedy(model, two, pix_two, STEPS, None),
        plain_greedy(model, text, None, STEPS, None),
    ]
    for (outs, tokens), (want, dists) in zip(results, wants):
        assert tokens == want
        for out, dist in zip(outs, dists):
            entry = out.logprobs[0]
            assert entry.logprob == pytest.approx(float(dist[entry.token_id]), abs=1e-4)
            for token, logprob in entry.top:
                assert logprob == pytest.approx(float(dist[token]), abs=1e-4)
    assert results[0][1] != wants[2][0]  # the noised image and the disturbance instruction contrast differently


async def test_images_and_vcd_are_validated(engine, tiny_llama_dir, ref):
    _, processor = ref
    ids, pix = encode(processor, [picture(0)], "Hi")
    with pytest.raises(EngineError, match="no images"):
        await run(engine, "vcd-no-image", ids, max_tokens=2, plan=DecodingPlan(contrastive=ContrastivePlan(
            ContrastiveMethod.VCD, 1.0, 0.1, negative_prompt_ids=ids, noise_step=500)))
    text_engine = HFEngine("text", str(tiny_llama_dir), dtype="float32")
    assert Capability.IMAGES not in text_engine.capabilities and Capability.VCD not in text_engine.capabilities
    with pytest.raises(EngineError, match="does not accept image inputs"):
        text_engine.validate(SamplingSpec(max_tokens=2, plan=DecodingPlan(images=ImageInputs(pix))))
