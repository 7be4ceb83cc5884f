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


def test_scores_follow_cosine_and_the_rrf_formula(tmp_path, minilm):
    """Dense scores are the cosine of the bundled model's embeddings (numpy, here); hybrid scores are
    sum over the BM25 and dense rankings of 1 / (60 + rank), written out here."""
    import numpy as np

    ids, texts = list(DOCS), list(DOCS.values())
    doc_vecs = np.asarray(minilm.embed(texts), dtype=np.float64)
    doc_vecs /= np.linalg.norm(doc_vecs, axis=1, keepdims=True)
    with Store.open(tmp_path, embedder=minilm) as store:
        coll = store.collection("kb")
        coll.add([{"id": key, "text": text} for key, text in DOCS.items()])
        for query, _ in QUERIES[:4]:
            q = np.asarray(minilm.embed([query])[0], dtype=np.float64)
            cosine = dict(zip(ids, doc_vecs @ (q / np.linalg.norm(q))))
            dense = coll.search(query, k=len(ids), mode="dense")
            assert [h.id for h in dense] == sorted(ids, key=lambda i: -cosine[i])
            for hit in dense:
                assert abs(hit.score - cosine[hit.id]) < 1e-5

            bm25_ranking = [h.id for h in coll.search(query, k=len(ids), mode="bm25")]
            dense_ranking = sorted(ids, key=lambda i: -cosine[i])
            want = {i: sum(1.0 / (60 + r.index(i) + 1) for r in (bm25_ranking, dense_ranking) if i in r)
                    for i in ids}
            hybrid = coll.search(query, k=5, mode="hybrid")
            assert [h.id for h in hybrid] == sorted(want, key=lambda i: -want[i])[:5]
            for hit in hybrid:
                assert abs(hit.score - want[hit.id]) < 1e-12
                assert abs(hit.dense_score - cosine[hit.id]) < 1e-5
