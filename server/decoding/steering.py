"""Attention steering toward prompt spans (PASTA-like, and ASCD's two branches), as pure functions.

All functions take pre-softmax attention scores ``s`` of one sequence, ``[H, n, L]`` (heads,
query rows, keys; already scaled, masked keys are ``-inf``) and return new scores. Masked scores
stay masked.

* Up-steering (standalone span steering, ASCD's positive branch): in the selected heads, a
  steered key's score becomes ``s + strength * |s|``; PASTA's down-weighting of the other keys,
  done in probability space, is the same idea.
* ASCD's negative branch: in every head, for each query row, the ``fraction`` (default 10 %) of
  that row's visible steered keys with the highest attention (equivalently the highest score:
  softmax is monotone within a row) get ``s - strength * |s|``. The count is
  ``ceil(fraction * visible steered keys)``, at least one when the row sees any steered key;
  ties are broken by ``torch.topk``.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

__all__ = ["DEFAULT_AUTO_HEADS", "DEFAULT_STRENGTH", "DEFAULT_NEGATIVE_STRENGTH", "DEFAULT_NEGATIVE_FRACTION",
           "span_token_positions", "steer_scores", "up_steered", "suppression_counts", "top_steered",
           "suppressed", "suppress_scores"]

DEFAULT_AUTO_HEADS = 32  # heads picked by heads "auto" (capped at the model's heads)
DEFAULT_STRENGTH = 0.625
DEFAULT_NEGATIVE_STRENGTH = 1.0
DEFAULT_NEGATIVE_FRACTION = 0.1


def span_token_positions(offsets: Sequence[tuple[int, int]], spans: Iterable[tuple[int, int]]) -> list[int]:
    """Token positions whose character range ``offsets[i] = (start, end)`` overlaps any ``[start, end)``
    span. Tokens with an empty range (special tokens) are never steered."""
    spans = list(spans)
    return [i for i, (a, b) in enumerate(offsets) if b > a and any(a < end and b > start for start, end in spans)]


def _keys(key_mask: torch.Tensor) -> torch.Tensor:
    """A ``[L]`` key mask broadcast over ``[H, n, L]``; batched masks (``[B, 1, 1, L]``) as given."""
    return key_mask[None, None, :] if key_mask.dim() == 1 else key_mask


def steer_scores(scores: torch.Tensor, key_mask: torch.Tensor, head_mask: torch.Tensor | None,
                 strength: float | torch.Tensor) -> torch.Tensor:
    """``scores`` [H, n, L]; ``key_mask`` [L] bool, the steered keys; ``head_mask`` [H] bool or None
    for every head. Steered scores become ``s + strength * |s|``. Batched: ``scores`` [B, H, n, L]
    with ``key_mask`` [B, 1, 1, L], ``head_mask`` [B, H, 1, 1] and ``strength`` [B, 1, 1, 1]."""
    selected = _keys(key_mask)
    if head_mask is not None:
        selected = selected & (head_mask[:, None, None] if head_mask.dim() == 1 else head_mask)
    return up_steered(scores, selected & torch.isfinite(scores), strength)


def up_steered(scores: torch.Tensor, selected: torch.Tensor, strength: float | torch.Tensor) -> torch.Tensor:
    """``s + strength * |s|`` where ``selected``."""
    return torch.where(selected, scores + strength * scores.abs(), scores)


def suppression_counts(visible: torch.Tensor, fraction: float | torch.Tensor) -> torch.Tensor:
    """Long [..., n]: how many of each query row's ``visible`` steered keys (bool [..., n, L]) are suppressed,
    ``ceil(fraction * visible)``, at least one when the row sees any."""
    counts = visible.sum(dim=-1)
    # The epsilon keeps float error from rounding an exact product up (0.07 * 100 = 7.000000000000001).
    return torch.where(counts > 0, (counts.double() * fraction - 1e-9).ceil().clamp(min=1).long(), 0)


def top_steered(scores: torch.Tensor, visible: torch.Tensor, take: torch.Tensor) -> torch.Tensor:
    """Bool like ``scores``: per query row, its ``take`` highest-scoring ``visible`` keys (``take``
    broadcasts against ``scores[..., 0]``)."""
    width = int(take.max()) if take.numel() else 0
    if width == 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    top = scores.masked_fill(~visible, float("-inf")).topk(width, dim=-1).indices  # [..., n, width]
    keep = (torch.arange(width, device=scores.device) < take[..., None]).expand_as(top)
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, top, keep)


def most_attended(scores: torch.Tensor, key_mask: torch.Tensor,
                  fraction: float | torch.Tensor = DEFAULT_NEGATIVE_FRACTION) -> torch.Tensor:
    """Bool [H, n, L]: per head and query row, the top ``ceil(fraction * visible)`` steered keys by score.
    Batched as ``steer_scores`` (``fraction`` then [B, 1, 1], float64)."""
    visible = torch.isfinite(scores) & _keys(key_mask)
    return top_steered(scores, visible, suppression_counts(visible, fraction))


def suppressed(scores: torch.Tensor, selected: torch.Tensor,
               strength: float | torch.Tensor = DEFAULT_NEGATIVE_STRENGTH) -> torch.Tensor:
    """``s - strength * |s|`` where ``selected``."""
    return torch.where(selected, scores - strength * scores.abs(), scores)


def suppress_scores(scores: torch.Tensor, key_mask: torch.Tensor,
                    strength: float | torch.Tensor = DEFAULT_NEGATIVE_STRENGTH,
                    fraction: float | torch.Tensor = DEFAULT_NEGATIVE_FRACTION) -> torch.Tensor:
    """ASCD's negative branch, all heads: the most attended steered keys get ``s - strength * |s|``."""
    return suppressed(scores, most_attended(scores, key_mask, fraction), strength)

