"""``max_branches`` keeps the branches that spell a text being read (``always_check``) first:
without that, the most likely branches run past the text's next bytes and it gets probability 0."""
from __future__ import annotations

import itertools

import numpy as np
import pytest


@pytest.mark.parametrize("fixture", ["byte_level_setup", "sentencepiece_setup"])
def test_text_read_with_max_branches_keeps_its_own_branches(fixture, request):
    setup = request.getfixturevalue(fixture)
    exact, pruned = setup.byte_lm(), setup.byte_lm(max_branches=1)
    # texts of positive probability that the single most likely branch cannot spell
    lost = [text for text in map(bytes, itertools.product(b"ab ", repeat=3))
            if exact.cover(text) and not pruned.cover(text)]
    assert lost, "the tiny model should have texts that one pruned branch cannot spell"
    for text in lost:
        reading = setup.byte_lm(max_branches=1, always_check=text)
        assert reading.cover(text), text
        steps = [reading.next_byte_logprobs(text[:n])[text[n]] for n in range(len(text))]
        assert np.isfinite(steps).all() and max(steps) <= 0, text


def test_generation_past_the_text_is_capped_again(byte_level_setup):
    setup = byte_level_setup
    text = b"ab a"
    reading = setup.byte_lm(max_branches=1, always_check=text)
    assert reading.cover(text)
    out = text
    for _ in range(4):  # greedy bytes after the text: the cover is capped at one branch per byte
        logprobs = reading.next_byte_logprobs(out)
        byte = int(np.argmax(logprobs[:256]))
        out += bytes([byte])
        assert len(reading.cover(out)) == 1
