"""A request's decoding methods as engine sequences: the negative branch of a contrastive pair and
the attention score modifiers of steering.

``SamplingSpec.plan`` (a ``braid.server.plans.DecodingPlan``) says what to run:

* ``contrastive`` ICD: a negative branch over ``negative_prompt_ids``, no steering.
* ``contrastive`` ASCD: a negative branch over the same prompt; the positive branch is
  up-steered in the selected heads (:class:`SpanSteering`), the negative one suppresses its most
  attended steered keys in all heads (:class:`AttentionSuppression`).
* ``contrastive`` VCD: a negative branch over the same prompt whose images are noised by forward
  diffusion (``noise_step``; seeded by the request's seed, see ``decoding.visual_noise``).
* ``steer``: the sequence itself is up-steered.
* ``images``: the preprocessed ``pixel_values`` of the prompt's images (multimodal models); both
  branches of a pair see them (VCD's negative branch noised; ASCD's both clean, the steered
  positions then being the image tokens).

Heads are ``"all"``, ``((layer, head), ...)`` or ``"auto"`` (resolved by a
:class:`~braid.server.engines.hf.head_profile.HeadProfile`; the same text-probe ranking whether
the steered positions are span tokens or image tokens).
"""
from __future__ import annotations

from typing import Callable

import torch

from ...decoding.steering import (steer_scores, suppress_scores, suppressed, suppression_counts, top_steered,
                                  up_steered)
from ...decoding.visual_noise import noise_image
from ...plans import ContrastiveMethod, DecodingPlan, Refusal, SteeringPlan
from ..base import EngineError
from .scheduler import Sequence

NEGATIVE_SUFFIX = "#negative"

HeadResolver = Callable[[int], list[tuple[int, int]]]  # auto_heads -> [(layer, head), ...]


def _key_mask(positions: tuple[int, ...], device) -> torch.Tensor:
    mask = torch.zeros(max(positions) + 1, dtype=torch.bool, device=device)
    mask[torch.tensor(positions, dtype=torch.long, device=device)] = True
    return mask


def _fit(mask: torch.Tensor, length: int) -> torch.Tensor:
    """The key mask over ``length`` keys (steered positions lie in the prompt, so only pad)."""
    if length <= mask.numel():
        return mask[:length]
    return torch.cat([mask, mask.new_zeros(length - mask.numel())])


class SpanSteering:
    """Score modifier: ``s + strength * |s|`` on the steered keys, in the selected heads."""

    def __init__(self, positions: tuple[int, ...], heads: dict[int, torch.Tensor | None], strength: float, device):
        self.key_mask = _key_mask(positions, device)
        self.heads = heads  # layer -> [H] bool head mask, or None for every head of that layer
        self.strength = strength

    def __call__(self, layer_idx: int, scores: torch.Tensor) -> torch.Tensor:
        if layer_idx not in self.heads:
            return scores
        return steer_scores(scores, _fit(self.key_mask, scores.shape[-1]), self.heads[layer_idx], self.strength)

    @staticmethod
    def prepare(scores: torch.Tensor, mods: list["SpanSteering"]) -> Callable[[int, torch.Tensor], torch.Tensor]:
        """Each of ``mods`` on its row of ``scores`` [B, H, n, L], as one function for every layer of a
        step (``scores`` of any layer: which keys are masked is the same in all); the key, head and
        visibility masks are built once per layer."""
        num_heads = scores.shape[1]
        keys = _stacked_keys(mods, scores) & torch.isfinite(scores[:, :1])  # [B, 1, n, L]
        strength = scores.new_tensor([m.strength for m in mods])[:, None, None, None]
        selected: dict[int, torch.Tensor | None] = {}

        def head_row(mod: "SpanSteering", layer_idx: int) -> torch.Tensor:
            if layer_idx not in mod.heads:
                return scores.new_zeros(num_heads, dtype=torch.bool)
            mask = mod.heads[layer_idx]
            return scores.new_ones(num_heads, dtype=torch.bool) if mask is None else mask

        def apply(layer_idx: int, layer_scores: torch.Tensor) -> torch.Tensor:
            if layer_idx not in selected:
                selected[layer_idx] = (keys & torch.stack([head_row(m, layer_idx) for m in mods])[:, :, None, None]
                                       if any(layer_idx in m.heads for m in mods) else None)
            mask = selected[layer_idx]
            return layer_scores if mask is None else up_steered(layer_scores, mask, strength)

        return apply


class AttentionSuppression:
    """Score modifier (ASCD negative branch): in every head, ``s - strength * |s|`` on each query
    row's most attended ``fraction`` of the steered keys."""

    def __init__(self, positions: tuple[int, ...], strength: float, fraction: float, device):
        self.key_mask = _key_mask(positions, device)
        self.strength, self.fraction = strength, fraction

    def __call__(self, layer_idx: int, scores: torch.Tensor) -> torch.Tensor:
        return suppress_scores(scores, _fit(self.key_mask, scores.shape[-1]), self.strength, self.fraction)

    @staticmethod
    def prepare(scores: torch.Tensor, mods: list["AttentionSuppression"]) -> Callable[[int, torch.Tensor], torch.Tensor]:
        """Each of ``mods`` on its row of ``scores`` [B, H, n, L], as one function for every layer of a
        step: the visible steered keys and how many of them each row suppresses depend only on the
        masked keys, the same in every layer and head."""
        fraction = torch.tensor([m.fraction for m in mods], dtype=torch.float64, device=scores.device)
        visible = torch.isfinite(scores[:, :1]) & _stacked_keys(mods, scores)  # [B, 1, n, L]
        take = suppression_counts(visible, fraction[:, None, None])  # [B, 1, n]
        strength = scores.new_tensor([m.strength for m in mods])[:, None, None, None]

        def apply(layer_idx: int, layer_scores: torch.Tensor) -> torch.Tensor:
            return suppressed(layer_scores, top_steered(layer_scores, visible, take), strength)

        return apply


