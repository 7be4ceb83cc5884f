"""OpenAI-compatible request/response models (pydantic), plus Braid's extension fields.

Data shapes, and the requests' conversion of Braid's decoding-method blocks into the engine's
``DecodingPlan`` (``to_decoding_plan``). Field constraints make invalid requests fail where they are
parsed (HTTP 400). Unknown extra fields are accepted (OpenAI clients send new ones all the
time) and logged by the serving layer.
"""
from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..decoding.structured import StructuredOutputPlan
from ..plans import Capability, ContrastiveMethod, DecodingPlan, ImageInputs, capability_refusal
from .protocol_methods import DEFAULT_DISTURBANCE, ContrastiveParams, SteerParams, _bad_request
from .protocol_tools import (ChatCompletionTool, DeltaToolCall, ResponseFormat, StructuredOutputsRequest, ToolCallItem,
                             ToolChoice, _unset)

if TYPE_CHECKING:
    from ..prompts.method_prompts import MethodPrompt

__all__ = [
    "ErrorInfo", "ErrorResponse", "StreamOptions", "UsageInfo",
    "CompletionRequest", "CompletionLogprobs", "CompletionChoice", "CompletionResponse",
    "ChatMessage", "ChatCompletionRequest", "ChatTokenLogprob", "ChatTopLogprob", "ChatLogprobs",
    "ChatChoice", "ChatCompletionResponse", "DeltaMessage", "ChatChunkChoice", "ChatCompletionChunk",
    "ModelCard", "ModelList", "TokenizeRequest", "TokenizeResponse", "DetokenizeRequest", "DetokenizeResponse",
    "HealthResponse", "ModelHealth", "ContrastiveParams", "SteerParams", "DEFAULT_DISTURBANCE",
]


def random_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int | str | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo


class StreamOptions(BaseModel):
    include_usage: bool = False
    continuous_usage_stats: bool = False


class UsageInfo(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class _SamplingFields(BaseModel):
    """Parameters shared by /v1/completions and /v1/chat/completions, in OpenAI's order."""

    model_config = ConfigDict(extra="allow")

    model: str
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    n: int = Field(1, ge=1)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    stop: str | list[str] | None = Field(None, validate_default=True)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    user: str | None = None

    # --- Braid / vLLM extensions (send with the OpenAI client's extra_body) ---
    top_k: int = Field(0, ge=-1, description="0 or -1 disables top-k.")
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0)
    ignore_eos: bool = False
    stop_token_ids: list[int] | None = None
    contrastive: ContrastiveParams | None = Field(None, description="Contrastive decoding (ICD, ASCD, VCD).")
    steer: SteerParams | None = Field(None, description="Attention steering toward prompt spans (chat with "
                                                        "images: toward the image tokens).")
    response_format: ResponseFormat | None = Field(
        None, description="text, json_object or json_schema: the output is constrained to it (on completions "
                          "a Braid extension).")
    structured_outputs: StructuredOutputsRequest | None = Field(
        None, description="vLLM's extension: exactly one of json, regex, choice, grammar, json_object, "
                          "structural_tag.")

    @field_validator("logit_bias")
    @classmethod
    def _bias_keys(cls, bias: dict[str, float] | None) -> dict[str, float] | None:
        for key, value in (bias or {}).items():
            if not key.lstrip("-").isdigit():
                raise ValueError(f"logit_bias keys must be token ids, got {key!r}")
            if not -100.0 <= value <= 100.0:
                raise ValueError(f"logit_bias values must be in [-100, 100], got {value}")
        return bias

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, stop: str | list[str] | None) -> list[str]:
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if any(s == "" for s in stops):
            raise ValueError("stop strings must not be empty")
        if len(stops) > 16:
            raise ValueError("at most 16 stop strings")
        return stops

    def asked_capabilities(self) -> frozenset[Capability]:
        """The decoding methods the request's blocks name (ascd's top-level steer counts as steer)."""
        asked = set()
        if self.contrastive is not None:
            asked.add(ContrastiveMethod(self.contrastive.method).capability)
        if self.steer is not None:
            asked.add(Capability.STEER)
        return frozenset(asked)

    def to_decoding_plan(self, prompt: MethodPrompt, capabilities: frozenset[Capability],
                         structured: StructuredOutputPlan | None = None) -> DecodingPlan:
        """The decoding plan of ``prompt`` on an engine that runs ``capabilities``; ``structured``: the
        output constraint the serving layer derived (response_format, structured_outputs, tools). A
        method the engine lacks is the first 400, before the blocks meet the prompt."""
        asked = self.asked_capabilities() | ({Capability.STRUCTURED} if structured is not None else set())
        refusal = capability_refusal(self.model, asked, capabilities)
        if refusal is not None:
            raise _bad_request(refusal.message, refusal.param)
        contrastive = self.contrastive.to_plan(prompt, self.steer) if self.contrastive is not None else None
        steer = self.steer.to_plan(prompt) if self.steer is not None and contrastive is None else None
        images = ImageInputs(prompt.pixel_values) if prompt.pixel_values is not None else None
        return DecodingPlan(contrastive, steer, images, structured)


