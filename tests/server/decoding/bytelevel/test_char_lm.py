from __future__ import annotations

import numpy as np
import pytest

from braid.server.decoding.bytelevel import END_OF_TEXT, CharLM


@pytest.mark.parametrize("prefix", ["", "a", "b é", " "])
def test_next_char_is_the_product_of_byte_probabilities(byte_level_setup, prefix):
    byte_lm = byte_level_setup.byte_lm()
    if not np.isfinite(byte_lm.prefix_logprob(prefix.encode())):
        pytest.skip("prefix has probability zero under this model")
    dist = CharLM(byte_lm).next_char_logprobs(prefix)
    assert sum(np.exp(v) for v in dist.values()) == pytest.approx(1.0, abs=1e-9)
    assert set(dist) <= {"a", "b", " ", "\n", "é", END_OF_TEXT}
    if "é" in dist:
        data = prefix.encode()
        expected = byte_lm.next_byte_logprobs(data)[0xC3] + byte_lm.next_byte_logprobs(data + b"\xc3")[0xA9]
        assert dist["é"] == pytest.approx(expected, abs=1e-12)
