"""The engine interface: token ids in, a stream of token deltas out.

The server never cares which engine runs a model. Detokenization, stop strings, ``n`` and
response shaping live in the serving layer; engines only schedule and run the model. Decoding
methods beyond plain sampling arrive as a typed ``SamplingSpec.plan`` (``braid.server.plans``):
an engine declares the ``Capability`` members it runs and answers ``supports(plan)``.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Literal

from ..plans import Capability, ContrastiveMethod, DecodingPlan, Refusal, capability_refusal
from ..sampling import SamplingSpec

__all__ = ["ChatConversation", "Engine", "EngineRequest", "EngineOutput", "TokenLogprob", "EngineStats", "EngineError",
           "EngineUnavailable"]

FinishReason = Literal["stop", "length", "abort"]


class EngineError(RuntimeError):
    """A request the engine cannot run (bad parameters for this engine). Mapped to HTTP 400 naming
    ``param`` (the request field at fault) where the engine knows it."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class EngineUnavailable(RuntimeError):
    """The engine cannot serve now: it failed, is restarting, or the server is shutting down.
    Mapped to HTTP 503 (with ``Retry-After`` when ``retry_after`` is known); a stream ends with an
    error event. Unlike ``EngineError`` it says nothing about the request."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class ChatConversation:
    """The conversation behind a chat request's prompt, for engines that render it themselves
    (a byte-level ensemble renders it with each member's own template)."""

    messages: tuple[dict[str, str], ...]  # {"role", "content"}
    add_generation_prompt: bool = True
    template_kwargs: dict | None = None


@dataclass(frozen=True)
class EngineRequest:
    request_id: str
    prompt_token_ids: list[int]
    sampling: SamplingSpec
    chat: ChatConversation | None = None  # set for /v1/chat/completions; most engines need only the token ids


@dataclass(frozen=True)
class TokenLogprob:
    """Log-probability of one token, with the top alternatives (id, logprob), best first."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class EngineOutput:
    """A delta: tokens produced since the previous output of the same request."""

    token_ids: list[int]
    num_prompt_tokens: int
    logprobs: list[TokenLogprob] | None = None  # one per token in token_ids, if requested
    prompt_logprobs: list[TokenLogprob | None] | None = None  # first output only; entry 0 is None
    finish_reason: FinishReason | None = None


@dataclass(frozen=True)
class EngineStats:
    running: int
    waiting: int


class Engine(abc.ABC):
    """Owns a model, its tokenizer and its scheduler.

    ``generate`` is an async generator; closing it early (client disconnect, stop string
    reached) must abort the request and free its slot.
    """

    name: str
    tokenizer: "object"  # a transformers PreTrainedTokenizerBase
    max_model_len: int
    capabilities: frozenset[Capability] = frozenset()  # decoding methods beyond plain sampling
    cache_home: Path | None = None  # Braid's cache root (BRAID_HOME), set by the app; per-model caches go below

    async def start(self) -> None:
        """Load weights and start background loops. Called once before serving."""

    async def shutdown(self) -> None:
        """Stop background loops and free memory. Also called on an engine that failed."""

    def failure(self) -> str | None:
        """Why this engine can no longer serve (its worker died, its step raised), or None while it
        can. Cheap: the supervisor polls it. Once set it stays set; the engine is then replaced."""
        return None

    def supports(self, plan: DecodingPlan) -> Refusal | None:
        """Why this engine cannot run ``plan``, or None. Here: a method outside ``capabilities``, or
        vcd without images; engines add their own limits (e.g. two slots for a contrastive pair)."""
        refusal = capability_refusal(self.name, plan.required_capabilities(), self.capabilities)
        vcd = plan.contrastive is not None and plan.contrastive.method is ContrastiveMethod.VCD
        if refusal is None and vcd and plan.images is None:
            return Refusal("vcd contrasts the prompt's images with noised copies: the request has no images")
        return refusal

    def validate(self, sampling: SamplingSpec) -> None:
        """Raise ``EngineError`` for parameters this engine cannot honour (checked before streaming).
        Here: a plan it does not support; engines extend it with their own parameters."""
        refusal = self.supports(sampling.plan)
        if refusal is not None:
            raise EngineError(refusal.message, refusal.param)

    def admit(self, requests: list[EngineRequest]) -> None:
        """Raise ``EngineUnavailable`` (with ``retry_after``) if the engine should refuse these
        requests for now rather than queue them; called before a response starts. Here: never."""

    @abc.abstractmethod
    def generate(self, request: EngineRequest) -> AsyncIterator[EngineOutput]:
        ...

    @abc.abstractmethod
    def stats(self) -> EngineStats:
        ...
