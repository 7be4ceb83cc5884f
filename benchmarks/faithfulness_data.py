"""Counterfactual context-faithfulness prompts for ``eval_faithfulness.py``, built from templates.

Where they come from: written for this eval, in the style of CounterFact (Meng et al., 2022,
"Locating and Editing Factual Associations in GPT") and the knowledge-conflict prompts of
context-aware decoding (Shi et al., 2023): a well-known fact (subject, relation, real object) is
restated in the prompt with a counterfactual object taken from another fact of the same relation
("In this story, the capital of France is Tokyo."), some neutral filler follows, then the
question. A faithful answer names the counterfactual object; a parametric answer the real one.
The facts are common knowledge, written by hand; nothing is downloaded.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Prompt", "RELATIONS", "WRAPPERS", "build_prompts", "closed_book_questions"]

# relation -> (statement template, question template, [(subject, real object), ...])
RELATIONS: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    "capital": ("the capital of {s} is {o}", "What is the capital of {s}?", [
        ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
        ("England", "London"), ("Russia", "Moscow"), ("China", "Beijing"), ("Egypt", "Cairo"),
        ("Greece", "Athens"), ("Portugal", "Lisbon"), ("Austria", "Vienna")]),
    "currency": ("the currency of {s} is the {o}", "What is the currency of {s}?", [
        ("Japan", "yen"), ("England", "pound"), ("the United States", "dollar"), ("India", "rupee"),
        ("China", "yuan"), ("Mexico", "peso"), ("Germany", "euro"), ("Russia", "ruble")]),
    "landmark": ("the {s} is in {o}", "In which city is the {s}?", [
        ("Eiffel Tower", "Paris"), ("Colosseum", "Rome"), ("Statue of Liberty", "New York"),
        ("Big Ben", "London"), ("Brandenburg Gate", "Berlin"), ("Kremlin", "Moscow"),
        ("Sydney Opera House", "Sydney"), ("Golden Gate Bridge", "San Francisco")]),
    "language": ("people in {s} speak {o}", "What language do people in {s} speak?", [
        ("Brazil", "Portuguese"), ("Mexico", "Spanish"), ("Germany", "German"), ("Japan", "Japanese"),
        ("Italy", "Italian"), ("Russia", "Russian"), ("Egypt", "Arabic"), ("China", "Chinese")]),
    "color": ("{s} are {o}", "What color are {s}?", [
        ("ripe bananas", "yellow"), ("strawberries", "red"), ("carrots", "orange"), ("fresh leaves", "green"),
        ("crows", "black"), ("clouds", "white"), ("clear skies", "blue")]),
}

_FILLER = [
    "The travellers arrived early in the morning, walked through the busy markets, talked with the people "
    "they met and wrote long notes about everything they saw.",
    "Later that week the group visited a small museum, ate lunch in a quiet garden and argued about which "
    "road to take home before the rain started.",
    "Their guide, a retired teacher, showed them the old bridge, the library and the river port before the "
    "evening bus finally came.",
]

# (wrapper with {statement} or {Statement}, {filler}, {filler2}, {question}); the statement appears once.
# The last one gives no instruction to follow the text and puts two fillers between statement and question.
WRAPPERS = [
    "In this story, {statement}. {filler} Question: {question} Answer in a few words.",
    "Read the passage and answer the question using only the passage.\nPassage: {Statement}. {filler}\n"
    "Question: {question}",
    "Imagine a world where {statement}. {filler} {question} Answer according to that world.",
    "{filler} Remember that in this tale {statement}. {question}",
    "{Statement}. {filler} {filler2} {question}",
]


@dataclass(frozen=True)
class Prompt:
    relation: str
    subject: str
    real: str
    counterfactual: str
    wrapper: int
    text: str  # the user message
    span: tuple[int, int]  # character range of the counterfactual statement in ``text``
    question: str


def _render(wrapper: str, statement: str, fillers: list[str], question: str) -> tuple[str, tuple[int, int]]:
    capitalised = statement[0].upper() + statement[1:]
    key = "{Statement}" if "{Statement}" in wrapper else "{statement}"
    head, tail = wrapper.split(key)
    fill = {"filler": fillers[0], "filler2": fillers[1], "question": question}
    head, tail = head.format(**fill), tail.format(**fill)
    said = capitalised if key == "{Statement}" else statement
    return head + said + tail, (len(head), len(head) + len(said))


def build_prompts(n: int, seed: int = 0) -> list[Prompt]:
    """``n`` prompts: every (fact, counterfactual object, wrapper) combination, shuffled with ``seed``;
    the counterfactual objects of a fact are the other objects of its relation."""
    rng = random.Random(seed)
    pool = []
    for relation, (statement, question, facts) in RELATIONS.items():
        objects = sorted({o for _, o in facts})
        for subject, real in facts:
            for counterfactual in rng.sample([o for o in objects if o != real], 2):
                for index, wrapper in enumerate(WRAPPERS):
                    pool.append((relation, subject, real, counterfactual, index, statement, question, wrapper))
    rng.shuffle(pool)
    prompts = []
    for relation, subject, real, counterfactual, index, statement, question, wrapper in pool[:n]:
        q = question.format(s=subject)
        text, span = _render(wrapper, statement.format(s=subject, o=counterfactual), rng.sample(_FILLER, 2), q)
        prompts.append(Prompt(relation, subject, real, counterfactual, index, text, span, q))
    return prompts


def closed_book_questions() -> list[tuple[str, str, str, str]]:
    """(relation, subject, real object, question) for every fact: does the model know it without context?"""
    return [(relation, subject, real, question.format(s=subject))
            for relation, (_, question, facts) in RELATIONS.items() for subject, real in facts]
