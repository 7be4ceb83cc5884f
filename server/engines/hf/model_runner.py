"""Owns the model and the KV cache: turns a scheduled batch into one packed forward pass."""
from __future__ import annotations

import torch

from .attention import BatchMeta, SequenceMeta, consecutive_range
from .kv_cache import SlotKVCache
from .scheduler import Sequence
from .sparse_head import SparseHead
from .vision import ImageMerger


class StepLogits:
    """The logits of one forward pass: ``last`` [B, V] predicts each sequence's next token;
    ``prompt[i]`` [n_i - 1, V] (only for sequences that asked for prompt logprobs) scores the
    prompt tokens ``1..n_i-1``."""

    def __init__(self, last: torch.Tensor, prompt: dict[int, torch.Tensor],
                 hidden: dict[int, torch.Tensor] | None = None, head: SparseHead | None = None):
        self.last = last
        self.prompt = prompt
        self.hidden = hidden or {}  # rows asked for as hidden states: ``last`` is not filled there
        self._head = head

    def logits_at(self, row: int, token_ids: torch.Tensor) -> torch.Tensor:
        """The logits of ``token_ids`` only, for a row asked for as a hidden state."""
        return self._head.logits_at(self.hidden[row], token_ids)


class ModelRunner:
    def __init__(self, model, cache: SlotKVCache, images: ImageMerger | None = None):
        self.model = model
        self.cache = cache
        self.images = images  # multimodal models: merges image features into prefills
        self.device = next(model.parameters()).device
        self.sparse_head = SparseHead.install(model)  # None: every row gets full logits

    @torch.inference_mode()
    def run(self, seqs: list[Sequence], want_prompt_logits: set[int] = frozenset(),
            want_hidden: set[int] = frozenset()) -> StepLogits:
        """Forward the uncached tokens of ``seqs``; marks them cached. ``want_prompt_logits``:
        indices into ``seqs`` whose prompt positions need logits too. ``want_hidden``: indices
        whose next-token logits will be asked for only at some tokens (``StepLogits.logits_at``);
        ignored when the model's head cannot skip rows."""
        metas, input_ids, positions, slots = [], [], [], []
        for seq in seqs:
            start, n = seq.num_cached_tokens, seq.num_new_tokens
            metas.append(SequenceMeta(slot=seq.slot, start=start, num_new=n, score_modifier=seq.score_modifier))
            input_ids.extend(seq.token_ids[start:])
            positions.extend(range(start, start + n))
            slots.extend([seq.slot] * n)
        self.cache.ensure(max(m.slot for m in metas) + 1, max(m.end for m in metas))

        dev = self.device
        positions_t = torch.tensor(positions, dtype=torch.long, device=dev)
        is_decode = all(m.num_new == 1 for m in metas)
        meta = BatchMeta(
            cache=self.cache,
            seqs=tuple(metas),
            token_slots=torch.tensor(slots, dtype=torch.long, device=dev),
            token_positions=positions_t,
            decode_lengths=torch.tensor([m.end for m in metas], device=dev) if is_decode else None,
            decode_slot_range=consecutive_range(slots) if is_decode else None,
            plain_rows=_plain_rows(metas, dev) if is_decode else None,
        )
        ends = torch.tensor([m.num_new for m in metas]).cumsum(0).tolist()
        # Logits only where needed: each sequence's last token, then the asked-for prompt positions.
        keep = [e - 1 for e in ends]
        prompt_rows = {}
        for i in sorted(want_prompt_logits):
            first = ends[i] - metas[i].num_new
            prompt_rows[i] = (len(keep), seqs[i].num_prompt_tokens - 1)
            keep.extend(range(first, first + seqs[i].num_prompt_tokens - 1))
        ids = torch.tensor(input_ids, dtype=torch.long, device=dev)
        with_images = self.images.wanted(seqs, metas) if self.images is not None else []
        inputs = ({"inputs_embeds": self.images.embeds(ids, seqs, metas, with_images)[None]} if with_images
                  else {"input_ids": ids[None]})
        skip = sorted(want_hidden) if self.sparse_head is not None else []
        if skip:
            self.sparse_head.skip_rows = skip
        try:
            out = self.model(
                **inputs,
                position_ids=positions_t[None],
                use_cache=False,
                logits_to_keep=torch.tensor(keep, dtype=torch.long, device=dev),
                braid_batch=meta,
            )
        finally:
            if skip:
                self.sparse_head.skip_rows = []
        for seq in seqs:
            seq.num_cached_tokens = len(seq)
        logits = out.logits[0]
        prompt = {i: logits[row:row + n] for i, (row, n) in prompt_rows.items()}
        hidden = dict(zip(skip, self.sparse_head.captured[0])) if skip else {}
        return StepLogits(logits[:len(seqs)], prompt, hidden, self.sparse_head)

    @torch.inference_mode()
    def forward_alone(self, token_ids: list[int], score_modifier) -> torch.Tensor:
        """One sequence through the model on a private one-slot cache (the shared cache is left
        alone), with ``score_modifier`` on every layer; returns the last position's logits [V]."""
        cache = SlotKVCache(self.cache.num_layers, self.cache.num_kv_heads, self.cache.head_dim,
                            dtype=self.cache.dtype, device=self.device, max_len=len(token_ids))
        cache.ensure(1, len(token_ids))
        n, dev = len(token_ids), self.device
        meta = BatchMeta(cache=cache, seqs=(SequenceMeta(0, 0, n, score_modifier),),
                         token_slots=torch.zeros(n, dtype=torch.long, device=dev),
                         token_positions=torch.arange(n, device=dev), decode_lengths=None)
        out = self.model(input_ids=torch.tensor([token_ids], dtype=torch.long, device=dev),
                         position_ids=torch.arange(n, device=dev)[None], use_cache=False, logits_to_keep=1,
                         braid_batch=meta)
        return out.logits[0, -1]


def _plain_rows(metas: list[SequenceMeta], device) -> torch.Tensor | None:
    if not any(m.score_modifier for m in metas):
        return None
    return torch.tensor([i for i, m in enumerate(metas) if m.score_modifier is None], dtype=torch.long, device=device)
