"""Hybrid search with the real bundled all-MiniLM-L6-v2 on a small labelled set."""
from __future__ import annotations

from braid.memory import Store

from memory_labelled_set import DOCS, QUERIES


def test_hybrid_ranks_the_relevant_record_first_where_single_retrievers_fail(tmp_path, minilm):
    with Store.open(tmp_path, embedder=minilm) as store:
        coll = store.collection("kb")
        coll.add([{"id": key, "text": text, "metadata": {"topic": key}} for key, text in DOCS.items()])
        top1 = {mode: {q: coll.search(q, k=3, mode=mode)[0].id for q, _ in QUERIES}
                for mode in ("bm25", "dense", "hybrid")}
        hybrid_misses = [(q, top1["hybrid"][q]) for q, want in QUERIES if top1["hybrid"][q] != want]
        assert not hybrid_misses
        bm25_misses = [q for q, want in QUERIES if top1["bm25"][q] != want]
        dense_misses = [q for q, want in QUERIES if top1["dense"][q] != want]
        assert "kills the process instantly" in bm25_misses     # BM25 prefers the snake
        assert "E4712" in dense_misses                          # the embedding mixes up codes

        hit = coll.search("E4712", k=2, mode="hybrid")[0]
        assert hit.bm25_score > 0 and 0 < hit.dense_score <= 1 and hit.rank == 1
        filtered = coll.search("kills the process instantly", mode="hybrid",
                               filters={"topic": {"$in": ["python_snake", "coffee"]}})
        assert [h.id for h in filtered] == ["python_snake", "coffee"]
