"""Contrastive pairs and steering in the HF engine, against plain transformers forwards (no Braid code)."""
from __future__ import annotations

import asyncio

import pytest
import torch
import pytest_asyncio

from braid.server.engines.base import EngineError, EngineRequest
from braid.server.engines.hf import HFEngine
from braid.server.engines.hf.methods import NEGATIVE_SUFFIX
from braid.server.plans import ContrastiveMethod, ContrastivePlan, DecodingPlan, SteeringPlan
from braid.server.sampling import SamplingSpec
from contrastive_reference import (run, Suppress, UpSteer, contrastive_greedy, load_reference_model, one_thread,
                                  steered_greedy)

pytestmark = pytest.mark.asyncio(loop_scope="session")

PAIRS = [  # (positive prompt, negative prompt): token 0 is the pad id, keep it out
    ([17, 42, 99, 5, 6], [200, 150, 17, 42, 99, 5, 6]),
    ([60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71], [9, 9, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71]),
    ([300, 7, 8], [1, 300, 7, 8]),
]
PLAIN = [[5, 6, 7, 8], [120, 121, 122]]
STEPS = 14


def icd(negative, alpha=1.0, beta=0.1):
    return DecodingPlan(contrastive=ContrastivePlan(ContrastiveMethod.ICD, alpha, beta, negative))


def steer_cfg(positions, heads="all", strength=0.625):
    return SteeringPlan(positions, heads, auto_heads=32, strength=strength, negative_strength=1.0,
                        negative_fraction=0.1)


@pytest.fixture(scope="module")
def ref_model(tiny_llama_dir):
    return load_reference_model(tiny_llama_dir)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    with one_thread():
        yield


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine(tiny_llama_dir):
    # 512 bytes per cached token: 160 cells cannot hold 3 pairs + 2 plain sequences as they grow.
    eng = HFEngine("tiny", str(tiny_llama_dir), max_num_seqs=6, dtype="float32", kv_cache_memory_bytes=160 * 512)
    await eng.start()
    yield eng
    await eng.shutdown()



def assert_matches(outs, tokens, want_tokens, dists, atol=1e-4):
    assert tokens == want_tokens
    for out, dist in zip(outs, dists):
        entry = out.logprobs[0]
        assert entry.logprob == pytest.approx(float(dist[entry.token_id]), abs=atol)
        for token, logprob in entry.top:
            assert logprob == pytest.approx(float(dist[token]), abs=atol)


async def test_pairs_step_together_and_match_reference_under_preemption(engine, ref_model, monkeypatch):
    steps, preempted = [], []
    run_model, preempt = engine.runner.run, engine.scheduler.preempt
    monkeypatch.setattr(engine.runner, "run", lambda seqs, *a: (steps.append({s.request_id for s in seqs}),
                                                                  run_model(seqs, *a))[1])
    monkeypatch.setattr(engine.scheduler, "preempt", lambda unit: (preempted.append(unit.request_id),
                                                                  preempt(unit))[1])
    jobs = [run(engine, f"pair-{i}", pos, max_tokens=STEPS, temperature=0.0, logprobs=4,
                plan=icd(neg)) for i, (pos, neg) in enumerate(PAIRS)]
    jobs += [run(engine, f"plain-{i}", p, max_tokens=STEPS, temperature=0.0, logprobs=2) for i, p in enumerate(PLAIN)]
    results = await asyncio.gather(*jobs)
    assert preempted, "the KV budget should have forced a preemption"
    for ids in steps:
        for i in range(len(PAIRS)):
            assert (f"pair-{i}" in ids) == (f"pair-{i}{NEGATIVE_SUFFIX}" in ids)
    assert max(len(ids) for ids in steps) > 2  # pairs and plain sequences share forwards
    for (pos, neg), (outs, tokens) in zip(PAIRS, results):
        want, dists = contrastive_greedy(ref_model, pos, neg, STEPS, None)
        assert_matches(outs, tokens, want, dists)
        assert all(o.num_prompt_tokens == len(pos) for o in outs)
        assert tokens != steered_greedy(ref_model, pos, STEPS, None)[0]  # the contrast changes the output
    for prompt, (outs, tokens) in zip(PLAIN, results[len(PAIRS):]):
        want, dists = steered_greedy(ref_model, prompt, STEPS, None)
        assert_matches(outs, tokens, want, dists)
    assert engine.stats().running == 0 and not engine.scheduler.waiting
    assert sorted(engine.scheduler._free_slots) == list(range(6))


async def test_alpha_zero_is_plain_decoding(engine, ref_model):
    pos, neg = PAIRS[1]
    (outs, tokens), (plain_outs, plain) = await asyncio.gather(
        run(engine, "alpha0", pos, max_tokens=STEPS, temperature=0.0, logprobs=3, plan=icd(neg, 0.0, 0.0)),
        run(engine, "alpha0-plain", pos, max_tokens=STEPS, temperature=0.0, logprobs=3))
    assert tokens == plain
    for a, b in zip(outs, plain_outs):
        assert a.logprobs[0].logprob == pytest.approx(b.logprobs[0].logprob, abs=1e-5)