class CompletionRequest(_SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=20)
    max_tokens: int | None = Field(16, ge=0)
    suffix: str | None = None

    # --- Braid extension (send with extra_body) ---
    prompt_boundary: Literal["tokens", "exact"] = Field(
        "tokens", description="exact: condition exactly on the prompt text even where it ends mid-token "
                              "(token-level models; byte-level models always do).")

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, prompt: Any) -> Any:
        if isinstance(prompt, list) and len(prompt) == 0:
            raise ValueError("prompt must not be an empty list")
        return prompt


class CompletionLogprobs(BaseModel):
    text_offset: list[int] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    tokens: list[str] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None


class CompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: random_id("cmpl"))
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: UsageInfo | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCallItem] | None = None  # assistant turns that called tools
    tool_call_id: str | None = None  # tool turns: the call this is the result of


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    add_generation_prompt: bool = True
    chat_template_kwargs: dict[str, Any] | None = None
    tools: list[ChatCompletionTool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True

    # --- Braid extension ---
    tool_call_constraint: Literal["grammar", "none"] = Field(
        "grammar", description="grammar: tool calls are constrained to the tools' schemas; none: tools are "
                               "rendered and calls parsed, but not enforced (for comparisons).")


class ChatTopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class ChatTokenLogprob(ChatTopLogprob):
    top_logprobs: list[ChatTopLogprob] = Field(default_factory=list)


class ChatLogprobs(BaseModel):
    content: list[ChatTokenLogprob] | None = None


class _AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCallItem] | None = Field(None, exclude_if=_unset)


class ChatChoice(BaseModel):
    index: int
    message: _AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: Literal["stop", "length", "tool_calls"] | None = None


class ChatCompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: random_id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: UsageInfo | None = None


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[DeltaToolCall] | None = Field(None, exclude_if=_unset)


class ChatChunkChoice(BaseModel):
    index: int
    delta: DeltaMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: Literal["stop", "length", "tool_calls"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: UsageInfo | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "braid"
    root: str | None = None
    max_model_len: int | None = None
    engine: str | None = Field(None, description="vllm, transformers, bytelevel, or `workflow` for a workflow id.")
    workflow: str | None = Field(None, exclude_if=_unset, description="Braid extension: the workflow this id runs.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class TokenizeRequest(BaseModel):
    model: str
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]


class DetokenizeRequest(BaseModel):
    model: str
    tokens: list[int]


class DetokenizeResponse(BaseModel):
    prompt: str


class ModelHealth(BaseModel):
    state: Literal["starting", "ready", "failed", "restarting", "stopped"]
    reason: str | None = None  # why the engine is not ready
    restarts: int = 0  # engine restart attempts since the server started


class HealthResponse(BaseModel):
    """``GET /health``: ``ok`` (HTTP 200) only while the server admits requests and every model is ready."""

    status: Literal["ok", "unavailable", "draining", "no models"]
    models: dict[str, ModelHealth] = Field(default_factory=dict)
