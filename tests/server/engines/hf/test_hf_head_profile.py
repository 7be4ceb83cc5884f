"""``"heads": "auto"``: the profiled ranking against eager-attention weights, and its caches."""
from __future__ import annotations

import json
import math

import pytest
import torch

from braid.server.engines.hf import HFEngine
from braid.server.engines.hf.head_profile import PROBES, HeadProfile
from contrastive_reference import one_thread


def reference_ranking(model_dir) -> list[tuple[int, int, float]]:
    """Per head: mean over probes and question rows of log(text attention per key / span attention per key),
    from transformers' eager attention weights, with Python loops over keys."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    layers, heads = model.config.num_hidden_layers, model.config.num_attention_heads
    totals = [[0.0] * heads for _ in range(layers)]
    for context, question in PROBES:
        text = f"Context: {context}\nQuestion: {question}\nAnswer:"
        start, end = text.index(context), text.index(context) + len(context)
        enc = tokenizer(text, return_offsets_mapping=True)
        span = {i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a < end and b > start}
        with torch.no_grad():
            att = model(torch.tensor([enc["input_ids"]]), output_attentions=True).attentions
        n = len(enc["input_ids"])
        for layer in range(layers):
            for head in range(heads):
                rows = []
                for q in range(max(span) + 1, n):
                    w = att[layer][0, head, q].double().tolist()
                    text_keys = [k for k in range(1, q + 1) if k not in span]
                    per_text = sum(w[k] for k in text_keys) / len(text_keys)
                    per_span = sum(w[k] for k in span) / len(span)
                    rows.append(math.log(per_text + 1e-9) - math.log(per_span + 1e-9))
                totals[layer][head] += sum(rows) / len(rows) / len(PROBES)
    return sorted(((l, h, totals[l][h]) for l in range(layers) for h in range(heads)), key=lambda r: -r[2])


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def hf_engine(tiny_llama_dir):
    import asyncio

    engine = HFEngine("tiny", str(tiny_llama_dir), max_num_seqs=2, dtype="float32")
    asyncio.run(engine.start())
    yield engine
    asyncio.run(engine.shutdown())


def test_ranking_matches_eager_attention_reference(hf_engine, tiny_llama_dir):
    got = HeadProfile(hf_engine.runner, hf_engine.tokenizer, str(tiny_llama_dir), 2, 2).ranking()
    want = reference_ranking(tiny_llama_dir)
    assert [(l, h) for l, h, _ in got] == [(l, h) for l, h, _ in want]
    assert [s for *_, s in got] == pytest.approx([s for *_, s in want], abs=1e-5)
    assert len({round(s, 4) for *_, s in want}) == 4  # distinct scores: the order is meaningful


def test_profile_is_computed_once_and_cached_on_disk(hf_engine, tiny_llama_dir, tmp_path, monkeypatch):
    calls = []
    forward = hf_engine.runner.forward_alone
    monkeypatch.setattr(hf_engine.runner, "forward_alone", lambda *a: (calls.append(1), forward(*a))[1])
    profile = HeadProfile(hf_engine.runner, hf_engine.tokenizer, str(tiny_llama_dir), 2, 2)
    top = profile.top(3, tmp_path)
    assert len(calls) == len(PROBES) and len(top) == 3
    assert profile.top(32, tmp_path)[:3] == top and len(profile.top(32, tmp_path)) == 4  # capped at 4 heads
    assert len(calls) == len(PROBES)  # memory cache
    [cached] = (tmp_path / "steering").glob("heads-*.json")
    assert [tuple(r[:2]) for r in json.loads(cached.read_text())["ranking"]][:3] == top
    fresh = HeadProfile(hf_engine.runner, hf_engine.tokenizer, str(tiny_llama_dir), 2, 2)
    assert fresh.top(3, tmp_path) == top and len(calls) == len(PROBES)  # read from disk, no forward
