"""``Store`` (a directory holding one SQLite database) and its named ``Collection``s."""
from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from ._collection_index import CollectionIndex
from .embedders import Embedder, SentenceTransformerEmbedder, embedder_name
from .filters import filters_to_sql
from .fusion import reciprocal_rank_fusion
from .records import NewRecord, Record, SearchHit
from .sqlite_log import SqliteLog
from .tokenizer import TOKENIZER_VERSION, tokenize

__all__ = ["Store", "Collection", "SearchMode"]

SearchMode = Literal["hybrid", "bm25", "dense"]
HYBRID_POOL = 50
"""Each retriever contributes at least this many candidates to the fusion (or 5*k)."""


class Store:
    """A persistent experience store. Safe to share between threads and processes."""

    def __init__(self, path: Path, embedder: Embedder | None):
        self.path = path
        self._log = SqliteLog(path)
        tok = self._log.set_meta_once("tokenizer", TOKENIZER_VERSION)
        if tok != TOKENIZER_VERSION:
            raise ValueError(f"{path} was indexed with tokenizer {tok!r}; this braid uses "
                             f"{TOKENIZER_VERSION!r}: re-index into a new store")
        self._embedder = embedder
        self._lock = threading.RLock()
        self._indexes: dict[int, CollectionIndex] = {}

    @classmethod
    def open(cls, path: str | Path, embedder: Embedder | None = None) -> Store:
        """Open (creating if needed) the store in directory ``path``. Without ``embedder``
        the bundled all-MiniLM-L6-v2 is used, loaded on first add or dense search."""
        return cls(Path(path), embedder)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = SentenceTransformerEmbedder()
        return self._embedder

    def collection(self, name: str) -> Collection:
        """The collection called ``name``, created if it does not exist."""
        if not name:
            raise ValueError("collection name must be non-empty")
        with self._lock:
            return Collection(self, name, self._log.collection_id(name, create=True))

    def collections(self) -> list[str]:
        with self._lock:
            return self._log.collection_names()

    def close(self) -> None:
        with self._lock:
            self._log.close()
            self._indexes.clear()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _index(self, cid: int) -> CollectionIndex:
        index = self._indexes.get(cid) or self._indexes.setdefault(cid, CollectionIndex(cid))
        index.catch_up(self._log)
        return index


def _record(collection: str, row: tuple) -> Record:
    rid, text, metadata, score, labels, created, updated = row
    return Record(rid, collection, text, json.loads(metadata), score, json.loads(labels),
                  created, updated)


class Collection:
    """Records that are searched together. Obtain with ``Store.collection(name)``."""

    def __init__(self, store: Store, name: str, cid: int):
        self.store, self.name, self._cid = store, name, cid

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, store={str(self.store.path)!r})"

    def add(self, records: Iterable[Mapping[str, Any] | NewRecord]) -> list[str]:
        """Add records (dicts with ``text`` and optional ``metadata``, ``score``, ``labels``,
        ``id``, ``created_at``); a given existing ``id`` is replaced. One transaction:
        when this returns, the whole batch is durable; on error nothing was written."""
        batch = [r if isinstance(r, NewRecord) else NewRecord.model_validate(r) for r in records]
        if not batch:
            return []
        ids = [r.id or uuid.uuid4().hex for r in batch]
        if len(set(ids)) != len(ids):
            raise ValueError("the same id appears twice in one add() batch")
        embedder = self.store.embedder
        vectors = embedder.embed([r.text for r in batch])
        terms = [tokenize(r.text) for r in batch]
        with self.store._lock:
            self.store._log.insert(self._cid, batch, ids, terms, vectors, embedder_name(embedder))
        return ids

    def get(self, record_id: str) -> Record | None:
        with self.store._lock:
            row = self.store._log.get(self._cid, record_id)
        return _record(self.name, row) if row else None

    def delete(self, ids: Iterable[str]) -> int:
        """Delete records by id; returns how many existed."""
        with self.store._lock:
            return self.store._log.delete(self._cid, list(ids))

    def count(self) -> int:
        with self.store._lock:
            return self.store._log.count(self._cid)

    def search(self, query: str, k: int = 10, mode: SearchMode = "hybrid",
               filters: dict[str, Any] | None = None) -> list[SearchHit]:
        """Top-``k`` records for ``query``. ``mode``: "bm25" (scores are BM25Okapi values,
        see braid.memory.bm25), "dense" (cosine) or "hybrid" (reciprocal rank fusion of
        both, k=60). ``filters`` restrict by metadata (see braid.memory.filters)."""
        if mode not in ("hybrid", "bm25", "dense"):
            raise ValueError(f"mode must be 'hybrid', 'bm25' or 'dense', not {mode!r}")
        if k <= 0:
            return []
        query_vec = None
        if mode != "bm25" and self._embedder_matches():
            query_vec = self.store.embedder.embed([query])[0]
        with self.store._lock:
            log = self.store._log
            index = self.store._index(self._cid)
            allowed = None
            if filters:
                allowed = log.filtered_rowids(self._cid, *filters_to_sql(filters))
            tokens = tokenize(query)
            pool = k if mode != "hybrid" else max(HYBRID_POOL, 5 * k)
            bm25 = index.bm25.search(tokens, pool, allowed) if mode != "dense" else []
            dense = []
            if query_vec is not None and index.dense is not None:
                dense = index.dense.search(query_vec, pool, allowed)
            if mode == "bm25":
                ranked = [(i, s, s, None) for i, s in bm25]
            elif mode == "dense":
                ranked = [(i, s, None, s) for i, s in dense]
            else:
                fused = reciprocal_rank_fusion([[i for i, _ in bm25], [i for i, _ in dense]])[:k]
                ids = [i for i, _ in fused]
                b = index.bm25.score_ids(tokens, ids)
                d = (index.dense.score_ids(query_vec, ids) if dense else [None] * len(ids))
                ranked = [(i, s, bs, ds) for (i, s), bs, ds in zip(fused, b, d)]
            rows = log.rows_by_rowid([r[0] for r in ranked])
        hits = []
        for rowid, score, bm25_score, dense_score in ranked:
            if rowid not in rows:  # deleted by another process since the catch-up
                continue
            rec = _record(self.name, rows[rowid])
            hits.append(SearchHit(rec.id, rec.text, rec.metadata, score, bm25_score, dense_score,
                                  len(hits) + 1, rec.labels, rec.score, rec.created_at))
        return hits

    def _embedder_matches(self) -> bool:
        """False for an empty collection; raises if its vectors come from another model."""
        with self.store._lock:
            name, _dim = self.store._log.collection_embedder(self._cid)
        if name is None:
            return False
        if name != embedder_name(self.store.embedder):
            raise ValueError(f"collection {self.name!r} holds {name} vectors; open the store "
                             f"with that embedder (got {embedder_name(self.store.embedder)})")
        return True
