"""What completions and chat share: admission, context checks, sampling specs, usage, logprob text."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from ..models.config import Settings
from ..engines.base import Engine, EngineError
from .errors import bad_request, overloaded
from .metrics import Metrics
from ..models.registry import ModelRegistry, ServedModel
from ..plans import DecodingPlan
from .protocol import UsageInfo, _SamplingFields
from ..sampling import SamplingSpec

__all__ = ["ServingBase", "check_context", "build_spec", "usage_info"]

log = logging.getLogger(__name__)


def check_context(engine: Engine, prompt_len: int, max_tokens: int | None) -> int:
    """Return the effective max_tokens, or raise a 400 when the request cannot fit."""
    limit = engine.max_model_len
    if max_tokens is None:
        max_tokens = limit - prompt_len
    if prompt_len + max_tokens > limit or max_tokens <= 0 and prompt_len >= limit:
        raise bad_request(
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{prompt_len + max_tokens} tokens ({prompt_len} in the prompt, {max_tokens} for the completion). "
            "Please reduce the length of the prompt or max_tokens.",
            "max_tokens" if prompt_len < limit else "prompt",
        )
    return max_tokens


def build_spec(request: _SamplingFields, engine: Engine, max_tokens: int, choice: int, logprobs: int | None,
               prompt_logprobs: int | None, plan: DecodingPlan = DecodingPlan()) -> SamplingSpec:
    """One choice's ``SamplingSpec``; ``plan`` comes from the request's ``to_decoding_plan``."""
    tokenizer = engine.tokenizer
    stop_ids = list(request.stop_token_ids or [])
    if not request.ignore_eos and tokenizer.eos_token_id is not None:
        stop_ids.append(tokenizer.eos_token_id)
    vocab = len(tokenizer)
    bias = {int(k): v for k, v in (request.logit_bias or {}).items()}
    bad = [t for t in list(bias) + stop_ids if not 0 <= t < vocab]
    if bad:
        raise bad_request(f"token ids {bad} are outside the vocabulary (size {vocab})", "logit_bias")
    seed = None if request.seed is None else request.seed + choice
    spec = SamplingSpec(
        max_tokens=max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=max(request.top_k, 0),
        min_p=request.min_p,
        seed=seed,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        repetition_penalty=request.repetition_penalty,
        logit_bias=bias or None,
        logprobs=logprobs,
        prompt_logprobs=prompt_logprobs,
        stop_token_ids=tuple(stop_ids),
        plan=plan,
    )
    try:
        engine.validate(spec)
    except EngineError as exc:
        raise bad_request(str(exc), exc.param) from exc
    return spec


def usage_info(prompt_tokens: int, completion_tokens: int) -> UsageInfo:
    return UsageInfo(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                     total_tokens=prompt_tokens + completion_tokens)


_LOWEST_LOGPROB = -9999.0  # what vLLM's server sends for -inf (masked tokens): JSON has no infinity


def json_logprob(logprob: float) -> float:
    return max(logprob, _LOWEST_LOGPROB)


def token_text(tokenizer, token_id: int) -> str:
    return tokenizer.decode([token_id], skip_special_tokens=False)


@dataclass
class ServingBase:
    registry: ModelRegistry
    settings: Settings
    metrics: Metrics

    def admit(self, request: _SamplingFields, sequences: int) -> ServedModel:
        served = self.registry.get(request.model)
        if request.model_extra:
            log.info("ignoring unknown request fields: %s", sorted(request.model_extra))
        if request.n > self.settings.max_n:
            raise bad_request(f"n must be at most {self.settings.max_n}, got {request.n}", "n")
        stats = served.engine.stats()
        capacity = served.config.max_num_seqs + self.settings.max_queue
        if stats.running + stats.waiting + sequences > capacity:
            raise overloaded(f"the request queue of model {request.model!r} is full "
                             f"({stats.running} running, {stats.waiting} waiting); retry later")
        return served
