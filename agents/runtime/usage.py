"""Token usage and model time: what a run, a node or a role spent (counted by `meter.UsageMeter`)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Usage", "usage_by_role_dicts"]


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    model_s: float = 0.0
    """Seconds spent waiting for model calls (summed: parallel calls count each)."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: "Usage") -> "Usage":
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.calls += other.calls
        self.model_s += other.model_s
        return self

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_tokens": self.total_tokens}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Usage":
        data = data or {}
        return cls(int(data.get("prompt_tokens", 0)), int(data.get("completion_tokens", 0)), int(data.get("calls", 0)),
                   float(data.get("model_s", 0.0)))


def usage_by_role_dicts(usage: Mapping[str, Usage]) -> dict[str, dict[str, Any]]:
    """Usage per role as JSON-ready dicts (records, the CLI's --json, MCP's _meta)."""
    return {role: value.as_dict() for role, value in usage.items()}
