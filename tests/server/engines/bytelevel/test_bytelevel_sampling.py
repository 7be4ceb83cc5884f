"""The byte-level engine's tokenizer adapter and sampler, against direct computations."""
from __future__ import annotations

import numpy as np
import pytest

from braid.server.decoding.bytelevel.next_byte import END
from braid.server.api.detokenizer import TextStream
from braid.server.engines.bytelevel.sampler import byte_logprob, choose_byte, sampling_logprobs
from braid.server.engines.bytelevel.tokenizer import ByteTokenizer
from braid.server.sampling import SamplingSpec

TEXT = "Ça va? 中文 😀!"


def _spec(**kwargs) -> SamplingSpec:
    return SamplingSpec(**{"max_tokens": 8, "stop_token_ids": (END,), **kwargs})


@pytest.fixture
def logprobs():
    p = np.random.default_rng(3).dirichlet(np.full(257, 0.5))
    p[[10, 20, 30]] = 0.0
    with np.errstate(divide="ignore"):
        return np.log(p / p.sum())


def test_tokens_are_utf8_bytes_and_end_is_eos():
    tok = ByteTokenizer()
    ids = tok.encode(TEXT)
    assert ids == list(TEXT.encode()) and len(tok) == 257 and tok.eos_token_id == END
    assert tok.decode(ids + [END]) == TEXT
    assert tok.decode(ids[:-6]) == TEXT[:-3]  # the unfinished emoji is held back
    assert tok.decode([0xC3], skip_special_tokens=False) == "\\xc3"
    assert tok.decode([72, END], skip_special_tokens=False) == "H<|end|>"


def test_incremental_detokenization_emits_whole_characters_and_honours_stops():
    tok = ByteTokenizer()
    stream = TextStream(tok, stop=["文 😀"], prefix_ids=tok.encode("Say: "))
    pieces = [stream.add([b]).text for b in TEXT.encode()]
    pieces.append(stream.finish().text)
    assert "".join(pieces) == TEXT[:TEXT.index("文 😀")]
    assert all("\ufffd" not in p for p in pieces)
    # a prompt that ends inside a character: the completion finishes it
    stream = TextStream(tok, prefix_ids=list("café".encode())[:-1])
    assert stream.add([0xA9]).text + stream.add([ord("!")]).text + stream.finish().text == "é!"


def reference_probs(logprobs: np.ndarray, temperature: float, top_k: int = 0, top_p: float = 1.0) -> np.ndarray:
    """vLLM's order, written out: softmax(logprobs / T); keep the k most likely (ties with the k-th);
    renormalize; drop the least likely while their cumulative probability is <= 1 - top_p."""
    p = np.exp(logprobs / temperature)
    p /= p.sum()
    if top_k:
        p = np.where(p >= np.sort(p)[-top_k], p, 0.0)
        p /= p.sum()
    if top_p < 1.0:
        ascending = np.argsort(p, kind="stable")
        drop = np.cumsum(p[ascending]) <= 1 - top_p
        drop[-1] = False
        p[ascending[drop]] = 0.0
        p /= p.sum()
    return p


@pytest.mark.parametrize("temperature, top_k, top_p", [
    (1.0, 0, 1.0), (0.7, 0, 1.0), (1.3, 50, 1.0), (0.8, 0, 0.6), (0.7, 50, 0.8), (1.0, 5, 0.5), (0.5, 3, 0.99)])
def test_sampling_follows_temperature_top_k_and_top_p(logprobs, temperature, top_k, top_p):
    got = np.exp(sampling_logprobs(logprobs, _spec(temperature=temperature, top_k=top_k, top_p=top_p)))
    assert got == pytest.approx(reference_probs(logprobs, temperature, top_k, top_p), abs=1e-12)
    greedy = np.exp(sampling_logprobs(logprobs, _spec(temperature=0.0)))
    assert greedy[int(np.argmax(logprobs))] == 1.0 and greedy.sum() == 1.0


def test_seeded_draws_follow_the_target_distribution(logprobs):
    """20,000 seeded draws: a chi-square test accepts the distribution above and rejects the
    untempered one; nothing outside the nucleus is drawn; the same seed repeats the same draws."""
    from scipy.stats import chisquare

    spec = _spec(temperature=0.9, top_p=0.95, seed=11)
    rng = np.random.default_rng(spec.seed)
    draws = np.array([choose_byte(logprobs, spec, rng) for _ in range(20_000)])
    counts = np.bincount(draws, minlength=257)
    target = reference_probs(logprobs, 0.9, 0, 0.95)
    assert counts[target == 0].sum() == 0
    support = target > 0
    assert chisquare(counts[support], target[support] * len(draws)).pvalue > 1e-3
    untempered = reference_probs(logprobs, 1.0)[support]
    assert chisquare(counts[support], untempered / untempered.sum() * len(draws)).pvalue < 1e-6
    again = np.random.default_rng(spec.seed)
    assert [choose_byte(logprobs, spec, again) for _ in range(50)] == draws[:50].tolist()


def test_logit_bias_ignore_eos_and_min_p(logprobs):
    p = np.exp(logprobs)
    biased = p * np.exp(np.isin(np.arange(257), [65]) * 2.0)
    got = np.exp(sampling_logprobs(logprobs, _spec(logit_bias={65: 2.0})))
    assert got == pytest.approx(biased / biased.sum(), abs=1e-12)
    no_end = p.copy()
    no_end[END] = 0.0
    got = np.exp(sampling_logprobs(logprobs, _spec(stop_token_ids=())))  # ignore_eos drops END from the stops
    assert got == pytest.approx(no_end / no_end.sum(), abs=1e-12)
    scaled = p ** (1 / 0.5)
    scaled /= scaled.sum()
    kept = np.where(scaled >= 0.3 * scaled.max(), scaled, 0.0)
    got = np.exp(sampling_logprobs(logprobs, _spec(temperature=0.5, min_p=0.3)))
    assert got == pytest.approx(kept / kept.sum(), abs=1e-12)


def test_logprob_entries_report_raw_logprobs_and_skip_impossible_bytes(logprobs):
    entry = byte_logprob(logprobs, 65, top=257)
    assert entry.token_id == 65 and entry.logprob == logprobs[65]
    assert len(entry.top) == 254 and entry.top[0] == (int(np.argmax(logprobs)), float(logprobs.max()))
    assert byte_logprob(logprobs, 65, top=None).top == ()
