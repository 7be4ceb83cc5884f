"""Answer extraction, numeric comparison and the majority vote, against values written in the test."""
from __future__ import annotations

from collections import Counter
from fractions import Fraction

import pytest

from braid.agents.xolver.answers import extract_answer, parse_number, same_answer
from braid.agents.xolver.scoring import majority
from braid.agents.xolver.state import Response


@pytest.mark.parametrize("text, want", [
    ("so the answer is 4, done", "4"), (r"\boxed{1,234}", "1,234"), ("work...\n#### 18", "18"),
    ("x = 3.50.", "3.50"), ("3/4 of them", "3/4"), ("The final answer: $-12", "-12"), ("no digits", None),
    (r"first \boxed{2} then \boxed{7}", "7"),
])
def test_extract_answer(text, want):
    assert extract_answer(text) == want


def test_numbers_compare_as_numbers():
    assert parse_number("1,000") == 1000 and parse_number("2.50") == Fraction(5, 2) and parse_number("$18") == 18
    assert same_answer("1,000", "1000.0") and same_answer("0.75", "3/4") and not same_answer("7", "7.5")
    assert not same_answer(None, "1") and same_answer("Yes", " yes ")


def test_majority_vote_picks_the_most_shared_answer_and_breaks_ties_by_rank():
    answers = ["5", "7", "7.0", None, "5", "7"]
    store = [Response(agent=i, role="r", round=0, text="", answer=a) for i, a in enumerate(answers)]
    counts = Counter(parse_number(a) for a in answers if a is not None)
    assert majority(store).answer in ("7", "7.0") and counts[Fraction(7)] == 3
    tie = store[:2] + [store[4], store[1].model_copy(update={"agent": 9})]  # 5, 7, 5, 7: the first listed wins
    assert majority(tie).agent == 0
    assert majority([Response(agent=0, role="r", round=0, text="")]) is None
