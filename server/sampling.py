"""Engine-independent sampling parameters: what the HTTP layer hands to an engine."""
from __future__ import annotations

from dataclasses import dataclass

from .plans import DecodingPlan

__all__ = ["SamplingSpec"]


@dataclass(frozen=True)
class SamplingSpec:
    """One sequence's sampling parameters (``n`` is fanned out by the serving layer).

    Semantics follow vLLM so both engines agree: presence/frequency penalties count output
    tokens only, the repetition penalty counts prompt and output tokens, ``logit_bias`` is
    added to the logits before everything else, logprobs are the model's raw log-softmax
    (before penalties, temperature and truncation).
    """

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 disables top-k
    min_p: float = 0.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] | None = None
    logprobs: int | None = None  # top-N logprobs per generated token; 0 = only the chosen token
    prompt_logprobs: int | None = None  # same for prompt tokens (echo + logprobs)
    stop_token_ids: tuple[int, ...] = ()  # generation ends after emitting one of these (the eos ids unless ignore_eos)
    plan: DecodingPlan = DecodingPlan()  # decoding methods beyond plain sampling (contrastive, steering, images)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1
