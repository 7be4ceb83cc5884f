"""Contrastive pairs inside vLLM: a V1 logits processor that ties two requests together.

A contrastive request runs as two vLLM requests, a positive and a negative branch, marked in
``SamplingParams.extra_args[PAIR_KEY]``. Each step the processor finds both rows of every pair in
the batch, computes ``contrastive_scores(positive, negative)``, applies the pair's logit bias and
repetition penalty (both skipped by vLLM for pair rows, so that they act on the scores, as on the
transformers engine) and writes the result into BOTH rows. The rows share every other sampling
parameter, including one seed, so vLLM's own sampler (frequency/presence penalties, temperature,
min_p, top-k/top-p, seeded Gumbel draw) picks the same token for both: both branches condition on
the same generated tokens.

That holds only while the two rows step together. A row whose partner is missing from the step or
has a different number of output tokens belongs to a *split* pair: the processor logs it, marks the
pair broken for good and forces each of its rows to a token that differs from the partner's token at
the same position, so the engine adapter, which checks that both branches produce identical tokens,
always sees the split and fails the request instead of streaming a wrong token.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from ...decoding.contrastive import contrastive_scores
from ...decoding.sampling_steps import apply_logit_bias, apply_repetition_penalty
from ...plans import ContrastivePlan

log = logging.getLogger(__name__)

PAIR_KEY = "braid_contrastive_pair"
POSITIVE, NEGATIVE = 0, 1
_ROLE_NAMES = ("positive", "negative")


def pair_args(pair_id: str, role: int, contrastive: ContrastivePlan, logit_bias: dict[int, float] | None,
              repetition_penalty: float) -> dict[str, Any]:
    """The ``extra_args`` entry that marks a request as one branch of a contrastive pair."""
    return {PAIR_KEY: {"pair": pair_id, "role": role, "alpha": float(contrastive.alpha),
                       "beta": float(contrastive.beta),
                       "logit_bias": {int(k): float(v) for k, v in (logit_bias or {}).items()},
                       "repetition_penalty": float(repetition_penalty)}}


@dataclass
class _Row:
    pair: str
    role: int
    alpha: float
    beta: float
    logit_bias: dict[int, float]
    repetition_penalty: float
    prompt_ids: list[int]
    output_ids: list[int]  # vLLM's live list of the request's generated tokens


def _aligned(pos: _Row, neg: _Row) -> bool:
    n = len(pos.output_ids)
    return n == len(neg.output_ids) and (n == 0 or pos.output_ids[-1] == neg.output_ids[-1])


def _apply_bias_and_repetition(scores: torch.Tensor, row: _Row) -> None:
    """In place on one row of scores, with vLLM's semantics (``vllm/v1/sample/ops/penalties.py``)."""
    if row.logit_bias:
        apply_logit_bias(scores, row.logit_bias)
    if row.repetition_penalty != 1.0:
        apply_repetition_penalty(scores, row.prompt_ids, row.output_ids, row.repetition_penalty)


try:
    from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
    from vllm.v1.sample.logits_processor.builtin import process_dict_updates
except ImportError:  # vLLM not installed: the transformers engine still works
    LogitsProcessor = object  # type: ignore[assignment,misc]


class ContrastivePairProcessor(LogitsProcessor):  # type: ignore[misc,valid-type]
    """Registered by ``VLLMEngine`` (vLLM's V1 model runner); a no-op for requests without ``PAIR_KEY``."""

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool) -> None:
        self.rows: dict[int, _Row] = {}  # persistent-batch index -> branch
        self.broken: set[str] = set()

    @classmethod
    def validate_params(cls, params) -> None:
        info = (params.extra_args or {}).get(PAIR_KEY)
        if info is None:
            return
        if info.get("role") not in (POSITIVE, NEGATIVE) or not isinstance(info.get("pair"), str):
            raise ValueError(f"{PAIR_KEY} needs a 'pair' id and a 'role' of 0 or 1, got {info!r}")
        if params.logit_bias or params.repetition_penalty != 1.0 or params.seed is None:
            raise ValueError("a contrastive pair's requests carry logit_bias and repetition_penalty in "
                             f"{PAIR_KEY} and need a shared seed")

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: "BatchUpdate | None") -> None:
        process_dict_updates(self.rows, batch_update, self._new_row)
        if batch_update is not None and self.broken:
            self.broken &= {row.pair for row in self.rows.values()}

    @staticmethod
    def _new_row(params, prompt_ids: list[int] | None, output_ids: list[int]) -> _Row | None:
        info = (params.extra_args or {}).get(PAIR_KEY) if params is not None else None
        if info is None:
            return None
        return _Row(info["pair"], info["role"], info["alpha"], info["beta"],
                    {int(k): v for k, v in info["logit_bias"].items()}, info["repetition_penalty"],
                    list(prompt_ids or []), output_ids)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.rows:
            return logits
        pairs: dict[str, list[int | None]] = {}
        for index, row in self.rows.items():
            pairs.setdefault(row.pair, [None, None])[row.role] = index
        whole = []
        for pair, (pos, neg) in pairs.items():
            if (pos is not None and neg is not None and pair not in self.broken
                    and _aligned(self.rows[pos], self.rows[neg])):
                whole.append((pos, neg))
            else:
                self._split(logits, pair, pos, neg)
        if whole:
            self._combine(logits, whole)
        return logits

    def _combine(self, logits: torch.Tensor, whole: list[tuple[int, int]]) -> None:
        pos = [p for p, _ in whole]
        neg = [n for _, n in whole]
        rows = [self.rows[p] for p in pos]
        alpha = torch.tensor([r.alpha for r in rows], dtype=torch.float32)
        beta = torch.tensor([r.beta for r in rows], dtype=torch.float32)
        scores = contrastive_scores(logits[pos], logits[neg], alpha, beta).to(logits.dtype)
        for k, row in enumerate(rows):
            _apply_bias_and_repetition(scores[k], row)
        logits[pos] = scores
        logits[neg] = scores

    def _split(self, logits: torch.Tensor, pair: str, pos: int | None, neg: int | None) -> None:
        """Force every present row of a split pair to a token its partner did not emit there."""
        if pair not in self.broken:
            self.broken.add(pair)
            where = [f"at {len(self.rows[i].output_ids)} tokens" if i is not None else "absent" for i in (pos, neg)]
            log.error("contrastive pair %s split: positive branch %s, negative %s; the request fails", pair, *where)
        vocab = logits.shape[-1]
        for index, partner in ((pos, neg), (neg, pos)):
            if index is None:
                continue
            row = self.rows[index]
            at = len(row.output_ids)
            other = self.rows[partner].output_ids if partner is not None else []
            token = (other[at] + 1) % vocab if at < len(other) else row.role
            logits[index].fill_(float("-inf"))
            logits[index, token] = 0.0
