"""An evaluation dataset: a JSONL file, one item per line with an id, an input and the expected answer."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["DataError", "Dataset", "EvalItem", "load_items"]

_TEXT_KEYS = ("question", "problem")


class DataError(ValueError):
    """A dataset that cannot be read; the message names the file and line."""


class EvalItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    """The item's own `id`, else its line number (1-based): results are keyed by it, so keep it stable."""
    input: str | dict[str, Any]
    """What the workflow is given: text, or an object its input model reads."""
    answer: Any
    """The expected answer."""


def _item(row: Any, line: int) -> EvalItem:
    if not isinstance(row, dict):
        raise ValueError(f"a line must hold a JSON object, not {type(row).__name__}")
    if "input" in row:
        value = row["input"]
        if not isinstance(value, (str, dict)):
            raise ValueError(f"`input` must be a string or an object, not {type(value).__name__}")
    else:
        key = next((k for k in _TEXT_KEYS if k in row), None)
        if key is None or not isinstance(row[key], str):
            raise ValueError("no input: give `input` (text or object), or `question` / `problem` text")
        value = row[key]
    if "answer" not in row:
        raise ValueError("no expected `answer`")
    raw_id = row.get("id", line)
    if not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool) or str(raw_id).strip() == "":
        raise ValueError(f"`id` must be a non-empty string or an integer, not {raw_id!r}")
    return EvalItem(id=str(raw_id), input=value, answer=row["answer"])


@dataclass(frozen=True)
class Dataset:
    path: Path
    items: list[EvalItem]
    """The selected items."""
    total: int
    """Items in the file."""
    offset: int = 0

    @property
    def selection(self) -> str:
        if not self.items:
            return f"no items selected of {self.total}"
        return f"items {self.offset + 1}-{self.offset + len(self.items)} of {self.total}"


def load_items(path: Path, *, offset: int = 0, limit: int | None = None) -> Dataset:
    """The items of `path` (blank lines skipped), then `offset` of them skipped and at most `limit` kept."""
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    items: list[EvalItem] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                item = _item(json.loads(text), number)
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                raise DataError(f"{path}, line {number}: {exc}") from None
            if item.id in seen:
                raise DataError(f"{path}, line {number}: id {item.id!r} is already used on line {seen[item.id]}")
            seen[item.id] = number
            items.append(item)
    return Dataset(path, items[offset:None if limit is None else offset + limit], len(items), offset)
