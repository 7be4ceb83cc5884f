"""HFEngine on the tiny Llama: batched greedy/logprobs/seeds against plain transformers forwards."""
from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio
import torch

from braid.server.engines.base import EngineError, EngineRequest
from braid.server.engines.hf import HFEngine
from braid.server.sampling import SamplingSpec

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Token 0 (<|endoftext|>) is the pad id: keep it out so generate() builds no padding mask.
PROMPTS = [
    [5],
    [17, 42, 99],
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
    [200, 150, 100, 50, 25],
    [60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85],
    [300, 7],
]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine(tiny_llama_dir):
    eng = HFEngine("tiny", str(tiny_llama_dir), max_num_seqs=4, dtype="float32")
    await eng.start()
    yield eng
    await eng.shutdown()


async def collect(engine, request_id, prompt, **sampling):
    outs = [o async for o in engine.generate(EngineRequest(request_id, list(prompt), SamplingSpec(**sampling)))]
    return outs, [t for o in outs for t in o.token_ids]


def greedy_reference(model, prompt, n):
    ids = torch.tensor([prompt])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n,
                         min_new_tokens=n, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def full_log_softmax(model, tokens):
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].float().log_softmax(-1)


def record_batch_sizes(engine, monkeypatch) -> list[int]:
    sizes, run = [], engine.runner.run

    def recording_run(seqs, *args):
        sizes.append(len(seqs))
        return run(seqs, *args)

    monkeypatch.setattr(engine.runner, "run", recording_run)
    return sizes


async def test_concurrent_greedy_matches_generate(engine, reference, monkeypatch):
    model, _ = reference
    sizes = record_batch_sizes(engine, monkeypatch)
    results = await asyncio.gather(*(
        collect(engine, f"greedy-{i}", p, max_tokens=24, temperature=0.0) for i, p in enumerate(PROMPTS)
    ))
    assert max(sizes) == 4 and len(sizes) < 3 * 24  # batched, never more than max_num_seqs
    for prompt, (outs, tokens) in zip(PROMPTS, results):
        assert tokens == greedy_reference(model, prompt, 24)
        assert all(len(o.token_ids) == 1 and o.num_prompt_tokens == len(prompt) for o in outs)
        assert [o.finish_reason for o in outs] == [None] * 23 + ["length"]
    assert engine.stats().running == 0


async def test_logprobs_match_a_full_forward(engine, reference):
    model, _ = reference
    specs = [dict(temperature=0.0), dict(temperature=1.0, seed=3), dict(temperature=0.7, top_k=20, seed=4)]
    results = await asyncio.gather(*(
        collect(engine, f"lp-{i}", PROMPTS[i + 2], max_tokens=10, logprobs=5, **s) for i, s in enumerate(specs)
    ))
    for i, (outs, tokens) in enumerate(results):
        prompt = PROMPTS[i + 2]
        want = full_log_softmax(model, prompt + tokens)[len(prompt) - 1:-1]
        got = [lp for o in outs for lp in o.logprobs]
        for step, (lp, token) in enumerate(zip(got, tokens)):
            assert lp.token_id == token
            assert lp.logprob == pytest.approx(float(want[step, token]), abs=1e-4)
            top_v, top_i = want[step].topk(5)
            assert [t for t, _ in lp.top] == top_i.tolist()
            torch.testing.assert_close(torch.tensor([v for _, v in lp.top]), top_v, atol=1e-4, rtol=0)


async def test_prompt_logprobs_match_a_forward(engine, reference):
    model, _ = reference
    prompt = PROMPTS[4]
    (outs, _), _ = await asyncio.gather(
        collect(engine, "plp", prompt, max_tokens=3, temperature=0.0, prompt_logprobs=2),
        collect(engine, "plp-neighbour", PROMPTS[2], max_tokens=3, temperature=0.0),
    )
    plp = outs[0].prompt_logprobs
    assert all(o.prompt_logprobs is None for o in outs[1:])
    assert len(plp) == len(prompt) and plp[0] is None
    want = full_log_softmax(model, prompt)
    for pos in range(1, len(prompt)):
        assert plp[pos].token_id == prompt[pos]
        assert plp[pos].logprob == pytest.approx(float(want[pos - 1, prompt[pos]]), abs=1e-4)
        assert [t for t, _ in plp[pos].top] == want[pos - 1].topk(2).indices.tolist()


