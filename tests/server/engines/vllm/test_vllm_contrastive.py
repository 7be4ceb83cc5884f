"""ICD on the vLLM engine: pairs of vLLM requests tied by a logits processor, against a reference
computed here from two plain transformers forward passes per step (float64, no Braid code)."""
from __future__ import annotations

import asyncio
import logging

import pytest
import pytest_asyncio
import torch

from braid.server.engines.base import EngineError, EngineRequest
from braid.server.engines.vllm.engine import ContrastivePairSplit, VLLMEngine
from braid.server.plans import Capability, ContrastiveMethod, ContrastivePlan, DecodingPlan, SteeringPlan
from braid.server.sampling import SamplingSpec

pytestmark = pytest.mark.asyncio(loop_scope="session")

MAX_NUM_SEQS = 12
MAX_BATCHED_TOKENS = 256  # vLLM chunks longer prefills (block size 128 on CPU)
PROMPTS = [[5, 17, 42], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13], [200, 150, 100, 50, 25], [300, 7], [60, 61, 62, 63]]
NEGATIVES = [[9, 8, 7, 6], [40, 41, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13], [44], [300, 8, 9], [61, 60, 62]]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine(tiny_llama_dir):
    eng = VLLMEngine("tiny", str(tiny_llama_dir), dtype="float32", max_num_seqs=MAX_NUM_SEQS,
                     max_num_batched_tokens=MAX_BATCHED_TOKENS, enforce_eager=True, kv_cache_memory_bytes=256 << 20)
    await eng.start()
    yield eng
    await eng.shutdown()


@torch.no_grad()
def icd_reference(model, prompt, negative, steps, alpha=1.0, beta=0.1, bias=None):
    """Greedy ICD by full re-forwards: both branches see the same generated tokens."""
    generated = []
    for _ in range(steps):
        pos = model(torch.tensor([prompt + generated])).logits[0, -1].double().log_softmax(-1)
        neg = model(torch.tensor([negative + generated])).logits[0, -1].double().log_softmax(-1)
        scores = (1 + alpha) * pos - alpha * neg
        probs = pos.exp()
        scores[probs < beta * probs.max()] = float("-inf")
        for token, value in (bias or {}).items():
            scores[token] += value
        top = scores.topk(2).values
        assert top[0] - top[1] > 1e-3, "near-tie: this reference step cannot decide the token"
        generated.append(int(scores.argmax()))
    return generated


@torch.no_grad()
def greedy_reference(model, prompt, steps):
    generated = []
    for _ in range(steps):
        generated.append(int(model(torch.tensor([prompt + generated])).logits[0, -1].argmax()))
    return generated


def icd(max_tokens, negative, alpha=1.0, beta=0.1, **sampling):
    plan = DecodingPlan(contrastive=ContrastivePlan(ContrastiveMethod.ICD, alpha, beta, list(negative)))
    return SamplingSpec(max_tokens=max_tokens, plan=plan, **{"temperature": 0.0, **sampling})


async def run(engine, request_id, prompt, spec):
    outs = [o async for o in engine.generate(EngineRequest(request_id, list(prompt), spec))]
    return outs, [t for o in outs for t in o.token_ids]


async def test_greedy_icd_matches_two_forward_reference(engine, reference):
    model, _ = reference
    cases = [(0, 1.0, 0.1), (1, 1.0, 0.1), (2, 0.5, 0.0), (3, 2.0, 0.3)]
    results = await asyncio.gather(*(run(engine, f"ref-{i}", PROMPTS[i], icd(10, NEGATIVES[i], a, b))
                                     for i, a, b in cases))
    for (i, a, b), (outs, tokens) in zip(cases, results):
        assert tokens == icd_reference(model, PROMPTS[i], NEGATIVES[i], 10, a, b), (i, a, b)
        assert outs[-1].finish_reason == "length" and all(o.num_prompt_tokens == len(PROMPTS[i]) for o in outs)
    # The contrast changes the output (else this test would prove nothing).
    _, plain = await run(engine, "ref-plain", PROMPTS[0], SamplingSpec(max_tokens=10, temperature=0.0))
    assert plain != results[0][1]


async def test_alpha_zero_is_plain_greedy(engine):
    for i in (0, 4):
        _, plain = await run(engine, f"plain-{i}", PROMPTS[i], SamplingSpec(max_tokens=12, temperature=0.0))
        _, zero = await run(engine, f"zero-{i}", PROMPTS[i], icd(12, NEGATIVES[i], alpha=0.0))
        assert zero == plain


async def test_sampling_acts_on_the_combined_scores(engine, reference):
    model, _ = reference
    want = icd_reference(model, PROMPTS[1], NEGATIVES[1], 8)
    # top_k=1 keeps only the best contrastive score, whatever the temperature and seed.
    _, top1 = await run(engine, "top1", PROMPTS[1], icd(8, NEGATIVES[1], temperature=1.5, top_k=1, seed=7))
    assert top1 == want
    # A seeded sample is reproducible, and both branches drew the same tokens (no split error).
    spec = icd(16, NEGATIVES[1], temperature=1.0, seed=11)
    (_, first), (_, second) = await asyncio.gather(run(engine, "seed-a", PROMPTS[1], spec),
                                                   run(engine, "seed-b", PROMPTS[1], spec))
    assert first == second and len(first) == 16


