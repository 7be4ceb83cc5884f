"""The text stream behind every completion: stop strings across tokens, held-back UTF-8, and a
context that ends inside a character (the exact prompt boundary hands the engine such prompts)."""
from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from braid.server.api.detokenizer import TextStream


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    return AutoTokenizer.from_pretrained(tiny_llama_dir)


def _stream_all(stream: TextStream, ids: list[int]) -> str:
    out = "".join(stream.add([t]).text for t in ids)
    return out + stream.finish().text


def test_stream_equals_decoding_and_holds_incomplete_characters(tokenizer):
    ids = tokenizer.encode("Hello 😀 wörld", add_special_tokens=False)
    stream = TextStream(tokenizer)
    deltas = [stream.add([t]).text for t in ids]
    assert "".join(deltas) + stream.finish().text == "Hello 😀 wörld"
    assert all("\ufffd" not in d for d in deltas)


def test_stop_string_across_tokens_is_cut(tokenizer):
    ids = tokenizer.encode("one two three four", add_special_tokens=False)
    assert _stream_all(TextStream(tokenizer, stop=["o th"]), ids) == "one tw"


def test_context_ending_inside_a_character_yields_the_whole_character_once(tokenizer):
    prompt = tokenizer.encode("Hi ", add_special_tokens=False)
    byte_ids = tokenizer.encode("😀 ok", add_special_tokens=False)
    assert len(byte_ids) > 2 and tokenizer.decode(byte_ids[:2]).endswith("\ufffd")  # the emoji spans tokens
    stream = TextStream(tokenizer, prefix_ids=prompt + byte_ids[:2])  # the context stops mid-emoji
    assert _stream_all(stream, byte_ids[2:]) == "😀 ok"
