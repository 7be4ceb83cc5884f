"""MCP surface of `braid.memory` (`braid mcp serve memory --store PATH`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio
from mcp.server.fastmcp import FastMCP
from pydantic import BaseModel, ConfigDict, Field

from ._serving import ServeOptions, new_fastmcp
from ._store_access import Hit, RecordView, existing_collection, hit_view, open_store, record_view

__all__ = ["NewRecordIn", "build_server"]

CollectionName = Annotated[str, Field(min_length=1, max_length=200, description="Name of the collection")]
SearchModeArg = Annotated[Literal["hybrid", "bm25", "dense"],
                          Field(description="bm25 (lexical), dense (embeddings) or hybrid (rank fusion of both)")]
FiltersArg = Annotated[dict[str, Any] | None, Field(
    description='Metadata filters: {"key": value}, {"key": [a, b]} (any of), '
                '{"key": {"$gte": 3}} with $eq $ne $gt $gte $lt $lte $in $exists; "labels" and "score" are special keys')]


class NewRecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, description="Text that is indexed (BM25 and embeddings)")
    metadata: dict[str, Any] = Field(default_factory=dict, description="JSON object; its keys can be filtered on")
    score: float | None = Field(None, description="Optional quality/reward score of this record")
    labels: list[str] = Field(default_factory=list)
    id: str | None = Field(None, description="Optional id; an existing id is replaced")


class AddResult(BaseModel):
    ids: list[str]
    count: int
    """Records in the collection after the add."""


class SearchResult(BaseModel):
    collection: str
    mode: str
    hits: list[Hit]


class CollectionInfo(BaseModel):
    name: str
    count: int


def build_server(options: ServeOptions) -> FastMCP:
    store = open_store(options)
    server = new_fastmcp("memory", "Long-term memory: records (text + metadata) in named collections, "
                         "searchable by BM25, embeddings or both.", options)

    @server.tool()
    async def memory_add(collection: CollectionName,
                         records: Annotated[list[NewRecordIn], Field(min_length=1, max_length=1000)]) -> AddResult:
        """Add records to a collection (created if missing); returns their ids."""
        def add() -> AddResult:
            coll = store.collection(collection)
            ids = coll.add([r.model_dump(exclude_none=True) for r in records])
            return AddResult(ids=ids, count=coll.count())
        return await anyio.to_thread.run_sync(add)

    @server.tool()
    async def memory_search(collection: CollectionName,
                            query: Annotated[str, Field(min_length=1, description="What to look for")],
                            k: Annotated[int, Field(ge=1, le=100, description="Number of hits")] = 10,
                            mode: SearchModeArg = "hybrid", filters: FiltersArg = None) -> SearchResult:
        """Search a collection; hits are ranked best first with their scores."""
        def search() -> SearchResult:
            hits = existing_collection(store, collection).search(query, k=k, mode=mode, filters=filters)
            return SearchResult(collection=collection, mode=mode, hits=[hit_view(h) for h in hits])
        return await anyio.to_thread.run_sync(search)

    @server.tool()
    async def memory_get(collection: CollectionName, id: Annotated[str, Field(min_length=1)]) -> RecordView:
        """Fetch one record by id (an error if it does not exist)."""
        def get() -> RecordView:
            record = existing_collection(store, collection).get(id)
            if record is None:
                raise ValueError(f"no record {id!r} in collection {collection!r}")
            return record_view(record)
        return await anyio.to_thread.run_sync(get)

    @server.tool()
    async def memory_delete(collection: CollectionName,
                            ids: Annotated[list[str], Field(min_length=1, max_length=10_000)]) -> int:
        """Delete records by id; returns how many existed."""
        return await anyio.to_thread.run_sync(lambda: existing_collection(store, collection).delete(ids))

    @server.tool()
    async def memory_collections() -> list[CollectionInfo]:
        """List the store's collections with their record counts."""
        def listing() -> list[CollectionInfo]:
            return [CollectionInfo(name=n, count=store.collection(n).count()) for n in store.collections()]
        return await anyio.to_thread.run_sync(listing)

    return server
