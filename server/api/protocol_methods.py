"""Braid's decoding-method extension blocks of a request: ``contrastive`` and ``steer`` (pydantic).

Re-exported by ``braid.server.api.protocol``; the semantics are in ``braid.server.decoding``. Each
block converts itself into its part of the engine's ``DecodingPlan`` (``to_plan``), given the
prompt it applies to; a block that does not fit the prompt or the other block is a 400 there.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..decoding.contrastive import DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_DISTURBANCE
from ..decoding.steering import (DEFAULT_AUTO_HEADS, DEFAULT_NEGATIVE_FRACTION, DEFAULT_NEGATIVE_STRENGTH,
                                 DEFAULT_STRENGTH)
from ..decoding.visual_noise import DEFAULT_NOISE_STEP, NUM_NOISE_STEPS
from ..plans import ContrastiveMethod, ContrastivePlan, SteeringPlan

if TYPE_CHECKING:
    from ..prompts.method_prompts import MethodPrompt


def _bad_request(message: str, param: str):
    from .errors import bad_request  # errors renders protocol models: imported on use, not at import

    return bad_request(message, param)


class SteerParams(BaseModel):
    """``steer``: attention steering toward ``spans`` of the prompt (character offsets; for chat, into
    the last user message), or toward the image tokens of a chat prompt with images (no spans). In
    the chosen heads a steered key's score ``s`` becomes ``s + strength * |s|`` (see
    ``braid.server.decoding.steering``)."""

    model_config = ConfigDict(extra="forbid")

    spans: Annotated[list[tuple[int, int]], Field(min_length=1)] | None = Field(
        None, description="[[start_char, end_char), ...] to emphasise; text prompts only (required there). "
                          "Prompts with images steer their image tokens.")
    heads: list[tuple[int, int]] | Literal["all", "auto"] = Field(
        "auto", description="[[layer, head], ...], 'all', or 'auto' (the model's profiled text-favouring heads).")
    auto_heads: int = Field(DEFAULT_AUTO_HEADS, ge=1,
                            description="How many heads 'auto' picks (capped at the model's heads).")
    strength: float = Field(DEFAULT_STRENGTH, ge=0.0, allow_inf_nan=False,
                            description="lambda_pos: s + strength * |s|.")
    negative_strength: float = Field(DEFAULT_NEGATIVE_STRENGTH, ge=0.0, allow_inf_nan=False,
                                     description="ASCD negative branch (lambda_neg): s - negative_strength * |s|.")
    negative_fraction: float = Field(DEFAULT_NEGATIVE_FRACTION, gt=0.0, le=1.0,
                                     description="ASCD negative branch: share of the most attended steered keys.")

    @field_validator("spans")
    @classmethod
    def _ordered(cls, spans: list[tuple[int, int]] | None) -> list[tuple[int, int]] | None:
        for start, end in spans or ():
            if not 0 <= start < end:
                raise ValueError(f"each span is [start, end) with 0 <= start < end, got [{start}, {end}]")
        return spans

    @field_validator("heads")
    @classmethod
    def _explicit(cls, heads):
        if not isinstance(heads, str) and (not heads or any(layer < 0 or head < 0 for layer, head in heads)):
            raise ValueError("heads must be a non-empty list of [layer, head] pairs (non-negative), 'all' or 'auto'")
        return heads

    def to_plan(self, prompt: MethodPrompt, param: str = "steer") -> SteeringPlan:
        """The steering of ``prompt`` this block asks for (``param``: where the block sits in the request)."""
        heads = self.heads if isinstance(self.heads, str) else tuple(tuple(h) for h in self.heads)
        return SteeringPlan(tuple(prompt.steered_positions(self, param)), heads, self.auto_heads, self.strength,
                            self.negative_strength, self.negative_fraction)


class ContrastiveParams(BaseModel):
    """``contrastive``: decode with ``(1 + alpha) * log p - alpha * log n`` over a positive and a
    negative branch, keeping tokens with ``p >= beta * max p`` (see ``braid.server.decoding.contrastive``)."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["icd", "vcd", "ascd"] = Field(
        description="icd: the negative branch gets a disturbance instruction; ascd: the branches differ by "
                    "attention steering (text: needs steer spans; with images: steers the image tokens); "
                    "vcd: a noised image (multimodal models).")
    alpha: float = Field(DEFAULT_ALPHA, ge=0.0, allow_inf_nan=False,
                         description="Contrast strength; 0 is plain decoding.")
    beta: float = Field(DEFAULT_BETA, ge=0.0, lt=1.0, description="Plausibility cut-off relative to the best token.")
    negative_prompt: str | None = Field(
        None, description="icd, completions: the negative branch's prompt (default: the disturbance text, a "
                          "newline, then the prompt).")
    negative_system_prompt: str | None = Field(
        None, description="icd, chat: the negative branch's system message (replaces the request's own).")
    noise_step: int = Field(DEFAULT_NOISE_STEP, ge=1, le=NUM_NOISE_STEPS - 1,
                            description="vcd: forward-diffusion step (of 1000) of the noise.")
    steer: SteerParams | None = Field(None, description="ascd: the steered spans (text prompts) and heads, or the "
                                                        "top-level steer; optional with images.")

    def to_plan(self, prompt: MethodPrompt, steer: SteerParams | None = None) -> ContrastivePlan:
        """The contrastive pair of ``prompt`` this block asks for; ``steer`` is the request's top-level
        steer block (ascd may take its spans from there, icd and vcd refuse it)."""
        method = ContrastiveMethod(self.method)
        if method is ContrastiveMethod.ASCD:
            if self.steer is not None and steer is not None:
                raise _bad_request("give ascd's steer block once: contrastive.steer or the top-level steer", "steer")
            ascd_steer, param = (self.steer, "contrastive.steer") if self.steer is not None else (steer, "steer")
            if ascd_steer is None:
                if prompt.pixel_values is None:
                    raise _bad_request("ascd on a text prompt steers prompt spans: add contrastive.steer = "
                                       "{\"spans\": [[start, end], ...]} (chat prompts with images steer their "
                                       "image tokens)", "contrastive.steer")
                ascd_steer, param = SteerParams(), "contrastive.steer"  # the image tokens, default heads
            if self.negative_prompt is not None or self.negative_system_prompt is not None:
                raise _bad_request("ascd's negative branch is the same prompt with suppressed attention; "
                                   "negative_prompt / negative_system_prompt are for icd", "contrastive")
            return ContrastivePlan(method, self.alpha, self.beta, tuple(prompt.token_ids),
                                   steer=ascd_steer.to_plan(prompt, param))
        if method is ContrastiveMethod.VCD:
            if prompt.pixel_values is None:
                raise _bad_request("vcd contrasts an image with a noised copy of it: send a chat message with an "
                                   "image_url content part", "contrastive.method")
            if self.negative_prompt is not None or self.negative_system_prompt is not None or self.steer:
                raise _bad_request("vcd's negative branch is the same prompt with noised images; negative_prompt, "
                                   "negative_system_prompt and steer are for icd / ascd", "contrastive")
            if steer is not None:
                raise _bad_request("steer cannot be combined with contrastive method 'vcd'; use method 'ascd' to "
                                   "contrast steered attention on the image tokens", "steer")
            return ContrastivePlan(method, self.alpha, self.beta, tuple(prompt.token_ids), noise_step=self.noise_step)
        if self.steer is not None:
            raise _bad_request(f"contrastive.steer is for method 'ascd', not {self.method!r}", "contrastive.steer")
        if steer is not None:
            raise _bad_request(f"steer cannot be combined with contrastive method {self.method!r}; "
                               "use method 'ascd' to contrast steered attention", "steer")
        return ContrastivePlan(method, self.alpha, self.beta, tuple(prompt.negative_ids(self)))
