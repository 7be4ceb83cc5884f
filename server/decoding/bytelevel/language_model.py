"""Token-level language models as the byte-level LM sees them.

``next_token_logprobs(prefixes)`` takes a batch of token-id prefixes (each including any fixed
context such as BOS) and returns float64 log-probabilities ``[batch, vocab]`` of the next token.

`TransformersLM` wraps a transformers causal LM. The branches of a byte-level cover share a
long common prefix and differ in a few trailing tokens, so it keeps the KV cache of the longest
common prefix (extended, or cropped back, as the cover moves) and runs one batched forward over
the branch suffixes per call, with the shared cache repeated across the batch.
"""
from __future__ import annotations

import copy
from typing import Protocol, Sequence, runtime_checkable

import torch

__all__ = ["LanguageModel", "TransformersLM", "longest_common_prefix"]


@runtime_checkable
class LanguageModel(Protocol):
    vocab_size: int

    def next_token_logprobs(self, prefixes: Sequence[Sequence[int]]) -> torch.Tensor:
        """float64 ``[len(prefixes), vocab_size]`` log P(next token | prefix)."""
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
    """A transformers causal LM with a shared-prefix KV cache; counts its forward passes."""

    def __init__(self, model, vocab_size: int | None = None):
        self.model = model.eval()
        self.vocab_size = vocab_size or model.config.vocab_size
        self.forward_passes = 0
        self._cached_ids: tuple[int, ...] = ()
        self._cache = None
        self._last_logits: torch.Tensor | None = None

    @torch.no_grad()
    def next_token_logprobs(self, prefixes):
        prefixes = [tuple(p) for p in prefixes]
        if any(not p for p in prefixes):
            raise ValueError("every prefix needs at least one token (e.g. BOS)")
        shared = longest_common_prefix(prefixes)
        shared = shared[: min(len(p) for p in prefixes)]
        self._ensure_cached(shared)
        out = torch.empty(len(prefixes), self.vocab_size, dtype=torch.float64)
        suffixes = [p[len(shared):] for p in prefixes]
        rows = [i for i, s in enumerate(suffixes) if s]
        for i, s in enumerate(suffixes):
            if not s:
                out[i] = self._last_logits[: self.vocab_size].double().log_softmax(-1)
        if rows:
            width = max(len(suffixes[i]) for i in rows)
            pad = suffixes[rows[0]][0]  # right padding never reaches real positions (causal)
            batch = torch.tensor([list(suffixes[i]) + [pad] * (width - len(suffixes[i])) for i in rows])
            cache = self._repeated_cache(len(rows))
            positions = torch.arange(len(shared), len(shared) + width).expand(len(rows), -1)
            last = torch.tensor([len(suffixes[i]) - 1 for i in rows])
            keep = torch.unique(last)  # the output head runs only where some row ends (it is the costly part)
            logits = self.model(input_ids=batch, past_key_values=cache, position_ids=positions,
                                use_cache=cache is not None, logits_to_keep=keep).logits
            self.forward_passes += 1
            column = torch.searchsorted(keep, last)
            picked = logits[torch.arange(len(rows)), column, : self.vocab_size].double().log_softmax(-1)
            out[rows] = picked
        return out

    def _ensure_cached(self, ids: tuple[int, ...]) -> None:
        keep = len(longest_common_prefix([self._cached_ids, ids]))
        if keep == len(ids) == len(self._cached_ids):
            return
        if keep == len(ids) and keep > 0:  # moving back: recompute the last token's logits
            keep -= 1
        if keep == 0:
            self._cache, self._cached_ids, self._last_logits = None, (), None
        elif keep < len(self._cached_ids):
            self._cache.crop(keep - len(self._cached_ids))  # negative: drop that many tokens
            self._cached_ids = self._cached_ids[:keep]
        new = ids[keep:]
        if not new:
            return
        positions = torch.arange(keep, len(ids)).unsqueeze(0)
        result = self.model(input_ids=torch.tensor([list(new)]), past_key_values=self._cache,
                            position_ids=positions, use_cache=True, logits_to_keep=1)
        self.forward_passes += 1
        self._cache = result.past_key_values
        self._cached_ids = ids
        self._last_logits = result.logits[0, -1]

    def _repeated_cache(self, batch: int):
        if self._cache is None:
            return None
        cache = copy.deepcopy(self._cache)
        if batch > 1:
            cache.batch_repeat_interleave(batch)
        return cache
