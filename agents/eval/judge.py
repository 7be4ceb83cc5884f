"""Is an output correct: the workflow's own `is_correct`, else the answer text equals the expected
one (stripped, case-folded; numbers compared as numbers, so "42.0" matches 42 and "1,000" 1000)."""
from __future__ import annotations

import math
import re
from typing import Any

from braid.agents.runtime.io import WorkflowOutput
from braid.agents.runtime.registry import WorkflowSpec

__all__ = ["judge", "same_answer"]

_NUMBER = re.compile(r"[-+]?(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?([eE][-+]?\d+)?")


def _number(text: str) -> float | None:
    if not text or not _NUMBER.fullmatch(text) or not any(c.isdigit() for c in text):
        return None
    return float(text.replace(",", ""))


def same_answer(answer: str, expected: Any) -> bool:
    got, want = answer.strip().casefold(), str(expected).strip().casefold()
    got_n, want_n = _number(got), _number(want)
    if got_n is not None and want_n is not None:
        return math.isclose(got_n, want_n, rel_tol=1e-9, abs_tol=1e-12)
    return got == want


def judge(spec: WorkflowSpec, output: WorkflowOutput, expected: Any) -> bool:
    if spec.is_correct is not None:
        return bool(spec.is_correct(output, expected))
    return same_answer(output.answer, expected)