def _stacked_keys(mods, scores: torch.Tensor) -> torch.Tensor:
    """[B, 1, 1, L]: each modifier's key mask fitted to ``scores``' keys."""
    return torch.stack([_fit(m.key_mask, scores.shape[-1]) for m in mods])[:, None, None, :]


def head_masks(heads, num_layers: int, num_heads: int, resolve_auto: HeadResolver, auto_heads: int,
               device) -> dict[int, torch.Tensor | None]:
    """``"all"`` / ``"auto"`` / ``((layer, head), ...)`` -> layer -> head mask (None: all heads)."""
    if heads == "all":
        return {layer: None for layer in range(num_layers)}
    chosen = resolve_auto(auto_heads) if heads == "auto" else heads
    masks: dict[int, torch.Tensor] = {}
    for layer, head in chosen:
        masks.setdefault(layer, torch.zeros(num_heads, dtype=torch.bool, device=device))[head] = True
    return masks


def attach_methods(seq: Sequence, num_layers: int, num_heads: int, resolve_auto: HeadResolver, device) -> None:
    """Give ``seq`` its negative branch and score modifiers, as its ``sampling.plan`` asks."""
    plan = seq.sampling.plan
    contrastive = plan.contrastive

    def steering(steer: SteeringPlan) -> SpanSteering:
        masks = head_masks(steer.heads, num_layers, num_heads, resolve_auto, steer.auto_heads, device)
        return SpanSteering(steer.positions, masks, steer.strength, device)

    images = plan.images.pixel_values if plan.images is not None else None
    seq.pixel_values = images
    if contrastive is not None:
        negative_ids = list(contrastive.negative_prompt_ids)
        seq.negative = Sequence(seq.request_id + NEGATIVE_SUFFIX, negative_ids, len(negative_ids), seq.sampling)
        if contrastive.method is ContrastiveMethod.VCD:
            seq.negative.pixel_values = noise_image(images, contrastive.noise_step, seq.sampling.seed)
        else:
            seq.negative.pixel_values = images
        if contrastive.method is ContrastiveMethod.ASCD:
            steer = contrastive.steer
            seq.score_modifier = steering(steer)
            seq.negative.score_modifier = AttentionSuppression(steer.positions, steer.negative_strength,
                                                               steer.negative_fraction, device)
    if plan.steer is not None:
        seq.score_modifier = steering(plan.steer)


def method_refusal(plan: DecodingPlan, name: str, max_num_seqs: int, vocab: int, max_model_len: int,
                   num_layers: int, num_heads: int) -> Refusal | None:
    """Why this engine's model cannot run ``plan`` (its capabilities aside), or None."""
    contrastive = plan.contrastive
    if contrastive is not None:
        if max_num_seqs < 2:
            return Refusal(f"contrastive decoding runs two sequences per request; model {name!r} "
                           "is served with max_num_seqs 1 (set it to 2 or more)")
        ids = contrastive.negative_prompt_ids
        if not ids or any(t < 0 or t >= vocab for t in ids):
            return Refusal(f"the negative prompt must be non-empty token ids in [0, {vocab})")
        if len(ids) >= max_model_len:
            return Refusal(f"the negative prompt has {len(ids)} tokens; this model's context is {max_model_len}")
    for steer in (contrastive.steer if contrastive is not None else None, plan.steer):
        refusal = _steer_refusal(steer, name, num_layers, num_heads) if steer is not None else None
        if refusal is not None:
            return refusal
    return None


def _steer_refusal(steer: SteeringPlan, name: str, num_layers: int, num_heads: int) -> Refusal | None:
    heads = steer.heads
    if isinstance(heads, str):
        if heads not in ("all", "auto"):
            return Refusal(f"steer heads must be 'all', 'auto' or [[layer, head], ...], got {heads!r}")
    else:
        bad = [list(h) for h in heads if not (0 <= h[0] < num_layers and 0 <= h[1] < num_heads)]
        if bad:
            return Refusal(f"steer heads {bad} do not exist: model {name!r} has layers 0..{num_layers - 1} "
                           f"with heads 0..{num_heads - 1}")
    if not steer.positions or min(steer.positions) < 0:
        return Refusal("steer positions must be a non-empty list of prompt token positions")
    return None


def validate_positions(plan: DecodingPlan, prompt_len: int) -> None:
    """Steered positions must lie in the prompt."""
    steer = plan.steering
    if steer is not None and max(steer.positions) >= prompt_len:
        raise EngineError(f"steer positions must lie in the prompt (0..{prompt_len - 1})")
