"""The decoding methods of one request, as the serving layer hands them to an engine: typed, frozen plans.

The serving layer builds a `DecodingPlan` once per prompt from the request's ``contrastive`` and
``steer`` blocks (``api/protocol_methods.py``: the blocks convert themselves) and the prompt's
images; it travels in ``SamplingSpec.plan``. Token positions and negative prompts are already
token ids here: engines never see request text.

Engines declare what they run as a frozenset of `Capability` and answer ``Engine.supports(plan)``
with a `Refusal` or None; `capability_refusal` is the one rule for a method an engine lacks.

A new method joins with the same shape: a frozen plan type, a `DecodingPlan` field, a `Capability`
and a line in `DecodingPlan.required_capabilities` (``structured``: a grammar constraint,
`StructuredOutputPlan` from ``braid.server.decoding.structured``).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Union

from .decoding.contrastive import DEFAULT_ALPHA, DEFAULT_BETA
from .decoding.structured import StructuredOutputPlan
from .decoding.steering import (DEFAULT_AUTO_HEADS, DEFAULT_NEGATIVE_FRACTION, DEFAULT_NEGATIVE_STRENGTH,
                                DEFAULT_STRENGTH)
from .decoding.visual_noise import DEFAULT_NOISE_STEP

__all__ = ["Capability", "ContrastiveMethod", "ContrastivePlan", "DecodingPlan", "ImageInputs", "Refusal",
           "SteeringPlan", "capability_refusal"]


class Capability(enum.Enum):
    """A decoding method beyond plain sampling that an engine may run."""

    STEER = "steer"
    ICD = "icd"
    VCD = "vcd"
    ASCD = "ascd"
    IMAGES = "images"
    STRUCTURED = "structured_outputs"

    @property
    def block(self) -> str:
        """The request block that asks for it: ``"contrastive"`` for the contrastive methods."""
        return "contrastive" if self in _CONTRASTIVE else self.value


_CONTRASTIVE = frozenset({Capability.ICD, Capability.VCD, Capability.ASCD})


class ContrastiveMethod(enum.Enum):
    """How the negative branch differs: a disturbance prompt (icd), noised images (vcd), or
    suppressed attention on the steered tokens (ascd)."""

    ICD = "icd"
    VCD = "vcd"
    ASCD = "ascd"

    @property
    def capability(self) -> Capability:
        return Capability(self.value)


Heads = Union[Literal["all", "auto"], tuple[tuple[int, int], ...]]


@dataclass(frozen=True)
class SteeringPlan:
    """Attention steering toward prompt token ``positions`` (see ``decoding.steering``): ``s +
    strength * |s|`` in the chosen ``heads`` (``"all"``, ``"auto"``: the model's ``auto_heads``
    profiled heads, or ``((layer, head), ...)``). The negative fields are ASCD's negative branch."""

    positions: tuple[int, ...]
    heads: Heads = "auto"
    auto_heads: int = DEFAULT_AUTO_HEADS
    strength: float = DEFAULT_STRENGTH
    negative_strength: float = DEFAULT_NEGATIVE_STRENGTH
    negative_fraction: float = DEFAULT_NEGATIVE_FRACTION

    def __post_init__(self) -> None:
        object.__setattr__(self, "positions", tuple(self.positions))
        if not isinstance(self.heads, str):
            object.__setattr__(self, "heads", tuple((layer, head) for layer, head in self.heads))


@dataclass(frozen=True)
class ContrastivePlan:
    """A positive and a negative branch combined by ``decoding.contrastive`` (``alpha``, ``beta``).
    ``negative_prompt_ids``: the negative branch's prompt (vcd and ascd: the prompt itself);
    ``noise_step``: vcd's diffusion step; ``steer``: ascd's steered positions and strengths."""

    method: ContrastiveMethod
    alpha: float = DEFAULT_ALPHA
    beta: float = DEFAULT_BETA
    negative_prompt_ids: tuple[int, ...] = ()
    noise_step: int = DEFAULT_NOISE_STEP
    steer: SteeringPlan | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", ContrastiveMethod(self.method))
        object.__setattr__(self, "negative_prompt_ids", tuple(self.negative_prompt_ids))
        if (self.method is ContrastiveMethod.ASCD) != (self.steer is not None):
            raise ValueError("a contrastive plan has steer exactly when its method is ascd")


