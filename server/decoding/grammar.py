"""Constrained decoding with xgrammar: compiled plans, one matcher per sequence, batched bitmasks.

Built as vLLM 0.32's xgrammar backend builds them, so the transformers engine masks exactly the
tokens vLLM masks: the `TokenizerInfo` comes from the HF tokenizer with the model's logits width
as its vocab size (ids past the tokenizer are never allowed), and each sequence's matcher
takes the request's stop token ids (EOS, generation-config EOS ids and ``stop_token_ids``) as
the tokens that may end the output. Each step: `fill_bitmasks` over the running sequences, then
`apply_bitmask` on the raw logits before logprobs, penalties and sampling (vLLM's order).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
import xgrammar as xgr

from ._grammar_sources import compile_plan
from .structured import StructuredOutputPlan

__all__ = ["GrammarCompilerCache", "GrammarConstraint", "allocate_bitmask", "apply_bitmask", "fill_bitmasks"]

# vLLM's VLLM_XGRAMMAR_CACHE_MB default.
DEFAULT_CACHE_BYTES = 512 << 20
_ALL_ALLOWED = -1
_KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class GrammarConstraint:
    """One sequence's position in its grammar."""

    def __init__(self, compiled: xgr.CompiledGrammar, stop_token_ids: Iterable[int]):
        stops = sorted(set(stop_token_ids))
        self._matcher = xgr.GrammarMatcher(compiled, override_stop_tokens=stops or None)

    def accept(self, token_id: int) -> bool:
        """Advance by the sampled token; False if the grammar forbids it. Tokens after the grammar
        has ended (a stop token was accepted) are ignored, as vLLM ignores them."""
        return self._matcher.is_terminated() or self._matcher.accept_token(token_id)

    def fill(self, bitmask: torch.Tensor, row: int) -> None:
        """Write the allowed next tokens into ``bitmask[row]``; all tokens once the grammar has ended."""
        if self._matcher.is_terminated():
            bitmask[row].fill_(_ALL_ALLOWED)
        else:
            self._matcher.fill_next_token_bitmask(bitmask, row)

    def is_terminated(self) -> bool:
        """True once a stop token completed the grammar."""
        return self._matcher.is_terminated()


class GrammarCompilerCache:
    """Compiles plans for one tokenizer and model; xgrammar's compiler keeps an LRU of compiled
    grammars keyed by source and options (``cache_limit_bytes``), as in vLLM."""

    def __init__(self, tokenizer, vocab_size: int, *, disable_any_whitespace: bool = False,
                 cache_limit_bytes: int = DEFAULT_CACHE_BYTES):
        """``tokenizer``: a Hugging Face tokenizer; ``vocab_size``: the model's logits width
        (``config.vocab_size``), which may exceed ``len(tokenizer)``. ``disable_any_whitespace``
        is vLLM's engine-wide ``structured_outputs_config.disable_any_whitespace``."""
        self.vocab_size = vocab_size
        self.disable_any_whitespace = disable_any_whitespace
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self._compiler = xgr.GrammarCompiler(info, max_threads=8, cache_enabled=True,
                                             cache_limit_bytes=cache_limit_bytes)

    def compile(self, plan: StructuredOutputPlan) -> xgr.CompiledGrammar:
        """The compiled grammar; raises on a plan `validate_plan` would have refused."""
        return compile_plan(self._compiler, plan, self.disable_any_whitespace)

    def constraint(self, plan: StructuredOutputPlan, stop_token_ids: Iterable[int]) -> GrammarConstraint:
        """A fresh matcher for one sequence; ``stop_token_ids`` as vLLM's ``all_stop_token_ids``."""
        return GrammarConstraint(self.compile(plan), stop_token_ids)


def allocate_bitmask(batch: int, vocab_size: int) -> torch.Tensor:
    """``[batch, ceil(vocab_size / 32)]`` int32 on CPU, all tokens allowed. Token ``t`` is bit
    ``t % 32`` (least significant first) of word ``t // 32``."""
    return xgr.allocate_token_bitmask(batch, vocab_size)


def fill_bitmasks(bitmask: torch.Tensor, constraints: Mapping[int, GrammarConstraint]) -> list[int]:
    """Fill ``bitmask[row]`` for each constrained batch row; returns those rows for `apply_bitmask`."""
    for row, constraint in constraints.items():
        constraint.fill(bitmask, row)
    return sorted(constraints)


def apply_bitmask(logits: torch.Tensor, bitmask: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
    """In place on ``logits [B, V]``: tokens that ``bitmask[r]`` forbids become ``-inf`` for each
    ``r`` in ``rows``; other rows are untouched. Returns ``logits``."""
    rows = list(rows)
    if not rows:
        return logits
    vocab = logits.shape[-1]
    if bitmask.shape[-1] * 32 < vocab:
        raise ValueError(f"the bitmask covers {bitmask.shape[-1] * 32} tokens but the logits have {vocab}; "
                         "allocate it with the logits width")
    bitmask = bitmask.to(logits.device, non_blocking=True)
    if logits.device.type == "cpu" and logits.dtype in _KERNEL_DTYPES:
        xgr.apply_token_bitmask_inplace(logits, bitmask, vocab_size=vocab, indices=rows, backend="cpu")
        return logits
    index = torch.tensor(rows, dtype=torch.long, device=logits.device)
    shifts = torch.arange(32, dtype=torch.int32, device=logits.device)
    allowed = ((bitmask[index].unsqueeze(-1) >> shifts) & 1).flatten(1)[:, :vocab].bool()
    logits[index] = logits[index].masked_fill(~allowed, float("-inf"))
    return logits
