"""Store and collection behaviour with the model-free hashing embedder."""
from __future__ import annotations

import pytest

from braid.memory import HashingEmbedder, Record, Store

PETS = [
    {"text": "the cat sat on the mat", "metadata": {"kind": "pet", "year": 2020}, "labels": ["cute"]},
    {"text": "a dog barked at the cat", "metadata": {"kind": "pet", "year": 2023}, "score": 0.9},
    {"text": "cat food prices rose", "metadata": {"kind": "finance", "year": 2024}},
]


def test_add_get_count_delete_and_upsert(store):
    coll = store.collection("pets")
    ids = coll.add(PETS)
    assert len(ids) == 3 and coll.count() == 3 and store.collections() == ["pets"]
    rec = coll.get(ids[1])
    assert isinstance(rec, Record) and rec.score == 0.9 and rec.metadata["year"] == 2023
    assert rec.created_at > 0 and coll.get("nope") is None
    assert coll.delete([ids[0], "nope"]) == 1 and coll.count() == 2
    assert ids[0] not in {h.id for h in coll.search("cat mat", mode="hybrid")}
    assert coll.add([{"id": ids[1], "text": "a parrot talks"}]) == [ids[1]]  # replaces
    assert coll.count() == 2 and coll.get(ids[1]).text == "a parrot talks"
    assert [h.id for h in coll.search("parrot", mode="bm25")] == [ids[1]]
    assert coll.search("barked", mode="bm25") == []


def test_bad_input_is_rejected_with_a_named_field(store):
    coll = store.collection("pets")
    with pytest.raises(ValueError, match="text"):
        coll.add([{"metadata": {}}])
    with pytest.raises(ValueError, match="metadata"):
        coll.add([{"text": "x", "metadata": {"f": object()}}])
    with pytest.raises(ValueError, match="twice"):
        coll.add([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}])
    with pytest.raises(ValueError, match="mode"):
        coll.search("x", mode="fuzzy")
    assert coll.count() == 0


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_filters(store, mode):
    coll = store.collection("pets")
    coll.add(PETS)
    texts = lambda f: {h.text for h in coll.search("cat", k=10, mode=mode, filters=f)}  # noqa: E731
    assert texts({"kind": "finance"}) == {"cat food prices rose"}
    assert texts({"kind": "pet", "year": {"$gte": 2021}}) == {"a dog barked at the cat"}
    assert texts({"year": [2020, 2024]}) == {"the cat sat on the mat", "cat food prices rose"}
    assert texts({"labels": "cute"}) == {"the cat sat on the mat"}
    assert texts({"score": {"$gt": 0.5}}) == {"a dog barked at the cat"}
    assert texts({"kind": "none"}) == set()
    with pytest.raises(ValueError, match="operator"):
        coll.search("cat", filters={"year": {"$near": 1}})


def test_hits_carry_scores_and_ranks(store):
    coll = store.collection("pets")
    coll.add(PETS)
    hits = coll.search("cat on the mat", k=2, mode="hybrid")
    assert [h.rank for h in hits] == [1, 2] and hits[0].text == "the cat sat on the mat"
    assert hits[0].score > hits[1].score
    assert all(h.bm25_score is not None and h.dense_score is not None for h in hits)
    assert hits[0].labels == ["cute"]
    dense = coll.search("cat on the mat", k=1, mode="dense")[0]
    assert dense.bm25_score is None and dense.score == dense.dense_score


def test_persists_across_reopen_and_refuses_another_embedder(tmp_path):
    with Store.open(tmp_path, embedder=HashingEmbedder()) as store:
        ids = store.collection("pets").add(PETS)
        store.collection("empty")
    with Store.open(tmp_path, embedder=HashingEmbedder()) as store:
        assert store.collections() == ["empty", "pets"]
        coll = store.collection("pets")
        assert coll.count() == 3 and coll.get(ids[2]).text == PETS[2]["text"]
        assert coll.search("prices", mode="hybrid")[0].id == ids[2]
    with Store.open(tmp_path, embedder=HashingEmbedder(dim=64)) as store:
        assert store.collection("pets").search("prices", mode="bm25")[0].id == ids[2]
        with pytest.raises(ValueError, match="hashing-256"):
            store.collection("pets").search("prices", mode="dense")