@dataclass(frozen=True, eq=False)
class ImageInputs:
    """A prompt's images as the model's processor made them: ``pixel_values`` [num_images, C, H, W]
    (a tensor; compared by identity)."""

    pixel_values: Any


@dataclass(frozen=True)
class Refusal:
    """Why an engine cannot run a plan: the 400's message and the request field at fault."""

    message: str
    param: str | None = None


@dataclass(frozen=True)
class DecodingPlan:
    """Everything beyond plain sampling for one sequence; the empty plan is plain decoding."""

    contrastive: ContrastivePlan | None = None
    steer: SteeringPlan | None = None  # standalone steering of the sequence (ascd's is contrastive.steer)
    images: ImageInputs | None = None
    structured: StructuredOutputPlan | None = None  # the output is constrained to this grammar

    def required_capabilities(self) -> frozenset[Capability]:
        """What an engine must run for this plan (ascd steers attention: it needs ``STEER`` too)."""
        needed = set()
        if self.contrastive is not None:
            needed.add(self.contrastive.method.capability)
            if self.contrastive.method is ContrastiveMethod.ASCD:
                needed.add(Capability.STEER)
        if self.steer is not None:
            needed.add(Capability.STEER)
        if self.images is not None:
            needed.add(Capability.IMAGES)
        if self.structured is not None:
            needed.add(Capability.STRUCTURED)
        return frozenset(needed)

    @property
    def steering(self) -> SteeringPlan | None:
        """The steered positions of this sequence, standalone or ascd's."""
        return self.steer or (self.contrastive.steer if self.contrastive is not None else None)

    @property
    def branch_prompt_tokens(self) -> int:
        """Prompt tokens of the negative branch (0 without contrastive decoding): counted in ``usage``."""
        return len(self.contrastive.negative_prompt_ids) if self.contrastive is not None else 0


def capability_refusal(model: str, needed: Iterable[Capability],
                       capabilities: frozenset[Capability]) -> Refusal | None:
    """The refusal of ``needed`` by an engine that runs ``capabilities`` (None if it runs them all)."""
    needed = frozenset(needed)
    if Capability.IMAGES in needed and Capability.IMAGES not in capabilities:
        return Refusal(f"model {model!r} is not a vision-language model: it does not accept image inputs")
    if Capability.STRUCTURED in needed and Capability.STRUCTURED not in capabilities:
        return Refusal(f"model {model!r} cannot constrain its output to a grammar (response_format, "
                       "structured_outputs, tool calls): byte-level models take no constraints; serve a "
                       "token-level model", "response_format")
    missing = sorted({c.block for c in needed} - {c.block for c in capabilities})
    if missing:
        return Refusal(f"model {model!r} runs on an engine that cannot do {missing}; "
                       "serve it with engine 'transformers' to use these decoding methods", missing[0])
    method = next((c for c in needed & _CONTRASTIVE if c not in capabilities), None)
    if method is None:
        return None
    available = sorted(c.value for c in capabilities & _CONTRASTIVE)
    if method is Capability.VCD:
        return Refusal(f"contrastive method 'vcd' needs image inputs and a multimodal (LLaVA-style) model; "
                       f"model {model!r} cannot run it (it can run: {available})", "contrastive.method")
    return Refusal(f"contrastive method {method.value!r} is not available for model {model!r} "
                   f"(it can run: {available}; the transformers engine runs icd, ascd and steer)",
                   "contrastive.method")
