"""The ``braid_slots`` attention: packed sequences of new tokens against a slot KV cache.

The model runs on one packed row (``[1, num_tokens]``) holding the new tokens of every
scheduled sequence. :class:`BatchMeta` travels to :func:`slot_attention` through the model's
forward ``**kwargs`` (Llama-family models pass unknown kwargs down to the attention function),
as ``braid_batch=...``. RoPE has already been applied to ``query``/``key`` by the model.

Extension point: a :class:`SequenceMeta` may carry a ``score_modifier``, a function of
``(layer_idx, scores)`` that returns new pre-softmax scores for that sequence (``scores`` is
``[num_heads, num_new, num_keys]``, float32, scaled, masked with ``-inf``). Only sequences with a
modifier take the explicit (non-SDPA) path; in a decode step they form one batch of explicit
scores (each row then through its own modifier) and the others share one batched SDPA call. A
modifier class with a static ``prepare(scores, modifiers)`` runs its rows as one call, prepared by
the first layer of a step and reused by the others (``BatchMeta.scratch``). Attention steering
plugs in here. Sequences that must step together (a contrastive pair) are simply two entries of
one batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from .kv_cache import SlotKVCache

ATTN_IMPLEMENTATION = "braid_slots"

ScoreModifier = Callable[[int, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SequenceMeta:
    slot: int
    start: int  # tokens already in the cache = position of the first new token
    num_new: int
    score_modifier: ScoreModifier | None = None

    @property
    def end(self) -> int:
        return self.start + self.num_new


@dataclass(frozen=True)
class BatchMeta:
    """What one forward pass attends over; built by the model runner, read by every layer."""

    cache: SlotKVCache
    seqs: tuple[SequenceMeta, ...]
    token_slots: torch.Tensor  # [num_tokens] slot of each packed token
    token_positions: torch.Tensor  # [num_tokens] cache position of each packed token
    decode_lengths: torch.Tensor | None  # [num_seqs] cached lengths after this step, when all num_new == 1
    decode_slot_range: tuple[int, int] | None = None  # decode slots are exactly range(a, b): slice, don't gather
    plain_rows: torch.Tensor | None = None  # decode with modifiers: rows (= sequences) without one
    # What the layers of one step share (masks, prepared modifiers), built by the first layer that needs it.
    scratch: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_decode(self) -> bool:
        return self.decode_lengths is not None


def slot_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                   braid_batch: BatchMeta | None = None, **kwargs):
    """``query`` [1, H, T, D], ``key``/``value`` [1, KVH, T, D] -> (output [1, T, H, D], None)."""
    if braid_batch is None:
        raise RuntimeError("braid_slots attention needs braid_batch=BatchMeta(...) in the forward kwargs")
    meta = braid_batch
    scaling = module.scaling if scaling is None else scaling
    k_cache, v_cache = meta.cache.layer(module.layer_idx)
    # Advanced indexing puts the token dim first: cache[slot_t, :, pos_t] is [T, KVH, D].
    k_cache[meta.token_slots, :, meta.token_positions] = key[0].transpose(0, 1).to(k_cache.dtype)
    v_cache[meta.token_slots, :, meta.token_positions] = value[0].transpose(0, 1).to(v_cache.dtype)

    steered = any(s.score_modifier for s in meta.seqs)
    if meta.is_decode and not steered:
        max_len = max(s.end for s in meta.seqs)
        return _decode(query, k_cache, v_cache, meta.token_slots, meta.decode_lengths, max_len,
                       meta.decode_slot_range, scaling), None
    out = torch.empty_like(query[0].transpose(0, 1))  # [T, H, D]
    if meta.is_decode:
        modified = [i for i, s in enumerate(meta.seqs) if s.score_modifier is not None]
        rows = meta.plain_rows
        if rows is None:
            rows = torch.tensor([i for i, s in enumerate(meta.seqs) if s.score_modifier is None], dtype=torch.long,
                                device=query.device)
        if rows.numel() > 0:
            max_len = max(s.end for s in meta.seqs if s.score_modifier is None)
            out[rows] = _decode(query[:, :, rows], k_cache, v_cache, meta.token_slots[rows],
                                meta.decode_lengths[rows], max_len, None, scaling)[0]
        out[modified] = _decode_modified(query, k_cache, v_cache, meta, modified, scaling, module.layer_idx)
        return out.unsqueeze(0), None
    offset = 0
    for seq in meta.seqs:
        q = query[:, :, offset:offset + seq.num_new]
        attended = _one_sequence(q, k_cache, v_cache, seq, scaling, module.layer_idx)  # [1, H, n, D]
        out[offset:offset + seq.num_new] = attended[0].transpose(0, 1)
        offset += seq.num_new
    return out.unsqueeze(0), None


def _decode(query, k_cache, v_cache, slots: torch.Tensor, lengths: torch.Tensor, max_len: int,
            slot_range: tuple[int, int] | None, scaling: float) -> torch.Tensor:
    """One new token per sequence: ``query`` [1, H, B, D] -> [1, B, H, D]."""
    k, v = _cached_kv(k_cache, v_cache, slots, slot_range, max_len)
    batch, heads, kv_heads = query.shape[2], query.shape[1], k.shape[1]
    # One new token per sequence: the query heads sharing a KV head become rows of one query block.
    q = query[0].transpose(0, 1).reshape(batch, kv_heads, heads // kv_heads, -1)
    mask = torch.arange(max_len, device=q.device)[None, :] < lengths[:, None]  # [B, L]
    out = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask[:, None, None, :],
                                         scale=scaling)
    return out.reshape(1, batch, heads, -1)


def _cached_kv(k_cache, v_cache, slots: torch.Tensor, slot_range: tuple[int, int] | None,
               max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``max_len`` cached keys and values of ``slots``, [B, KVH, L, D]: a view when the
    slots are exactly ``range(*slot_range)``, else a gather."""
    if slot_range is not None:
        a, b = slot_range
        return k_cache[a:b, :, :max_len], v_cache[a:b, :, :max_len]
    return k_cache[:, :, :max_len].index_select(0, slots), v_cache[:, :, :max_len].index_select(0, slots)


