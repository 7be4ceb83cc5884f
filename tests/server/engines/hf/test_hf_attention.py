"""The slot attention and KV cache against a float64 eager reference (GQA: 4 heads, 2 KV heads)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from braid.server.engines.hf.attention import BatchMeta, SequenceMeta, slot_attention
from braid.server.engines.hf.kv_cache import SlotKVCache

H, KVH, D = 4, 2, 8
MODULE = SimpleNamespace(layer_idx=0, scaling=D ** -0.5)


def reference(q, k, v, start):
    """q [H, n, D] at positions start.., k/v [KVH, start+n, D] -> [n, H, D]."""
    k, v = k.repeat_interleave(H // KVH, 0).double(), v.repeat_interleave(H // KVH, 0).double()
    scores = q.double() @ k.transpose(-1, -2) * MODULE.scaling
    n, total = q.shape[1], k.shape[1]
    mask = torch.arange(total)[None, :] <= torch.arange(start, start + n)[:, None]
    return (scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v).transpose(0, 1)


def random_qkv(lens: list[int], extra: int):
    """Per sequence: queries [H, n + extra, D], keys and values [KVH, n + extra, D] (n = its prompt)."""
    full_k = [torch.randn(KVH, n + extra, D) for n in lens]
    full_v = [torch.randn(KVH, n + extra, D) for n in lens]
    return [torch.randn(H, n + extra, D) for n in lens], full_k, full_v


def run(cache, seqs, q, k, v):
    slots = torch.tensor([s.slot for s in seqs for _ in range(s.num_new)])
    positions = torch.cat([torch.arange(s.start, s.end) for s in seqs])
    decode = torch.tensor([s.end for s in seqs]) if all(s.num_new == 1 for s in seqs) else None
    ordered = [s.slot for s in seqs]
    consecutive = (ordered[0], ordered[-1] + 1) if ordered == list(range(ordered[0], ordered[-1] + 1)) else None
    meta = BatchMeta(cache, tuple(seqs), slots, positions, decode, consecutive if decode is not None else None)
    cache.ensure(max(s.slot for s in seqs) + 1, max(s.end for s in seqs))
    out, _ = slot_attention(MODULE, q[None], k[None], v[None], None, braid_batch=meta)
    return out[0]


@pytest.mark.parametrize("slots", [[2, 0, 1], [1, 2, 3]], ids=["gathered", "sliced"])
def test_prefill_then_decode_match_reference(slots):
    torch.manual_seed(0)
    cache = SlotKVCache(1, KVH, D, dtype=torch.float32, device="cpu", max_len=64)
    lens = [5, 9, 3]
    full_q, full_k, full_v = random_qkv(lens, extra=2)
    # Prefill all three, then two decode steps (the last one with a score modifier on one sequence).
    steps = [[(i, 0, n) for i, n in enumerate(lens)], [(i, n, 1) for i, n in enumerate(lens)],
             [(i, n + 1, 1) for i, n in enumerate(lens)]]
    for step_no, step in enumerate(steps):
        modifier = (lambda layer, s: s) if step_no == 2 else None
        seqs = [SequenceMeta(slots[i], start, n, modifier if i == 1 else None) for i, start, n in step]
        q = torch.cat([full_q[i][:, s:s + n] for i, s, n in step], dim=1)
        k = torch.cat([full_k[i][:, s:s + n] for i, s, n in step], dim=1)
        v = torch.cat([full_v[i][:, s:s + n] for i, s, n in step], dim=1)
        got = run(cache, seqs, q, k, v)
        want = torch.cat([reference(full_q[i][:, s:s + n], full_k[i][:, :s + n], full_v[i][:, :s + n], s)
                          for i, s, n in step])
        torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)


def test_score_modifier_sees_masked_scores_per_sequence():
    torch.manual_seed(1)
    cache = SlotKVCache(1, KVH, D, dtype=torch.float32, device="cpu", max_len=64)
    q, k, v = torch.randn(H, 4, D), torch.randn(KVH, 4, D), torch.randn(KVH, 4, D)
    calls = []

    def only_first_key(layer, scores):
        calls.append((layer, tuple(scores.shape), bool(torch.isinf(scores[:, 0, 1:]).all())))
        keep = torch.full_like(scores, float("-inf"))
        keep[..., 0] = 0.0
        return scores + keep

    out = run(cache, [SequenceMeta(0, 0, 4, only_first_key)], q, k, v)
    assert calls == [(0, (H, 4, 4), True)]
    torch.testing.assert_close(out, v[:, 0].repeat_interleave(H // KVH, 0)[None].expand(4, H, D))


def test_cache_grows_and_relayouts_under_budget_keeping_contents():
    cache = SlotKVCache(2, KVH, D, dtype=torch.float32, device="cpu", max_len=1000,
                        memory_bytes=2 * 2 * KVH * D * 4 * 256)  # 256 cells
    cache.ensure(2, 10)
    assert (cache.num_slots, cache.capacity) == (2, 64)
    cache.layer(1)[0][1, :, :10] = 7.0
    cache.ensure(2, 100)
    assert (cache.num_slots, cache.capacity) == (2, 128)
    assert (cache.layer(1)[0][1, :, :10] == 7.0).all() and (cache.layer(1)[0][1, :, 10:] == 0).all()
    cache.ensure(1, 200)  # 2 x 256 would overflow: keep only slot 0
    assert (cache.num_slots, cache.capacity) == (1, 256)
    cache.ensure(4, 20)  # 4 x 256 overflows: exactly 4 x 64
    assert (cache.num_slots, cache.capacity) == (4, 64)
    assert cache.bytes_per_token * cache.num_slots * cache.capacity <= cache.memory_bytes


def test_decode_rows_with_different_modifiers_and_lengths_match_reference():
    """Several steered decode rows form one batch: each must see only its own keys and modifier."""
    torch.manual_seed(2)
    cache = SlotKVCache(1, KVH, D, dtype=torch.float32, device="cpu", max_len=64)
    lens = [6, 11, 4]
    full_q, full_k, full_v = random_qkv(lens, extra=1)
    boost = [None, 3.0, -2.0]  # plain row, then two rows whose key 1 gets a different bias

    def modifier(bias):
        def apply(layer, scores):
            return scores + torch.nn.functional.pad(torch.tensor([0.0, bias]), (0, scores.shape[-1] - 2))
        return apply

    run(cache, [SequenceMeta(i, 0, n) for i, n in enumerate(lens)], torch.cat([q[:, :n] for q, n in zip(full_q, lens)], 1),
        torch.cat([k[:, :n] for k, n in zip(full_k, lens)], 1), torch.cat([v[:, :n] for v, n in zip(full_v, lens)], 1))
    seqs = [SequenceMeta(i, n, 1, modifier(b) if b is not None else None) for i, (n, b) in enumerate(zip(lens, boost))]
    got = run(cache, seqs, torch.cat([q[:, -1:] for q in full_q], 1), torch.cat([k[:, -1:] for k in full_k], 1),
              torch.cat([v[:, -1:] for v in full_v], 1))
    for i, (n, b) in enumerate(zip(lens, boost)):
        k = full_k[i].repeat_interleave(H // KVH, 0).double()
        v = full_v[i].repeat_interleave(H // KVH, 0).double()
        scores = full_q[i][:, -1:].double() @ k.transpose(-1, -2) * MODULE.scaling  # [H, 1, n + 1]
        if b is not None:
            scores[..., 1] += b
        torch.testing.assert_close(got[i].double(), (scores.softmax(-1) @ v)[:, 0], atol=1e-5, rtol=1e-5)


def test_batched_modifiers_equal_each_modifier_on_its_own_row():
    from braid.server.engines.hf.attention import _modify
    from braid.server.engines.hf.methods import AttentionSuppression, SpanSteering

    torch.manual_seed(3)
    scores = torch.randn(5, H, 1, 12) * 4
    scores[1, ..., 9:] = float("-inf")  # a shorter row
    heads = torch.tensor([True, False, True, False])
    modifiers = [SpanSteering([2, 3, 4], {0: heads}, 0.625, "cpu"),
                 AttentionSuppression([1, 5, 6, 7, 8, 10], 1.0, 0.34, "cpu"),
                 SpanSteering([7], {0: None, 1: heads}, 2.0, "cpu"),
                 AttentionSuppression([0, 3], 0.5, 0.1, "cpu"),
                 lambda layer, s: s * 0.5]
    runs = [modifiers[0], modifiers[2], modifiers[1], modifiers[3]]  # each class a run of rows (ASCD pairs)
    for mods in (modifiers, runs):
        step = {}  # one decode step: modifiers are prepared by the first layer, reused by the next ones
        for layer in (0, 1, 0, 2):
            layer_scores = scores[:len(mods)] * (layer + 1)  # other layers, other scores, the same masked keys
            want = torch.stack([m(layer, layer_scores[b]) for b, m in enumerate(mods)])
            assert torch.equal(_modify(layer_scores, mods, layer), want)
            assert torch.equal(_modify(layer_scores, mods, layer, step), want)
    assert not torch.equal(_modify(scores, modifiers, 0), scores)