async def test_logit_bias_is_added_to_the_scores(engine, reference):
    model, _ = reference
    prompt, negative = PROMPTS[2], NEGATIVES[2]
    plain = icd_reference(model, prompt, negative, 6)
    # Biasing the second plausible token of step 0 over the first changes the output; biasing a
    # token outside the plausible set cannot (it stays -inf), unlike a bias on the raw logits.
    with torch.no_grad():
        pos = model(torch.tensor([prompt])).logits[0, -1].double().log_softmax(-1)
        neg = model(torch.tensor([negative])).logits[0, -1].double().log_softmax(-1)
    scores = 2 * pos - neg
    scores[pos.exp() < 0.1 * pos.exp().max()] = float("-inf")
    ranked = scores.argsort(descending=True).tolist()
    second, implausible = ranked[1], ranked[-1]
    assert scores[second] > float("-inf") and scores[implausible] == float("-inf")
    bias = {second: float(scores[ranked[0]] - scores[second]) + 1.0, implausible: 100.0}
    _, tokens = await run(engine, "bias", prompt, icd(6, negative, logit_bias=bias))
    want = icd_reference(model, prompt, negative, 6, bias=bias)
    assert tokens == want and want[0] == second and want != plain


async def test_lock_step_concurrent_icd_and_plain(engine, reference):
    """8 ICD pairs and 8 plain requests at once, more than max_num_seqs: all match their references."""
    model, _ = reference
    jobs = []
    for k in range(8):
        i = k % len(PROMPTS)
        prompt = PROMPTS[i] + [k + 20]
        jobs.append(("icd", prompt, NEGATIVES[i], 6 + k))
        jobs.append(("plain", prompt, None, 10 - k))
    results = await asyncio.gather(*(
        run(engine, f"mix-{n}", prompt, icd(steps, negative) if kind == "icd"
            else SamplingSpec(max_tokens=steps, temperature=0.0))
        for n, (kind, prompt, negative, steps) in enumerate(jobs)
    ))
    for (kind, prompt, negative, steps), (_, tokens) in zip(jobs, results):
        want = icd_reference(model, prompt, negative, steps) if kind == "icd" else greedy_reference(model, prompt, steps)
        assert tokens == want, (kind, prompt)
    assert engine.stats().running == 0 and engine.stats().waiting == 0
    assert engine._slots.used == 0


async def test_closing_the_stream_aborts_both_branches(engine):
    stream = engine.generate(EngineRequest("leave", PROMPTS[0], icd(400, NEGATIVES[0])))
    await stream.__anext__()
    await stream.aclose()
    assert engine._engine.output_processor.get_num_unfinished_requests() == 0
    assert engine._slots.used == 0 and engine.stats().running == 0


async def test_prompts_chunked_into_different_steps_are_retried(engine, reference, caplog):
    """Together longer than max_num_batched_tokens, the two prompts prefill in different steps:
    the first attempt splits before its first token, the retry finds both prompts cached."""
    model, _ = reference
    prompt = [3 + (7 * i) % 300 for i in range(200)]
    negative = [44, 45, 46] + prompt
    assert len(prompt) + len(negative) > MAX_BATCHED_TOKENS
    with caplog.at_level(logging.WARNING, logger="braid.server.engines.vllm.engine"):
        _, tokens = await run(engine, "long", prompt, icd(6, negative))
    assert "split before its first token (attempt 1 of 3)" in caplog.text and "attempt 2" not in caplog.text
    assert tokens == icd_reference(model, prompt, negative, 6)


async def test_split_pair_fails_loudly(engine, reference, monkeypatch):
    """Fault injection: the two branches enter different engine steps. The request must fail with
    ContrastivePairSplit (not hang, not stream a wrong token), and the engine keep serving."""
    model, _ = reference
    vllm = engine._engine

    async def admit_apart(group):
        positive = await vllm.add_request(*group[0])
        await asyncio.sleep(0.3)  # many engine steps: the positive branch runs alone
        return [positive, await vllm.add_request(*group[1])]

    monkeypatch.setattr(engine._admitter, "admit", admit_apart)
    with pytest.raises(ContrastivePairSplit, match="stopped stepping together after 0 tokens"):
        await asyncio.wait_for(run(engine, "split", PROMPTS[1], icd(50, NEGATIVES[1])), 60)
    monkeypatch.undo()
    assert vllm.output_processor.get_num_unfinished_requests() == 0 and engine._slots.used == 0
    _, tokens = await run(engine, "after-split", PROMPTS[1], icd(5, NEGATIVES[1]))
    assert tokens == icd_reference(model, PROMPTS[1], NEGATIVES[1], 5)


@pytest.mark.parametrize("plan, logprobs, message", [
    (DecodingPlan(steer=SteeringPlan([0], "auto", strength=1.0)), None, "engine 'transformers'"),
    (DecodingPlan(contrastive=ContrastivePlan(ContrastiveMethod.ASCD, 1.0, 0.1, [1], steer=SteeringPlan([0]))),
     None, "engine 'transformers'"),
    (DecodingPlan(contrastive=ContrastivePlan(ContrastiveMethod.ICD, 1.0, 0.1, [1])), 0, "logprobs"),
    (DecodingPlan(contrastive=ContrastivePlan(ContrastiveMethod.ICD, 1.0, 0.1, [1] * 600)), None,
     "maximum context length"),
])
async def test_what_the_vllm_engine_refuses(engine, plan, logprobs, message):
    assert Capability.ICD in engine.capabilities and Capability.STEER not in engine.capabilities
    assert not {Capability.ASCD, Capability.VCD} & engine.capabilities
    with pytest.raises(EngineError, match=message):
        engine.validate(SamplingSpec(max_tokens=4, logprobs=logprobs, plan=plan))