async def test_sampled_pairs_are_reproducible_with_a_seed(engine):
    pos, neg = PAIRS[0]
    spec = dict(max_tokens=STEPS, temperature=1.0, top_p=0.9, seed=7, logprobs=20, plan=icd(neg, 1.0, 0.4))
    (outs_a, a), (_, b), (_, c) = await asyncio.gather(run(engine, "s1", pos, **spec), run(engine, "s2", pos, **spec),
                                                       run(engine, "s3", pos, **{**spec, "seed": 8}))
    assert a == b and a != c
    # Implausible tokens have probability 0 and are never listed.
    assert all(lp > float("-inf") for out in outs_a for _, lp in out.logprobs[0].top)
    assert min(len(out.logprobs[0].top) for out in outs_a) < 20


async def test_steering_matches_reference_and_strength_zero_is_plain(engine, ref_model):
    prompt = PAIRS[1][0]
    heads = [(0, 1), (1, 0)]
    plan = DecodingPlan(steer=steer_cfg([2, 3, 4, 5], [list(h) for h in heads], 3.0))
    (outs, tokens), (zero_outs, zero), (_, plain) = await asyncio.gather(
        run(engine, "steer", prompt, max_tokens=STEPS, temperature=0.0, logprobs=3, plan=plan),
        run(engine, "steer0", prompt, max_tokens=STEPS, temperature=0.0, logprobs=3,
            plan=DecodingPlan(steer=steer_cfg([2, 3, 4, 5], "all", 0.0))),
        run(engine, "steer-plain", prompt, max_tokens=STEPS, temperature=0.0))
    want, dists = steered_greedy(ref_model, prompt, STEPS, None, UpSteer([2, 3, 4, 5], set(heads), 3.0))
    assert_matches(outs, tokens, want, dists)
    plain_want, plain_dists = steered_greedy(ref_model, prompt, STEPS, None)
    assert (dists[0] - plain_dists[0]).abs().max() > 0.02  # steering moves it far beyond the tolerance
    assert zero == plain == plain_want
    assert_matches(zero_outs, zero, plain_want, plain_dists, atol=1e-5)


async def test_ascd_matches_reference(engine, ref_model):
    prompt = PAIRS[1][0]
    positions = [1, 2, 3, 4, 5, 6]
    plan = DecodingPlan(contrastive=ContrastivePlan(ContrastiveMethod.ASCD, 1.0, 0.1, prompt,
                                                    steer=steer_cfg(positions, [[0, 0], [1, 1]])))
    outs, tokens = await run(engine, "ascd", prompt, max_tokens=STEPS, temperature=0.0, logprobs=3, plan=plan)
    want, dists = contrastive_greedy(ref_model, prompt, prompt, STEPS, None,
                                     pos_how=UpSteer(positions, {(0, 0), (1, 1)}, 0.625),
                                     neg_how=Suppress(positions, 1.0, 0.1))
    assert_matches(outs, tokens, want, dists)
    _, unsuppressed = contrastive_greedy(ref_model, prompt, prompt, 1, None,
                                         pos_how=UpSteer(positions, {(0, 0), (1, 1)}, 0.625))
    finite = torch.isfinite(dists[0]) & torch.isfinite(unsuppressed[0])
    assert (dists[0] - unsuppressed[0])[finite].abs().max() > 30 * 1e-4  # the negative branch's suppression matters


async def test_aborting_a_pair_frees_both_slots(engine):
    pos, neg = PAIRS[0]
    spec = SamplingSpec(max_tokens=300, temperature=0.0, plan=icd(neg))
    outputs = engine.generate(EngineRequest("abandoned", pos, spec))
    assert (await outputs.__anext__()).token_ids
    assert len(engine.scheduler.running[0].branches) == 2
    await outputs.aclose()
    for _ in range(200):
        if not engine.scheduler.running and len(engine.scheduler._free_slots) == 6:
            break
        await asyncio.sleep(0.01)
    assert not engine.scheduler.running and sorted(engine.scheduler._free_slots) == list(range(6))


@pytest.mark.parametrize("plan,message", [
    (DecodingPlan(icd([5], 1.0, 0.1).contrastive, steer=steer_cfg([0], [[2, 0]])), "do not exist"),
    (DecodingPlan(contrastive=ContrastivePlan(ContrastiveMethod.VCD, 1.0, 0.1, [5])), "'vcd'"),
    (icd([]), "non-empty"),
])
async def test_invalid_method_specs_are_engine_errors(engine, plan, message):
    with pytest.raises(EngineError, match=message):
        engine.validate(SamplingSpec(max_tokens=2, plan=plan))


async def test_contrastive_needs_two_slots(tiny_llama_dir):
    lone = HFEngine("lone", str(tiny_llama_dir), max_num_seqs=1)
    with pytest.raises(EngineError, match="max_num_seqs"):
        lone.validate(SamplingSpec(max_tokens=2, plan=icd([5])))
