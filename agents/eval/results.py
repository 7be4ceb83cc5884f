"""The results of an evaluation: an append-only JSONL file, one line per (arm, item) run.

Each line is flushed and fsynced as it is written, so a stopped eval loses at most the line being
written; the next run drops that torn line and skips every (arm, id) already in the file. Readers
take the last line per key (`--retry-failed` appends a new line for a failed item, replacing nothing).
One process at a time writes a results file (an exclusive lock).
"""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

__all__ = ["ItemResult", "ResultsBusy", "ResultsFile", "read_results"]

Key = tuple[str, str]


class ResultsBusy(RuntimeError):
    """Another process is writing the same results file."""


class ItemResult(BaseModel):
    arm: str
    id: str
    workflow: str
    status: Literal["finished", "failed"]
    """`failed`: the run raised (RunFailed, InputError); counted as incorrect."""
    correct: bool
    answer: str | None = None
    expected: Any = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    calls: int = 0
    """Model calls."""
    elapsed_s: float = 0.0
    model_s: float = 0.0
    """Seconds during which a model call was in flight (parallel calls counted once; for a failed run,
    the calls' summed time from its record)."""
    thread_id: str | None = None
    error: str | None = None
    config_digest: str = ""
    """Of the arm's config as given: a restart with a changed config is warned about."""
    written_at: str = ""

    @property
    def key(self) -> Key:
        return (self.arm, self.id)


def _parse(lines: list[bytes]) -> tuple[dict[Key, ItemResult], int]:
    """Last result per key, and the number of lines that did not parse."""
    results: dict[Key, ItemResult] = {}
    bad = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            row = ItemResult.model_validate(json.loads(line))
        except (ValueError, ValidationError):
            bad += 1
            continue
        results[row.key] = row
    return results, bad


def read_results(path: Path) -> dict[Key, ItemResult]:
    """For readers (reports): the last line per key; a torn last line is ignored, not repaired."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    complete = data[:data.rfind(b"\n") + 1]
    return _parse(complete.splitlines())[0]


class ResultsFile:
    """The writer: `with ResultsFile(path) as results: results.done ...; results.append(row)`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.done: dict[Key, ItemResult] = {}
        self.repaired_bytes = 0
        """Bytes of a torn last line removed on opening."""
        self.bad_lines = 0
        self._file: Any = None

    def __enter__(self) -> "ResultsFile":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+b", buffering=0)  # noqa: SIM115 - closed in __exit__
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise ResultsBusy(f"another eval is writing {self.path}: wait for it, or give this one another --out") \
                from None
        self._file.seek(0)
        data = self._file.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # the line being written when the last run was stopped
            self._file.truncate(end)
            os.fsync(self._file.fileno())
            self.repaired_bytes = len(data) - end
        self.done, self.bad_lines = _parse(data[:end].splitlines())
        return self

    def append(self, row: ItemResult) -> None:
        line = memoryview((row.model_dump_json() + "\n").encode())
        while line:
            line = line[self._file.write(line):]
        os.fsync(self._file.fileno())
        self.done[row.key] = row

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._file.close()  # releases the lock
