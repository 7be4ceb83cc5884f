"""Decoding methods as pure functions over logits (tensors in, tensors out), shared by the engines:
engines own models and caches, these modules own the math.

Public: `contrastive_scores` and `plausible` (ICD/VCD/ASCD's combination, ``contrastive``);
`steer_scores` / `suppress_scores` / `span_token_positions` (attention steering, ``steering``);
`noise_image` (VCD's distortion, ``visual_noise``); the sampling steps `apply_logit_bias`,
`apply_repetition_penalty`, `apply_frequency_presence_penalties`, `apply_top_k`, `apply_top_p`,
`apply_min_p` (``sampling_steps``); structured outputs: `StructuredOutputPlan`, `validate_plan`,
`StructuredOutputError` (``structured``) and the xgrammar side, `GrammarCompilerCache` and
`GrammarConstraint` (``grammar``). Byte-level decoding is the ``bytelevel`` subpackage.
"""
from .._lazy import lazy_exports

__all__ = ["contrastive_scores", "plausible", "steer_scores", "suppress_scores", "span_token_positions", "noise_image",
           "apply_logit_bias", "apply_repetition_penalty", "apply_frequency_presence_penalties", "apply_top_k",
           "apply_top_p", "apply_min_p", "StructuredOutputPlan", "validate_plan", "StructuredOutputError",
           "GrammarCompilerCache", "GrammarConstraint"]

__getattr__, __dir__ = lazy_exports(__name__, __all__, {
    ".contrastive": ["contrastive_scores", "plausible"],
    ".steering": ["steer_scores", "suppress_scores", "span_token_positions"],
    ".visual_noise": ["noise_image"],
    ".sampling_steps": ["apply_logit_bias", "apply_repetition_penalty", "apply_frequency_presence_penalties",
                        "apply_top_k", "apply_top_p", "apply_min_p"],
    ".structured": ["StructuredOutputPlan", "validate_plan", "StructuredOutputError"],
    ".grammar": ["GrammarCompilerCache", "GrammarConstraint"],
})
