"""The derived, in-memory indexes of one collection, caught up from SQLite before each use."""
from __future__ import annotations

import numpy as np

from .bm25 import BM25Index
from .dense import DenseIndex
from .sqlite_log import SqliteLog


class CollectionIndex:
    """BM25 + faiss over one collection's rows, plus the high-water marks they reflect."""

    def __init__(self, cid: int):
        self.cid = cid
        self.bm25 = BM25Index()
        self.dense: DenseIndex | None = None
        self.max_rowid = 0
        self.max_tombstone = 0

    def catch_up(self, log: SqliteLog) -> None:
        """Apply every add and delete committed (by any process) since the last call."""
        for kind, rows in log.changes_since(self.cid, self.max_rowid, self.max_tombstone):
            if kind == "add" and rows:
                rowids = [r[0] for r in rows]
                vectors = np.frombuffer(b"".join(r[2] for r in rows), np.float32)
                vectors = vectors.reshape(len(rows), -1)
                if self.dense is None:
                    self.dense = DenseIndex(vectors.shape[1])
                self.bm25.add(rowids, [r[1].split() for r in rows])
                self.dense.add(rowids, vectors)
                self.max_rowid = rowids[-1]
            elif kind == "delete" and rows:
                dead = [r[1] for r in rows if r[1] <= self.max_rowid]
                self.bm25.remove(dead)
                if self.dense is not None:
                    self.dense.remove(dead)
                self.max_tombstone = rows[-1][0]

    def __len__(self) -> int:
        return len(self.bm25)
