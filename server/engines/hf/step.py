"""One engine step after scheduling: forward, sample, append tokens, decide finishes, build deltas."""
from __future__ import annotations

import torch

from ..base import EngineOutput, TokenLogprob
from .model_runner import ModelRunner
from .sampler import SamplingRow, sample, token_logprobs
from .scheduler import ScheduledBatch, Scheduler, Sequence

__all__ = ["run_step"]


def run_step(runner: ModelRunner, scheduler: Scheduler, batch: ScheduledBatch,
             max_model_len: int) -> list[tuple[str, EngineOutput]]:
    seqs = batch.seqs
    want_prompt = {
        i for i, s in enumerate(seqs)
        if batch.is_prefill and s.sampling.prompt_logprobs is not None and not s.prompt_logprobs_done
    }
    step = runner.run(seqs, want_prompt)
    rows = [
        SamplingRow(s.sampling, s.token_ids[:s.num_prompt_tokens], s.output_token_ids, s.extra.get("generator"))
        for s in seqs
    ]
    tokens = sample(step.last, rows)
    raw_logprobs = None
    if any(s.sampling.logprobs is not None for s in seqs):
        raw_logprobs = step.last.float().log_softmax(dim=-1)

    outputs = []
    for i, (seq, token) in enumerate(zip(seqs, tokens.tolist())):
        seq.token_ids.append(token)
        logprobs = None
        if seq.sampling.logprobs is not None:
            logprobs = token_logprobs(raw_logprobs[i:i + 1], tokens[i:i + 1], seq.sampling.logprobs)
        prompt_logprobs = None
        if i in want_prompt:
            prompt_logprobs = _prompt_logprobs(seq, step.prompt[i])
            seq.prompt_logprobs_done = True
        finish = _finish_reason(seq, token, max_model_len)
        if finish is not None:
            scheduler.finish(seq)
        outputs.append((seq.request_id, EngineOutput(
            token_ids=[token],
            num_prompt_tokens=seq.num_prompt_tokens,
            logprobs=logprobs,
            prompt_logprobs=prompt_logprobs,
            finish_reason=finish,
        )))
    return outputs


def _prompt_logprobs(seq: Sequence, logits: torch.Tensor) -> list[TokenLogprob | None]:
    targets = torch.tensor(seq.token_ids[1:seq.num_prompt_tokens], dtype=torch.long, device=logits.device)
    scored = token_logprobs(logits.float().log_softmax(dim=-1), targets, seq.sampling.prompt_logprobs) if len(targets) else []
    return [None, *scored]


def _finish_reason(seq: Sequence, token: int, max_model_len: int) -> str | None:
    if token in seq.sampling.stop_token_ids:
        return "stop"
    if seq.num_output_tokens >= seq.sampling.max_tokens or len(seq) >= max_model_len:
        return "length"
    return None