async def test_seed_gives_the_same_output_in_any_batch(engine):
    spec = dict(max_tokens=16, temperature=1.0, top_p=0.95, seed=1234)
    _, alone = await collect(engine, "seed-alone", PROMPTS[3], **spec)
    results = await asyncio.gather(
        collect(engine, "seed-other-1", PROMPTS[1], max_tokens=20, temperature=1.0),
        collect(engine, "seed-batched", PROMPTS[3], **spec),
        collect(engine, "seed-other-2", PROMPTS[4], max_tokens=5, temperature=0.0),
        collect(engine, "seed-different", PROMPTS[3], **{**spec, "seed": 99}),
    )
    assert results[1][1] == alone
    assert results[3][1] != alone


async def test_stop_token_ends_with_the_token(engine, reference):
    model, _ = reference
    greedy = greedy_reference(model, PROMPTS[2], 10)
    stop = greedy[4]
    first = greedy.index(stop)
    outs, tokens = await collect(engine, "stop", PROMPTS[2], max_tokens=10, temperature=0.0, stop_token_ids=(stop,))
    assert tokens == greedy[:first + 1]
    assert outs[-1].finish_reason == "stop"


async def wait_until(predicate, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_closing_the_stream_aborts_and_frees_the_slot(engine):
    stream = engine.generate(EngineRequest("abort-close", PROMPTS[2], SamplingSpec(max_tokens=400, temperature=0.0)))
    await stream.__anext__()
    await stream.__anext__()
    assert engine.stats().running == 1
    await stream.aclose()
    await wait_until(lambda: engine.stats().running == 0)

    async def consume():
        async for _ in engine.generate(EngineRequest("abort-cancel", PROMPTS[1], SamplingSpec(max_tokens=400))):
            pass

    task = asyncio.create_task(consume())
    await wait_until(lambda: engine.stats().running == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: engine.stats() == type(engine.stats())(running=0, waiting=0))


async def test_invalid_requests_raise_engine_error(engine):
    for prompt, spec in [([], SamplingSpec(max_tokens=1)), ([10**6], SamplingSpec(max_tokens=1)),
                         ([1] * 600, SamplingSpec(max_tokens=1)), ([1], SamplingSpec(max_tokens=0))]:
        with pytest.raises(EngineError):
            await collect(engine, "bad", prompt, **spec.__dict__)


async def test_more_requests_than_seqs_wait_then_complete(tiny_llama_dir, reference):
    """max_num_seqs=2 and a KV budget too small for all: requests queue, get preempted and
    recomputed, and still produce exactly the greedy reference; context ends with 'length'."""
    model, _ = reference
    eng = HFEngine("tiny-small", str(tiny_llama_dir), max_num_seqs=2, max_model_len=48,
                   kv_cache_memory_bytes=512 * 80)  # 512 bytes per token: 80 cache cells
    await eng.start()
    seen, preempted, preempt = [], [], eng.scheduler.preempt
    eng.scheduler.preempt = lambda seq: (preempted.append(seq.request_id), preempt(seq))

    async def run(i, prompt):
        tokens = []
        async for out in eng.generate(EngineRequest(f"q{i}", prompt, SamplingSpec(max_tokens=30, temperature=0.0))):
            seen.append(eng.stats())
            tokens += out.token_ids
        return tokens, out.finish_reason

    try:
        prompts = PROMPTS[:4] + [PROMPTS[4]]
        results = await asyncio.gather(*(run(i, p) for i, p in enumerate(prompts)))
    finally:
        await eng.shutdown()
    assert max(s.running for s in seen) == 2
    assert max(s.waiting for s in seen) >= 1
    assert preempted
    for prompt, (tokens, reason) in zip(prompts, results):
        n = min(30, 48 - len(prompt))
        assert tokens == greedy_reference(model, prompt, n)
        assert reason == "length"
