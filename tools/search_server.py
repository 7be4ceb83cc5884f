"""MCP surface for searching an indexed corpus (`braid mcp serve search --store PATH`).

A corpus is a collection of a `braid.memory` store (built with `braid index`); this server
only reads it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio
from mcp.server.fastmcp import FastMCP
from pydantic import BaseModel, Field

from ._serving import ServeOptions, new_fastmcp
from ._store_access import Hit, existing_collection, hit_view, open_store

__all__ = ["build_server"]


class SearchResult(BaseModel):
    collection: str
    mode: str
    hits: list[Hit]


def build_server(options: ServeOptions) -> FastMCP:
    store = open_store(options)
    if options.collection is not None:
        existing_collection(store, options.collection)  # fail at start-up, naming the bad option
    server = new_fastmcp("search", "Search an indexed document corpus with BM25, dense embeddings or a hybrid.",
                         options)

    @server.tool()
    async def search(
        query: Annotated[str, Field(min_length=1, max_length=4000, description="Search query")],
        k: Annotated[int, Field(ge=1, le=100, description="Number of results")] = 10,
        mode: Annotated[Literal["hybrid", "bm25", "dense"],
                        Field(description="bm25 (lexical), dense (embeddings) or hybrid (rank fusion)")] = "hybrid",
        collection: Annotated[str | None, Field(description="Corpus to search; defaults to the server's --collection")] = None,
        filters: Annotated[dict[str, Any] | None, Field(description='Metadata filters, e.g. {"source": "wiki"}')] = None,
    ) -> SearchResult:
        """Search the corpus; returns ids, text and scores (BM25, dense, fused) ranked best first."""
        name = collection or options.collection
        if name is None:
            raise ValueError("no collection given and the server has no default (--collection)")

        def run() -> SearchResult:
            hits = existing_collection(store, name).search(query, k=k, mode=mode, filters=filters)
            return SearchResult(collection=name, mode=mode, hits=[hit_view(h) for h in hits])
        return await anyio.to_thread.run_sync(run)

    @server.tool()
    async def search_collections() -> list[str]:
        """List the corpora (collections) that can be searched."""
        return await anyio.to_thread.run_sync(store.collections)

    return server
