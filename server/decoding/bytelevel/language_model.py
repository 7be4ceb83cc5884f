"""Token-level language models as the byte-level LM sees them.

``next_token_logprobs(prefixes)`` takes a batch of token-id prefixes (each including any fixed
context such as BOS) and returns float64 log-probabilities ``[batch, vocab]`` of the next token.

`TransformersLM` wraps a transformers causal LM. The branches of a byte-level cover share a
long common prefix and differ in a few trailing tokens, so it keeps one KV cache (cropped back
where the rows leave it) and runs one batched forward per call over each row's tokens past it,
with the cache repeated across the batch; the cache then moves to the row the caller names with
``follow`` (else to the rows' longest common prefix), taken from that same forward.
"""
from __future__ import annotations

import copy
from typing import Protocol, Sequence, runtime_checkable

import torch

__all__ = ["LanguageModel", "TransformersLM"]


@runtime_checkable
class LanguageModel(Protocol):
    vocab_size: int

    def next_token_logprobs(self, prefixes: Sequence[Sequence[int]]) -> torch.Tensor:
        """float64 ``[len(prefixes), vocab_size]`` log P(next token | prefix). A model with a cache
        may also accept ``follow=i``: a hint that the next calls will most likely extend row i."""
        ...


def longest_common_prefix(seqs: Sequence[Sequence[int]]) -> tuple[int, ...]:
    if not seqs:
        return ()
    first = tuple(seqs[0])
    n = min(len(s) for s in seqs)
    for i in range(n):
        if any(s[i] != first[i] for s in seqs):
            return first[:i]
    return first[:n]


class TransformersLM:
    """A transformers causal LM with a shared-prefix KV cache; counts its forward passes.

    Each call is exactly one forward: rows run over their tokens past the longest prefix they
    share with the cached one (the cache repeated across rows), and the cache then moves to the
    row named by ``follow`` (else to the rows' longest common prefix), taken from that forward's
    keys and values (no second pass to extend it).
    """

    def __init__(self, model, vocab_size: int | None = None):
        self.model = model.eval()
        self.vocab_size = vocab_size or model.config.vocab_size
        self.forward_passes = 0
        self._cached_ids: tuple[int, ...] = ()
        self._cache = None
        self._last_logits: torch.Tensor | None = None  # logits after _cached_ids, when known

    @torch.no_grad()
    def next_token_logprobs(self, prefixes, follow: int | None = None):
        prefixes = [tuple(p) for p in prefixes]
        if any(not p for p in prefixes):
            raise ValueError("every prefix needs at least one token (e.g. BOS)")
        base = len(longest_common_prefix([self._cached_ids, *prefixes]))
        reuse = self._last_logits is not None and base == len(self._cached_ids)
        if not reuse and any(len(p) == base for p in prefixes):
            base -= 1  # a row ending at the cached prefix needs its last token run again
        self._crop_cache(base)
        out = torch.empty(len(prefixes), self.vocab_size, dtype=torch.float64)
        rows = [i for i, p in enumerate(prefixes) if len(p) > base]
        for i, p in enumerate(prefixes):
            if len(p) == base:
                out[i] = self._last_logits[: self.vocab_size].double().log_softmax(-1)
        if rows:
            keep_row = rows.index(follow) if follow in rows else None
            self._forward([prefixes[i] for i in rows], base, out, rows, keep_row)
        return out

    def _forward(self, prefixes: list[tuple[int, ...]], base: int, out: torch.Tensor, rows: list[int],
                 keep_row: int | None) -> None:
        suffixes = [p[base:] for p in prefixes]
        width = max(map(len, suffixes))
        pad = suffixes[0][0]  # right padding never reaches real positions (causal)
        batch = torch.tensor([list(s) + [pad] * (width - len(s)) for s in suffixes])
        single = len(prefixes) == 1
        cache = self._cache if single else self._repeated_cache(len(prefixes))
        positions = torch.arange(base, base + width).expand(len(prefixes), -1)
        last = torch.tensor([len(s) - 1 for s in suffixes])
        keep = torch.unique(last)  # the output head runs only where some row ends (it is the costly part)
        result = self.model(input_ids=batch, past_key_values=cache, position_ids=positions,
                            use_cache=True, logits_to_keep=keep)
        self.forward_passes += 1
        picked = result.logits[torch.arange(len(prefixes)), torch.searchsorted(keep, last)]
        out[rows] = picked[:, : self.vocab_size].double().log_softmax(-1)
        kept = longest_common_prefix(prefixes) if keep_row is None else prefixes[keep_row]
        if len(kept) == base:
            return  # the cache stays where it was (multi-row calls ran on a copy)
        cache = result.past_key_values
        if not single:
            cache.batch_select_indices(torch.tensor([keep_row or 0]))
            if len(kept) < base + width:
                cache.crop(len(kept) - base - width)  # negative: drop that many positions
        self._cache, self._cached_ids = cache, kept
        ends_there = [i for i, p in enumerate(prefixes) if len(p) == len(kept)]
        self._last_logits = picked[ends_there[0]] if ends_there else None

    def _crop_cache(self, keep: int) -> None:
        if keep == len(self._cached_ids):
            return
        if keep == 0:
            self._cache, self._cached_ids, self._last_logits = None, (), None
            return
        self._cache.crop(keep - len(self._cached_ids))  # negative: drop that many tokens
        self._cached_ids, self._last_logits = self._cached_ids[:keep], None

    def _repeated_cache(self, batch: int):
        if self._cache is None:
            return None
        cache = _fork(self._cache)
        cache.batch_repeat_interleave(batch)
        return cache


def _fork(cache):
    """A copy of a dynamic cache that shares its tensors: cache layers replace their tensors
    (concatenate, repeat, select) rather than write into them, so the copy can grow on its own.
    Much cheaper than ``copy.deepcopy`` (whose Python walk cost ~7 ms per call here)."""
    fork = copy.copy(cache)
    fork.layers = []
    for layer in cache.layers:
        twin = copy.copy(layer)
        twin.__dict__.update({k: copy.copy(v) for k, v in vars(layer).items() if isinstance(v, (list, dict))})
        fork.layers.append(twin)
    return fork
