"""Braid memory: a persistent experience and retrieval store.

    from braid.memory import Store
    store = Store.open("./mem")
    coll = store.collection("notes")
    coll.add([{"text": "faiss flat search is exact", "metadata": {"topic": "ann"}}])
    coll.search("exact vector search", k=5, mode="hybrid", filters={"topic": "ann"})

SQLite (WAL) is the source of truth; the BM25 (rank-bm25 BM25Okapi scores, see
``braid.memory.bm25``) and faiss indexes are in-memory caches caught up from it before
each search, so several processes can share one store.
"""
from .bm25 import BM25Index
from .dense import DenseIndex
from .embedders import DEFAULT_MODEL, Embedder, HashingEmbedder, SentenceTransformerEmbedder
from .fusion import reciprocal_rank_fusion
from .records import NewRecord, Record, SearchHit
from .store import Collection, Store
from .tokenizer import tokenize

__all__ = ["Store", "Collection", "Record", "SearchHit", "NewRecord", "Embedder",
           "SentenceTransformerEmbedder", "HashingEmbedder", "DEFAULT_MODEL", "BM25Index",
           "DenseIndex", "reciprocal_rank_fusion", "tokenize", "index_corpus"]


def __getattr__(name: str):
    if name == "index_corpus":  # keeps tqdm/csv reading out of the import of the store
        from .indexing import index_corpus

        return index_corpus
    raise AttributeError(name)
