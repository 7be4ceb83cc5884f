"""Data for the byte-level evaluation, all shipped inside installed packages (nothing fetched).

* Held-out text: the design document of Triton's GSan sanitizer
  (``triton/experimental/gsan/README.md`` in the triton 3.9.0 wheel), technical English prose
  in markdown, written in 2026, after both models' training data was collected; never used
  to tune anything here. Cut into chunks at paragraph (then sentence) boundaries.
* Arithmetic: reasoning-gym's ``basic_arithmetic`` generator (Apache-2.0), two terms of at
  most two digits with ``+ - *``, scored by ranking the right answer against four distractors.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HELD_OUT_SOURCE", "held_out_chunks", "ArithmeticItem", "arithmetic_items", "few_shot_header"]

HELD_OUT_SOURCE = "triton/experimental/gsan/README.md (triton 3.9.0 wheel)"


def held_out_chunks(max_bytes: int, chunk_bytes: int) -> list[bytes]:
    """The first chunks (each at most ``chunk_bytes``, whole paragraphs or sentences) of the
    held-out text, until ``max_bytes`` in all."""
    spec = importlib.util.find_spec("triton")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("triton is not installed (it ships the held-out text)")
    text = (Path(spec.origin).parent / "experimental" / "gsan" / "README.md").read_text(encoding="utf-8")
    pieces: list[str] = []
    for paragraph in text.split("\n\n"):
        if len(paragraph.encode()) <= chunk_bytes:
            pieces.append(paragraph)
        else:
            pieces.extend(_sentences(paragraph, chunk_bytes))
    chunks, current, total = [], "", 0
    for piece in pieces:
        joined = f"{current}\n\n{piece}" if current else piece
        if current and len(joined.encode()) > chunk_bytes:
            chunks.append(current.strip("\n").encode())
            total += len(chunks[-1])
            if total >= max_bytes:
                return chunks
            joined = piece
        current = joined
    if current and total < max_bytes:
        chunks.append(current.strip("\n").encode())
    return chunks


def _sentences(paragraph: str, limit: int) -> list[str]:
    out, current = [], ""
    for sentence in paragraph.replace(". ", ".\x00").replace("\n", "\x00\n").split("\x00"):
        joined = (current + ("" if sentence.startswith("\n") else " ") + sentence) if current else sentence.lstrip("\n")
        if current and len(joined.encode()) > limit:
            out.append(current)
            joined = sentence
        current = joined
    return out + ([current] if current else [])


@dataclass(frozen=True)
class ArithmeticItem:
    question: str  # "Calculate 12 + 7."
    answer: int
    choices: tuple[int, ...]  # the answer and four distractors, in a fixed shuffled order

    @property
    def correct(self) -> int:
        return self.choices.index(self.answer)


def _generate(size: int, seed: int) -> list[ArithmeticItem]:
    import numpy as np
    import reasoning_gym

    dataset = reasoning_gym.create_dataset("basic_arithmetic", size=size, seed=seed, min_terms=2, max_terms=2,
                                           min_digits=1, max_digits=2, operators=("+", "-", "*"),
                                           allow_parentheses=False, allow_negation=False)
    rng = np.random.default_rng(seed)
    items = []
    for entry in dataset:
        answer = int(entry["answer"])
        choices = [answer, answer - 1, answer + 1, answer - 10, answer + 10]
        rng.shuffle(choices)
        items.append(ArithmeticItem(entry["question"], answer, tuple(int(c) for c in choices)))
    return items


def arithmetic_items(n: int, seed: int = 7) -> list[ArithmeticItem]:
    return _generate(n, seed)


def few_shot_header(shots: int = 3, seed: int = 1234) -> str:
    """Worked examples in the format the items are scored in ("Calculate ...\\nAnswer: N\\n")."""
    return "".join(f"{item.question}\nAnswer: {item.answer}\n" for item in _generate(shots, seed))
