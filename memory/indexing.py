"""Bulk-load JSONL, CSV and text-file folders into a collection, with a tqdm progress bar.

* ``*.jsonl`` / ``*.ndjson``: one JSON object per line; ``text_field`` holds the text, the
  optional ``id_field`` the record id (re-indexing then replaces instead of duplicating), the
  other fields become metadata (a ``metadata`` object field is merged in).
* ``*.csv``: a header row; same field rules (values stay strings).
* anything else (``*.txt``, ``*.md``, ...; folders are walked): one record per file, or per
  chunk of ``chunk_words`` words; id ``relative/path`` (``#n`` per chunk), metadata ``path``.

Every record gets metadata ``source`` (the file it came from).
"""
from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .store import Store

__all__ = ["index_corpus", "iter_corpus", "IndexReport", "TEXT_SUFFIXES"]

TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text")
_JSONL = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class IndexReport:
    collection: str
    records: int
    files: int
    skipped: int
    seconds: float


def _files(paths: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file() and
                          p.suffix.lower() in (*_JSONL, ".csv", *TEXT_SUFFIXES))
        elif path.is_file():
            out.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return out


def _count(path: Path, chunk_words: int | None) -> int:
    suffix = path.suffix.lower()
    if suffix in _JSONL:
        with path.open("rb") as f:
            return sum(1 for line in f if line.strip())
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            return max(sum(1 for _ in csv.reader(f)) - 1, 0)
    if chunk_words:
        words = len(path.read_text(encoding="utf-8", errors="replace").split())
        return max(1, -(-words // chunk_words))
    return 1


def _from_fields(row: dict[str, Any], text_field: str, id_field: str | None,
                 source: str) -> dict[str, Any] | None:
    text = row.pop(text_field, None)
    if not isinstance(text, str) or not text.strip():
        return None
    rid = row.pop(id_field, None) if id_field else None
    metadata = row.pop("metadata", None)
    metadata = {**row, **(metadata if isinstance(metadata, dict) else {}), "source": source}
    record = {"text": text, "metadata": metadata}
    if rid is not None:
        record["id"] = str(rid)
    return record


def iter_corpus(files: Sequence[Path], text_field: str = "text", id_field: str | None = None,
                chunk_words: int | None = None, root: Path | None = None,
                ) -> Iterator[dict[str, Any] | None]:
    """Record dicts for :meth:`Collection.add`; ``None`` for an unusable row (no text)."""
    for path in files:
        source = str(path)
        suffix = path.suffix.lower()
        if suffix in _JSONL:
            with path.open(encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        row = json.loads(line)
                        yield _from_fields(row, text_field, id_field, source) if isinstance(row, dict) else None
        elif suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    yield _from_fields(dict(row), text_field, id_field, source)
        else:
            text = path.read_text(encoding="utf-8", errors="replace")
            rel = str(path.relative_to(root)) if root and path.is_relative_to(root) else path.name
            words = text.split()
            if chunk_words and len(words) > chunk_words:
                for n, start in enumerate(range(0, len(words), chunk_words)):
                    yield {"id": f"{rel}#{n}", "text": " ".join(words[start:start + chunk_words]),
                           "metadata": {"path": rel, "chunk": n, "source": source}}
            elif text.strip():
                yield {"id": rel, "text": text, "metadata": {"path": rel, "source": source}}
            else:
                yield None


def index_corpus(store: Store, collection: str, paths: Sequence[str | Path],
                 text_field: str = "text", id_field: str | None = None,
                 chunk_words: int | None = None, batch_size: int = 256,
                 progress: bool = True) -> IndexReport:
    """Add every record found under ``paths`` to ``collection`` in batches of ``batch_size``
    (each batch is one committed transaction, so an interrupted run keeps finished batches
    and, with ids, can simply be re-run)."""
    start = time.perf_counter()
    files = _files([Path(p) for p in paths])
    root = Path(paths[0]) if len(paths) == 1 and Path(paths[0]).is_dir() else None
    total = sum(_count(f, chunk_words) for f in files)
    coll = store.collection(collection)
    added = skipped = 0
    batch: list[dict[str, Any]] = []
    with tqdm(total=total, unit="rec", desc=f"indexing {collection}", disable=not progress,
              file=sys.stderr) as bar:
        def flush() -> None:
            nonlocal added
            # within one batch the last occurrence of an id wins
            unique = list({r.get("id") or i: r for i, r in enumerate(batch)}.values())
            coll.add(unique)
            added += len(unique)
            bar.update(len(batch))
            batch.clear()

        for record in iter_corpus(files, text_field, id_field, chunk_words, root):
            if record is None:
                skipped += 1
                bar.update(1)
                continue
            batch.append(record)
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
    return IndexReport(collection, added, len(files), skipped, time.perf_counter() - start)
