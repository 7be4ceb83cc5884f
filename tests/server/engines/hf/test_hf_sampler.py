"""The HF engine's sampler against a float64 reference written from vLLM's documented semantics."""
from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from braid.server.engines.hf.sampler import SamplingRow, sample, sampling_logits, token_logprobs
from braid.server.sampling import SamplingSpec

VOCAB = 12


def reference_probs(logits: list[float], spec: SamplingSpec, prompt: list[int], output: list[int]) -> list[float]:
    """Plain-Python float64: bias, repetition, frequency, presence, temperature, min_p, top_k, top_p."""
    x = list(logits)
    for t, b in (spec.logit_bias or {}).items():
        x[t] += b
    for t in set(prompt) | set(output):
        x[t] = x[t] / spec.repetition_penalty if x[t] > 0 else x[t] * spec.repetition_penalty
    for t, c in Counter(output).items():
        x[t] -= spec.frequency_penalty * c + spec.presence_penalty
    if spec.greedy:
        best = max(range(len(x)), key=x.__getitem__)
        return [1.0 if i == best else 0.0 for i in range(len(x))]
    x = [v / spec.temperature for v in x]
    keep = set(range(len(x)))

    def probs_of(ids):
        m = max(x[i] for i in ids)
        z = sum(math.exp(x[i] - m) for i in ids)
        return {i: math.exp(x[i] - m) / z for i in ids}

    if spec.min_p > 0:
        p = probs_of(keep)
        keep = {i for i in keep if p[i] >= spec.min_p * max(p.values())}
    if spec.top_k > 0:
        kth = sorted((x[i] for i in keep), reverse=True)[min(spec.top_k, len(keep)) - 1]
        keep = {i for i in keep if x[i] >= kth}
    if spec.top_p < 1.0:
        p = probs_of(keep)
        ascending = sorted(keep, key=lambda i: p[i])
        cum, dropped = 0.0, set()
        for i in ascending[:-1]:
            cum += p[i]
            if cum <= 1 - spec.top_p:
                dropped.add(i)
        keep -= dropped
    p = probs_of(keep)
    return [p.get(i, 0.0) for i in range(len(x))]


LOGITS = [2.0, -1.0, 0.5, 3.0, -2.5, 1.5, 0.0, 2.9, -0.7, 1.1, 0.3, -3.0]
PROMPT = [0, 2, 2, 4]
OUTPUT = [3, 3, 6, 9]

CASES = {
    "plain": SamplingSpec(max_tokens=1),
    "temperature": SamplingSpec(max_tokens=1, temperature=0.6),
    "logit_bias": SamplingSpec(max_tokens=1, logit_bias={1: 5.0, 3: -2.0}),
    "repetition": SamplingSpec(max_tokens=1, repetition_penalty=1.7),
    "frequency": SamplingSpec(max_tokens=1, frequency_penalty=0.8),
    "presence": SamplingSpec(max_tokens=1, presence_penalty=1.3),
    "all_penalties": SamplingSpec(max_tokens=1, repetition_penalty=1.3, frequency_penalty=0.4,
                                  presence_penalty=-0.5, logit_bias={4: 3.0}),
    "top_k": SamplingSpec(max_tokens=1, top_k=3),
    "top_p": SamplingSpec(max_tokens=1, top_p=0.7),
    "min_p": SamplingSpec(max_tokens=1, min_p=0.2, temperature=1.5),
    "combined": SamplingSpec(max_tokens=1, temperature=0.8, top_k=5, top_p=0.9, min_p=0.05,
                             repetition_penalty=1.2, frequency_penalty=0.3, logit_bias={8: 4.0}),
    "greedy_with_penalties": SamplingSpec(max_tokens=1, temperature=0.0, repetition_penalty=2.0,
                                          frequency_penalty=1.0, logit_bias={0: 0.5}),
}


def test_processed_distribution_matches_reference():
    rows = [SamplingRow(spec, PROMPT, OUTPUT) for spec in CASES.values()]
    logits = torch.tensor([LOGITS] * len(rows))
    got = sampling_logits(logits, rows)
    for (name, spec), row in zip(CASES.items(), got):
        want = torch.tensor(reference_probs(LOGITS, spec, PROMPT, OUTPUT), dtype=torch.float64)
        if spec.greedy:
            assert int(row.argmax()) == int(want.argmax()), name
            continue
        probs = row.double().softmax(-1)
        assert torch.equal(probs > 0, want > 0), name
        torch.testing.assert_close(probs, want, atol=1e-6, rtol=1e-5, msg=name)
    assert torch.equal(logits, torch.tensor([LOGITS] * len(rows)))  # input untouched


def test_samples_follow_the_distribution_and_seed():
    spec = CASES["combined"]
    want = torch.tensor(reference_probs(LOGITS, spec, PROMPT, OUTPUT))
    n = 4000
    gen = torch.Generator().manual_seed(7)
    rows = [SamplingRow(spec, PROMPT, OUTPUT, gen) for _ in range(n)]
    tokens = sample(torch.tensor([LOGITS] * n), rows)
    freq = torch.bincount(tokens, minlength=VOCAB).double() / n
    assert set(tokens.tolist()) <= set(torch.nonzero(want).flatten().tolist())
    assert (freq - want.double()).abs().max() < 0.03

    def draw(seed):
        g = torch.Generator().manual_seed(seed)
        return [int(sample(torch.tensor([LOGITS]), [SamplingRow(CASES["plain"], [], [], g)])) for _ in range(30)]

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)


def test_greedy_rows_ignore_the_generator_and_mix_with_random_rows():
    rows = [SamplingRow(CASES["plain"], [], [], torch.Generator().manual_seed(0)),
            SamplingRow(SamplingSpec(max_tokens=1, temperature=0.0), [], [])]
    tokens = sample(torch.tensor([LOGITS, LOGITS]), rows)
    assert int(tokens[1]) == 3


@pytest.mark.parametrize("num_top", [0, 3])
def test_token_logprobs(num_top):
    logits = torch.tensor([LOGITS, LOGITS[::-1]])
    lp = logits.log_softmax(-1)
    out = token_logprobs(lp, torch.tensor([5, 0]), num_top)
    assert [o.token_id for o in out] == [5, 0]
    assert out[0].logprob == pytest.approx(float(lp[0, 5]))
    if num_top == 0:
        assert out[0].top == ()
    else:
        assert [t for t, _ in out[0].top] == [3, 7, 0]
        assert out[1].top[0] == (11 - 3, pytest.approx(float(lp[1, 8])))
