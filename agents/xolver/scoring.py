"""The judge for math: scores from execution and agreement, and the parse of an LLM judge's reply.

At 135M parameters a model judging Yes/No is at chance, so the score rests on what can be checked:
  0.4  the code computed (not just printed a literal), ran, and printed a number;
  0.3  the stated answer equals the executed result;
  0.3  x the share of the round's other responses whose answer agrees.
1.0 is the top score (all three). An LLM judge, when enabled, is averaged in; a reply it cannot
parse counts as 0 with a note, never an error.
"""
from __future__ import annotations

import ast
import re

from .answers import parse_number, same_answer
from .state import Response

__all__ = ["TOP_SCORE", "execution_score", "majority", "parse_judge_score"]

TOP_SCORE = 1.0
_SCORE = re.compile(r"score\s*[:=]?\s*\**\s*([01](?:\.\d+)?)", re.I)


def computes(code: str | None) -> bool:
    """Code that does arithmetic or calls something, not `print(18)` or `18`."""
    try:
        tree = ast.parse(code or "")
    except SyntaxError:
        return False
    return any(isinstance(node, (ast.BinOp, ast.AugAssign, ast.For, ast.While, ast.Compare, ast.comprehension))
               or (isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id == "print"))
               for node in ast.walk(tree))


def execution_score(response: Response, others: list[Response]) -> tuple[float, str]:
    score, notes = 0.0, []
    ran = response.code_error is None and parse_number(response.executed) is not None
    if ran and not computes(response.code):
        ran = False
        notes.append(f"code only states {response.executed}, computes nothing")
    elif ran:
        score += 0.4
        notes.append(f"code printed {response.executed}")
    elif response.code:
        notes.append(f"code failed: {response.code_error or 'printed no number'}")
    else:
        notes.append("no code")
    if ran and same_answer(response.answer, response.executed):
        score += 0.3
        notes.append("answer matches execution")
    elif response.answer is None:
        notes.append("no stated answer")
    if others:
        agree = sum(same_answer(response.answer, other.answer) for other in others)
        score += 0.3 * agree / len(others)
        notes.append(f"{agree}/{len(others)} other agents agree")
    else:
        score += 0.3 if ran else 0.0  # alone: agreement is vacuous, only execution can vouch
    return round(score, 6), "; ".join(notes)


def parse_judge_score(reply: str) -> tuple[float, str]:
    """(score in [0, 1], note) from 'Score: 1' / 'Score: 0'; unparseable -> (0, note)."""
    found = _SCORE.search(reply or "")
    if not found:
        return 0.0, "judge reply had no 'Score: 0/1'"
    value = float(found.group(1))
    return (min(1.0, max(0.0, value)), "judge") if value <= 1 else (0.0, f"judge score {value} out of range")


def majority(responses: list[Response]) -> Response | None:
    """The first response (the store is best-first) whose answer the most responses share; None if none answers."""
    voters = [r for r in responses if r.answer is not None]
    return max(voters, key=lambda r: sum(same_answer(r.answer, o.answer) for o in voters)) if voters else None
