"""What goes in (``NewRecord``, validated) and what comes out (``Record``, ``SearchHit``)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

__all__ = ["NewRecord", "Record", "SearchHit"]


class NewRecord(BaseModel):
    """One record for ``Collection.add``. Passing an existing ``id`` replaces that record."""

    model_config = ConfigDict(extra="forbid")

    text: str
    """The text that is embedded and BM25-indexed."""
    metadata: dict[str, Any] = {}
    """JSON-serialisable; top-level keys can be used in search filters."""
    score: float | None = None
    """An optional quality/reward score of this experience."""
    labels: list[str] = []
    id: str | None = None
    """Optional caller-chosen id; a fresh uuid4 hex otherwise."""
    created_at: float | None = None
    """Unix time; defaults to the time of the add."""

    @field_validator("metadata")
    @classmethod
    def _json_serialisable(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"metadata must be JSON-serialisable: {exc}") from None
        return value

    @field_validator("score")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("score must be finite")
        return value


@dataclass(frozen=True)
class Record:
    id: str
    collection: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    score: float | None = None
    labels: list[str] = field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class SearchHit:
    """A search result. ``score`` is the mode's score: BM25 (mode="bm25"), cosine
    (mode="dense") or the reciprocal-rank-fusion score (mode="hybrid"). ``bm25_score`` and
    ``dense_score`` are set for the modes that computed them (both for hybrid; a BM25 score
    of 0.0 means no query term occurs in the record). ``rank`` is 1-based."""

    id: str
    text: str
    metadata: dict[str, Any]
    score: float
    bm25_score: float | None
    dense_score: float | None
    rank: int
    labels: list[str] = field(default_factory=list)
    record_score: float | None = None
    created_at: float = 0.0
