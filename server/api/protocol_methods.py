"""Braid's decoding-method extension blocks of a request: ``contrastive`` and ``steer`` (pydantic).

Re-exported by ``braid.server.api.protocol``; the semantics are in ``braid.server.decoding``.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["ContrastiveParams", "SteerParams", "DEFAULT_DISTURBANCE"]

DEFAULT_DISTURBANCE = "You are a confused assistant who gives a fuzzy, unreliable impression of the question."


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
    auto_heads: int = Field(32, ge=1, description="How many heads 'auto' picks (capped at the model's heads).")
    strength: float = Field(0.625, ge=0.0, allow_inf_nan=False, description="lambda_pos: s + strength * |s|.")
    negative_strength: float = Field(1.0, ge=0.0, allow_inf_nan=False,
                                     description="ASCD negative branch (lambda_neg): s - negative_strength * |s|.")
    negative_fraction: float = Field(0.1, gt=0.0, le=1.0,
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


class ContrastiveParams(BaseModel):
    """``contrastive``: decode with ``(1 + alpha) * log p - alpha * log n`` over a positive and a
    negative branch, keeping tokens with ``p >= beta * max p`` (see ``braid.server.decoding.contrastive``)."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["icd", "vcd", "ascd"] = Field(
        description="icd: the negative branch gets a disturbance instruction; ascd: the branches differ by "
                    "attention steering (text: needs steer spans; with images: steers the image tokens); "
                    "vcd: a noised image (multimodal models).")
    alpha: float = Field(1.0, ge=0.0, allow_inf_nan=False, description="Contrast strength; 0 is plain decoding.")
    beta: float = Field(0.1, ge=0.0, lt=1.0, description="Plausibility cut-off relative to the best token.")
    negative_prompt: str | None = Field(
        None, description="icd, completions: the negative branch's prompt (default: the disturbance text, a "
                          "newline, then the prompt).")
    negative_system_prompt: str | None = Field(
        None, description="icd, chat: the negative branch's system message (replaces the request's own).")
    noise_step: int = Field(500, ge=1, le=999, description="vcd: forward-diffusion step (of 1000) of the noise.")
    steer: SteerParams | None = Field(None, description="ascd: the steered spans (text prompts) and heads, or the "
                                                        "top-level steer; optional with images.")
