"""Exact dense search over L2-normalised vectors with faiss (inner product = cosine).

``faiss.IndexIDMap2(IndexFlatIP)`` keyed by int64 ids (SQLite rowids). Flat search is exact
and needs no training; at 100k x 384 it takes a few ms on two cores. The same code runs
with the ``faiss-gpu`` wheel (it ships the CPU indexes too).
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import faiss
import numpy as np

__all__ = ["DenseIndex", "normalize", "set_faiss_threads"]


def set_faiss_threads(n: int | None = None) -> None:
    """Set faiss's OpenMP threads (process-wide). Default ``$BRAID_FAISS_THREADS`` or 1:
    a one-query flat search gains nothing from more threads, and on a shared 2-core machine
    OpenMP spin-waiting made it ~10x slower (56 ms vs 5.9 ms at 100k x 384)."""
    faiss.omp_set_num_threads(n or int(os.environ.get("BRAID_FAISS_THREADS", "1")))


_threads_set = False


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as contiguous float32."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {v.shape}")
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.ascontiguousarray(v / np.where(norms == 0, 1, norms), dtype=np.float32)


class DenseIndex:
    """Cosine search over vectors identified by int64 ids."""

    def __init__(self, dim: int):
        global _threads_set
        if not _threads_set:
            set_faiss_threads()
            _threads_set = True
        self.dim = dim
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        if not len(ids):
            return
        v = normalize(vectors)
        if v.shape != (len(ids), self.dim):
            raise ValueError(f"expected {len(ids)} vectors of dim {self.dim}, got {v.shape}")
        self._index.add_with_ids(v, np.asarray(ids, np.int64))

    def remove(self, ids: Sequence[int]) -> int:
        if not len(ids):
            return 0
        return int(self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, np.int64))))

    def search(self, query: np.ndarray, k: int = 10,
               allowed_ids: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Top-k ``(id, cosine)`` for one query vector, best first."""
        if k <= 0 or not len(self):
            return []
        q = normalize(np.asarray(query).reshape(1, -1))
        params = None
        if allowed_ids is not None:
            if not len(allowed_ids):
                return []
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.asarray(allowed_ids, np.int64)))
        scores, ids = self._index.search(q, min(k, len(self)), params=params)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i != -1]

    def score_ids(self, query: np.ndarray, ids: Sequence[int]) -> list[float]:
        """Cosine of the query with the stored vectors of ``ids`` (all must be indexed)."""
        if not len(ids):
            return []
        q = normalize(np.asarray(query).reshape(1, -1))[0]
        return [float(s) for s in self._index.reconstruct_batch(np.asarray(ids, np.int64)) @ q]
