"""Reciprocal rank fusion (Cormack, Clarke & Buettcher, SIGIR 2009)."""
from __future__ import annotations

from collections.abc import Hashable, Sequence

__all__ = ["reciprocal_rank_fusion", "RRF_K"]

RRF_K = 60


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Hashable]], k: int = RRF_K,
                           ) -> list[tuple[Hashable, float]]:
    """Fuse best-first rankings: ``score(d) = sum over rankings of 1 / (k + rank(d))`` with
    1-based ranks; a ranking that misses d adds nothing. Ties keep first-seen order."""
    fused: dict[Hashable, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda kv: -kv[1])
