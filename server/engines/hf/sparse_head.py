"""An output head that can skip rows: a contrastive pair's negative branch needs its logits only
at the tokens the positive branch finds plausible.

``score = (1 + alpha) log p - alpha log n`` is masked to ``-inf`` outside the plausibility set, and
everything the sampler does with a row of scores (softmax, temperature, top-k/p, min-p, additive
bias and penalties, reported log-softmax) is unchanged by adding one constant to the row. The
negative branch's normalizer ``log Z_n`` is such a constant, so ``log n`` at the plausible tokens
(a handful), normalized among themselves, gives the same result as the full log-softmax. That
saves the second row of the output-head product, the largest single cost of a pair's step on a CPU
(a ``[2, d] x [d, V]`` product costs about twice a ``[1, d]`` one there). Not shift-invariant:
vLLM-style repetition penalty (scales by sign); such pairs use the full row.

Only for models whose logits are ``lm_head(hidden)`` exactly (no final soft-capping or scaling).
"""
from __future__ import annotations

import torch
from torch import nn

_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


class SparseHead(nn.Module):
    """Wraps ``model.lm_head``; while ``skip_rows`` is set, those rows of the head's input are kept
    as ``captured`` hidden states and their logits left at zero (the caller never reads them)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear
        self.skip_rows: list[int] = []
        self.captured: torch.Tensor | None = None

    @classmethod
    def install(cls, model) -> "SparseHead | None":
        """Put a ``SparseHead`` in place of ``model.lm_head`` if the model's logits are the head's
        plain output; None (model untouched) otherwise."""
        head = getattr(model, "lm_head", None)
        config = model.config.get_text_config()
        transformed = any(getattr(config, name, None) not in (None, 1, 1.0) for name in _LOGIT_TRANSFORMS)
        if not isinstance(head, nn.Linear) or transformed:
            return None
        model.lm_head = cls(head)
        return model.lm_head

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if not self.skip_rows:
            return self.linear(hidden)
        skip = set(self.skip_rows)
        keep = [i for i in range(hidden.shape[1]) if i not in skip]
        out = hidden.new_zeros(hidden.shape[0], hidden.shape[1], self.linear.out_features)
        if keep:
            out[:, keep] = self.linear(hidden[:, keep])
        self.captured = hidden[:, self.skip_rows]
        return out

    @torch.inference_mode()
    def logits_at(self, hidden: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        """``hidden`` [d] -> the logits of ``token_ids`` only."""
        weight = self.linear.weight.index_select(0, token_ids)
        logits = weight @ hidden.to(weight.dtype)
        if self.linear.bias is not None:
            logits = logits + self.linear.bias.index_select(0, token_ids)
        return logits
