"""Opening a `braid.memory` store for the memory and search servers, and hit/record views."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ._serving import ServeOptions

__all__ = ["Hit", "RecordView", "existing_collection", "hit_view", "open_store", "record_view"]


class Hit(BaseModel):
    id: str
    text: str
    score: float
    """The mode's score: BM25, cosine (dense) or reciprocal-rank fusion (hybrid)."""
    bm25_score: float | None
    dense_score: float | None
    rank: int
    metadata: dict[str, Any]
    labels: list[str]


class RecordView(BaseModel):
    id: str
    collection: str
    text: str
    metadata: dict[str, Any]
    score: float | None
    labels: list[str]
    created_at: float


def open_store(options: ServeOptions):
    if options.store is None:
        raise ValueError("this server needs --store PATH (a braid memory store directory)")
    from braid.memory import HashingEmbedder, Store

    embedder = HashingEmbedder() if options.embedder == "hashing" else None  # None: bundled MiniLM, lazily
    return Store.open(options.store, embedder=embedder)


def existing_collection(store, name: str):
    """The collection `name`; unlike `Store.collection`, never creates one."""
    names = store.collections()
    if name not in names:
        raise ValueError(f"no collection {name!r} in store {store.path}; existing: {', '.join(names) or 'none'}")
    return store.collection(name)


def hit_view(hit) -> Hit:
    return Hit(id=hit.id, text=hit.text, score=hit.score, bm25_score=hit.bm25_score, dense_score=hit.dense_score,
               rank=hit.rank, metadata=hit.metadata, labels=list(hit.labels))


def record_view(record) -> RecordView:
    return RecordView(id=record.id, collection=record.collection, text=record.text, metadata=record.metadata,
                      score=record.score, labels=list(record.labels), created_at=record.created_at)
