"""One engine step after scheduling: forward, combine pairs, sample, append tokens, decide finishes.

All scheduled branches run in one packed forward. Each unit then gets one row of scores: a plain
sequence its logits; a contrastive pair ``contrastive_scores(positive, negative)`` of its two
branches' logits. The ordinary sampler runs on those rows, and the chosen token is appended to
every branch of the unit. Reported logprobs are the log-softmax of the row the sampler saw
(before bias, penalties and temperature): for a pair, the final combined distribution, in which
tokens outside the plausibility set have probability 0 and are never listed. A pair's negative
branch is scored only at the positive branch's plausible tokens where that changes nothing
(``sparse_negative``; why in ``sparse_head``).
"""
from __future__ import annotations

import math

import torch

from ...decoding.contrastive import contrastive_scores, plausible
from ...decoding.grammar import allocate_bitmask, apply_bitmask, fill_bitmasks
from ..base import EngineOutput, TokenLogprob
from .model_runner import ModelRunner, StepLogits
from .sampler import SamplingRow, sample, token_logprobs
from .scheduler import ScheduledBatch, Scheduler, Sequence

__all__ = ["constrained_scores", "run_step", "sparse_negative", "unit_scores"]


def sparse_negative(unit: Sequence) -> bool:
    """Can this pair's negative branch be scored at the plausible tokens only (see ``sparse_head``)?
    Not when every token may be plausible (beta 0) or the scores meet a repetition penalty."""
    return unit.sampling.plan.contrastive.beta > 0 and unit.sampling.repetition_penalty == 1.0


def unit_scores(step: StepLogits, seqs: list[Sequence], units: list[Sequence]) -> torch.Tensor:
    """The step's logits of every branch -> [len(units), V] rows to sample from. A constrained
    unit's row is masked first, so a pair's plausibility cut ranks only the tokens its grammar
    allows (masking after the cut could leave no token at all)."""
    last = step.last
    row_of = {id(s): i for i, s in enumerate(seqs)}
    scores = constrained_scores(last[[row_of[id(u)] for u in units]], units)
    pairs = [k for k, u in enumerate(units) if u.negative is not None]
    if not pairs:
        return scores
    scores = scores.float()
    params = [units[k].sampling.plan.contrastive for k in pairs]
    alpha = torch.tensor([p.alpha for p in params], dtype=torch.float32)
    beta = torch.tensor([p.beta for p in params], dtype=torch.float32)
    negative = last[[row_of[id(units[k].negative)] for k in pairs]].float()
    for j, k in enumerate(pairs):
        row = row_of[id(units[k].negative)]
        if row in step.hidden:  # only the plausible tokens' logits: the rest of the row stays -inf
            tokens = plausible(scores[k].log_softmax(-1), beta[j]).nonzero().squeeze(-1)
            negative[j] = float("-inf")
            negative[j, tokens] = step.logits_at(row, tokens).float()
    scores[pairs] = contrastive_scores(scores[pairs], negative, alpha, beta)
    return scores


def constrained_scores(scores: torch.Tensor, units: list[Sequence]) -> torch.Tensor:
    """Each constrained unit's row with the tokens its grammar forbids at -inf (in place, on the
    units' own copy of the logits), before logprobs, penalties and sampling: vLLM's order, so both
    engines mask the same row."""
    constraints = {k: u.constraint for k, u in enumerate(units) if u.constraint is not None}
    if not constraints:
        return scores
    bitmask = allocate_bitmask(len(units), scores.shape[-1])
    return apply_bitmask(scores, bitmask, fill_bitmasks(bitmask, constraints))


def run_step(runner: ModelRunner, scheduler: Scheduler, batch: ScheduledBatch,
             max_model_len: int) -> list[tuple[str, EngineOutput]]:
    seqs, units = batch.seqs, batch.units or batch.seqs
    row_of = {id(s): i for i, s in enumerate(seqs)}
    want_prompt = {
        row_of[id(u)] for u in units
        if batch.is_prefill and u.sampling.prompt_logprobs is not None and not u.prompt_logprobs_done
    }
    sparse = {row_of[id(u.negative)] for u in units if u.negative is not None and sparse_negative(u)}
    step = runner.run(seqs, want_prompt, sparse)
    scores = unit_scores(step, seqs, units)
    rows = [
        SamplingRow(u.sampling, u.token_ids[:u.num_prompt_tokens], u.output_token_ids, u.generator)
        for u in units
    ]
    tokens = sample(scores, rows)
    logprobs_all = None
    if any(u.sampling.logprobs is not None for u in units):
        logprobs_all = scores.float().log_softmax(dim=-1)

    outputs = []
    for i, (unit, token) in enumerate(zip(units, tokens.tolist())):
        for branch in unit.branches:
            branch.token_ids.append(token)
        if unit.constraint is not None and not unit.constraint.accept(token):
            raise RuntimeError(f"request {unit.request_id}: token {token} is outside its grammar")
        logprobs = None
        if unit.sampling.logprobs is not None:
            logprobs = token_logprobs(logprobs_all[i:i + 1], tokens[i:i + 1], unit.sampling.logprobs)
            if unit.negative is not None:
                logprobs = [_finite_top(entry) for entry in logprobs]
        prompt_logprobs = None
        if row_of[id(unit)] in want_prompt:
            prompt_logprobs = _prompt_logprobs(unit, step.prompt[row_of[id(unit)]])
            unit.prompt_logprobs_done = True
        finish = _finish_reason(unit, token, max_model_len)
        if finish is not None:
            scheduler.finish(unit)
        outputs.append((unit.request_id, EngineOutput(
            token_ids=[token],
            num_prompt_tokens=unit.num_prompt_tokens,
            logprobs=logprobs,
            prompt_logprobs=prompt_logprobs,
            finish_reason=finish,
        )))
    return outputs


def _finite_top(entry: TokenLogprob) -> TokenLogprob:
    return TokenLogprob(entry.token_id, entry.logprob, tuple((t, lp) for t, lp in entry.top if math.isfinite(lp)))


def _prompt_logprobs(seq: Sequence, logits: torch.Tensor) -> list[TokenLogprob | None]:
    targets = torch.tensor(seq.token_ids[1:seq.num_prompt_tokens], dtype=torch.long, device=logits.device)
    scored = token_logprobs(logits.float().log_softmax(dim=-1), targets, seq.sampling.prompt_logprobs) if len(targets) else []
    return [None, *scored]


def _finish_reason(unit: Sequence, token: int, max_model_len: int) -> str | None:
    if token in unit.sampling.stop_token_ids:
        return "stop"
    longest = max(len(b) for b in unit.branches)
    if unit.num_output_tokens >= unit.sampling.max_tokens or longest >= max_model_len:
        return "length"
    return None