def _decode_modified(query, k_cache, v_cache, meta: BatchMeta, rows: list[int], scaling: float,
                     layer_idx: int) -> torch.Tensor:
    """Decode rows whose sequences have a score modifier, as one batch: explicit scores
    ``[H, 1, L]`` per row (keys past a row's length are ``-inf``), each row's modifier, softmax,
    values. Returns ``[len(rows), H, D]``."""
    step = meta.scratch.get("modified")
    if step is None:
        index = torch.tensor(rows, dtype=torch.long, device=query.device)
        max_len = max(meta.seqs[i].end for i in rows)
        visible = torch.arange(max_len, device=query.device)[None, :] < meta.decode_lengths.index_select(0, index)[:, None]
        slots = meta.token_slots.index_select(0, index)
        step = meta.scratch["modified"] = (index, slots, consecutive_range(slots.tolist()), max_len,
                                           ~visible[:, None, None, :])
    index, slots, slot_range, max_len, hidden = step
    k, v = _cached_kv(k_cache, v_cache, slots, slot_range, max_len)  # a pair's slots are usually neighbours
    k, v = k.to(query.dtype), v.to(query.dtype)
    batch, heads, kv_heads = len(rows), query.shape[1], k.shape[1]
    q = query[0].index_select(1, index).transpose(0, 1).reshape(batch, kv_heads, heads // kv_heads, -1)
    scores = (torch.matmul(q, k.transpose(-1, -2)).float() * scaling).reshape(batch, heads, 1, max_len)
    scores = scores.masked_fill(hidden, float("-inf"))
    scores = _modify(scores, [meta.seqs[i].score_modifier for i in rows], layer_idx, meta.scratch)
    probs = scores.softmax(dim=-1).to(query.dtype).reshape(batch, kv_heads, heads // kv_heads, max_len)
    return torch.matmul(probs, v).reshape(batch, heads, -1)


def _modify(scores: torch.Tensor, modifiers: list[ScoreModifier], layer_idx: int,
            scratch: dict | None = None) -> torch.Tensor:
    """Each row of ``scores`` [B, H, n, L] through its modifier; modifiers of a class with a
    ``prepare(scores, modifiers)`` static method run as one call per class, prepared once per step
    when ``scratch`` (the step's shared dict; masked keys are the same in every layer) is given."""
    groups: dict[object, list[int]] = {}
    for b, modifier in enumerate(modifiers):
        groups.setdefault(getattr(type(modifier), "prepare", None) or modifier, []).append(b)
    prepared = scratch.setdefault("prepared", {}) if scratch is not None else {}

    def batched(prepare, members: list[int], rows: torch.Tensor) -> torch.Tensor:
        if prepare not in prepared:
            prepared[prepare] = prepare(rows, [modifiers[b] for b in members])
        return prepared[prepare](layer_idx, rows)

    if len(groups) == 1 and next(iter(groups)) not in modifiers:  # one class: no scatter back
        return batched(next(iter(groups)), list(range(len(modifiers))), scores)
    if all(apply not in modifiers and members == list(range(members[0], members[-1] + 1))
           for apply, members in groups.items()):  # each class a run of rows (an ASCD pair): slices, no scatter
        runs = sorted(groups.items(), key=lambda item: item[1][0])
        return torch.cat([batched(apply, members, scores[members[0]:members[-1] + 1]) for apply, members in runs])
    out = torch.empty_like(scores)
    for apply, members in groups.items():
        if apply in modifiers:  # no batch method: row by row
            for b in members:
                out[b] = apply(layer_idx, scores[b])
        else:
            out[members] = batched(apply, members, scores[members])
    return out


def _one_sequence(q, k_cache, v_cache, seq: SequenceMeta, scaling: float, layer_idx: int) -> torch.Tensor:
    """``q`` [1, H, n, D] -> [1, H, n, D], attending to this sequence's cached keys ``[0, end)``."""
    k = k_cache[seq.slot:seq.slot + 1, :, :seq.end].to(q.dtype)
    v = v_cache[seq.slot:seq.slot + 1, :, :seq.end].to(q.dtype)
    if seq.score_modifier is None:
        if seq.start == 0:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling, enable_gqa=True)
        mask = _causal_mask(seq, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scaling, enable_gqa=True)
    groups = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(groups, dim=1)
    v = v.repeat_interleave(groups, dim=1)
    scores = torch.matmul(q, k.transpose(-1, -2))[0].float() * scaling  # [H, n, L]
    scores = scores.masked_fill(~_causal_mask(seq, q.device), float("-inf"))
    scores = seq.score_modifier(layer_idx, scores)
    probs = scores.softmax(dim=-1).to(q.dtype)
    return torch.matmul(probs.unsqueeze(0), v)


def _causal_mask(seq: SequenceMeta, device) -> torch.Tensor:
    """[n, end] bool: new token i (at position start+i) sees keys at positions <= start+i."""
    q_pos = torch.arange(seq.start, seq.end, device=device)[:, None]
    return torch.arange(seq.end, device=device)[None, :] <= q_pos


def register() -> str:
    """Register ``braid_slots`` with transformers (idempotent); returns the implementation name."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTN_IMPLEMENTATION, slot_attention)
    return ATTN_IMPLEMENTATION


def consecutive_range(slots: list[int]) -> tuple[int, int] | None:
    """``(a, b)`` when ``slots`` is exactly ``range(a, b)``: such rows are sliced from the cache, not gathered."""
    return (slots[0], slots[-1] + 1) if slots == list(range(slots[0], slots[-1] + 1)) else None
