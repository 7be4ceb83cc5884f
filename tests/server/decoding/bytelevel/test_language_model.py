"""`TransformersLM`'s shared-prefix KV cache against plain forwards of each prefix, and the
byte LM's look-ahead rows: the same distributions, fewer forward passes."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from braid.server.decoding.bytelevel import TransformersLM


def plain_row(model, prefix) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.tensor([list(prefix)])).logits[0, -1].double().log_softmax(-1).numpy()


def call_patterns(bos: int, vocab: int, seed: int):
    """Batches of prefixes as a cover produces them, and the awkward ones: rows equal to the
    cached prefix, rows that are prefixes of other rows, moving back, unrelated rows."""
    rng = random.Random(seed)
    line = [bos] + [rng.randrange(2, vocab) for _ in range(12)]
    yield [line[:3]]                                  # cold start, one row
    yield [line[:4]]                                  # extend by one
    yield [line[:4]]                                  # the cached prefix itself
    yield [line[:5] + [2], line[:5] + [3], line[:6]]  # several rows past the cache
    yield [line[:5]]                                  # the new shared prefix
    yield [line[:7], line[:5] + [4, 5, 6]]            # different widths
    yield [line[:6], line[:8]]                        # one row a prefix of another
    yield [line[:2]]                                  # moving back
    yield [[bos, 9], [bos, 10, 11]]                   # nothing shared past BOS
    yield [line[:9], line[:9] + [7], line[:10]]
    for _ in range(12):                               # random walks around the line
        depth = rng.randrange(1, len(line))
        yield [line[:depth] + [rng.randrange(2, vocab) for _ in range(rng.randrange(0, 3))]
               for _ in range(rng.randrange(1, 5))]


@pytest.mark.parametrize("fixture", ["byte_level_setup", "sentencepiece_setup"])
def test_every_call_matches_plain_forwards_with_one_pass_each(fixture, request):
    setup = request.getfixturevalue(fixture)
    lm = TransformersLM(setup.model)
    for seed in range(3):
        rng = random.Random(seed)
        for prefixes in call_patterns(setup.bos, lm.vocab_size, seed):
            passes = lm.forward_passes
            follow = rng.choice([None, rng.randrange(len(prefixes))])  # where the cache goes next
            got = lm.next_token_logprobs(prefixes, follow=follow).numpy()
            want = np.stack([plain_row(setup.model, p) for p in prefixes])
            np.testing.assert_allclose(got, want, atol=1e-10, err_msg=str(prefixes))
            assert lm.forward_passes - passes <= 1, f"{prefixes}: more than one forward in one call"


class RecordingModel:
    """The real model, recording the shape of every forward's input ids."""

    def __init__(self, model):
        self.model, self.config, self.shapes = model, model.config, []

    def eval(self):
        return self

    def __call__(self, input_ids, **kwargs):
        self.shapes.append(tuple(input_ids.shape))
        return self.model(input_ids=input_ids, **kwargs)


def test_the_cache_moves_to_the_rows_shared_prefix(byte_level_setup):
    setup = byte_level_setup
    model = RecordingModel(setup.model)
    lm = TransformersLM(model)
    line = (setup.bos, 2, 3, 4, 5)
    lm.next_token_logprobs([line + (6,), line + (7, 8)])
    assert model.shapes == [(2, 7)]  # cold: one batch over both rows (the longer has 7 tokens)
    got = lm.next_token_logprobs([line + (9,), line + (10,)])
    assert model.shapes[-1] == (2, 1)  # the shared prefix is cached: one new token per row
    want = np.stack([plain_row(setup.model, line + (9,)), plain_row(setup.model, line + (10,))])
    np.testing.assert_allclose(got.numpy(), want, atol=1e-10)
    lm.next_token_logprobs([line + (9, 3)])
    assert model.shapes[-1] == (1, 2)  # past the cache by two tokens, still no second pass
    lm.next_token_logprobs([line + (9, 3, 4)])
    assert model.shapes[-1] == (1, 1)  # a single row extends the cache in place
    assert lm.forward_passes == len(model.shapes) == 4


def test_the_cache_follows_the_row_it_is_told_to(byte_level_setup):
    setup = byte_level_setup
    model = RecordingModel(setup.model)
    lm = TransformersLM(model)
    line = (setup.bos, 2, 3, 4, 5)
    lm.next_token_logprobs([line + (6,), line + (7, 8), line + (9,)], follow=1)
    got = lm.next_token_logprobs([line + (7, 8, 10), line + (7, 8, 11)])
    assert model.shapes[-1] == (2, 1)  # the cache holds line + (7, 8): one new token per row
    want = np.stack([plain_row(setup.model, line + (7, 8, 10)), plain_row(setup.model, line + (7, 8, 11))])
    np.testing.assert_allclose(got.numpy(), want, atol=1e-10)
    passes = lm.forward_passes
    np.testing.assert_allclose(lm.next_token_logprobs([line + (7, 8)]).numpy()[0],
                               plain_row(setup.model, line + (7, 8)), atol=1e-10)
    assert lm.forward_passes == passes  # its logits were kept with it


def walk(byte_lm, text: bytes) -> list[np.ndarray]:
    return [byte_lm.next_byte_logprobs(text[:n]) for n in range(len(text) + 1)]


@pytest.mark.parametrize("fixture", ["byte_level_setup", "sentencepiece_setup"])
@pytest.mark.parametrize("knobs", [{}, {"min_token_prob": 0.05, "unchecked": "keep", "min_branch_share": 0.01}])
def test_lookahead_changes_the_cost_not_the_distributions(fixture, knobs, request):
    setup = request.getfixturevalue(fixture)
    texts = [b"ab ab ba", b" a ba ab", b"aab ab"]
    saved = 0
    for text in texts:  # always_check: the pruned settings keep the text's own branches
        plain, ahead = (setup.byte_lm(lookahead=n, always_check=text, **knobs) for n in (0, 8))
        for a, b in zip(walk(plain, text), walk(ahead, text)):
            np.testing.assert_allclose(np.exp(b), np.exp(a), atol=1e-12)
        assert ahead.lm.forward_passes <= plain.lm.forward_passes
        saved += plain.lm.forward_passes - ahead.lm.forward_passes
    assert saved > 0, "look-ahead rows should spare some forwards on multi-byte tokens"


def test_lookahead_must_not_be_negative(byte_level_setup):
    with pytest.raises(ValueError, match="lookahead"):
        byte_level_setup.byte_lm(lookahead=-1)


@pytest.mark.parametrize("fixture", ["byte_level_setup", "sentencepiece_setup"])
def test_a_row_cap_bounds_memory_and_changes_nothing(fixture, request):
    from braid.server.decoding.bytelevel.cover import split_cover

    setup = request.getfixturevalue(fixture)
    text = b"ab ba ab a bab aab ba"
    capped, free = setup.byte_lm(max_cached_rows=1), setup.byte_lm()
    for n in range(len(text) + 1):
        np.testing.assert_allclose(np.exp(capped.next_byte_logprobs(text[:n])),
                                   np.exp(free.next_byte_logprobs(text[:n])), atol=1e-12)
        boundary = split_cover(capped.cover(text[:n]), n)[1]
        assert len(capped._token_logq) <= max(1, len(boundary))
    assert len(free._token_logq) > 4  # the walk does need more rows than the cap keeps
    # going back to an early prefix recomputes what was dropped, to the same answer
    np.testing.assert_allclose(capped.next_byte_logprobs(text[:3]), free.next_byte_logprobs(text[:3]), atol=1e-12)
