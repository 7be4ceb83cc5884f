"""BM25 scores are the documented BM25Okapi values (k1=1.5, b=0.75, ATIRE idf, eps=0.25)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from braid.memory import BM25Index, tokenize


def test_tokenizer_is_lowercase_word_runs():
    assert tokenize("The Cat's ERR-4711, café_au lait!") == ["the", "cat", "s", "err", "4711",
                                                               "café_au", "lait"]


def test_scores_match_a_hand_computation(store):
    docs = ["The cat sat on the mat", "the dog sat", "The cat chased the dog", "birds sing"]
    ids = store.collection("hand").add([{"text": d} for d in docs])
    # N = 4 docs of 6, 3, 5, 2 tokens: avgdl = 16 / 4 = 4. Vocabulary of 9 terms with
    # df: the=3; cat, sat, dog = 2; on, mat, chased, birds, sing = 1.
    idf_the_raw = math.log(4 - 3 + 0.5) - math.log(3 + 0.5)      # negative -> floored
    idf_2 = math.log(4 - 2 + 0.5) - math.log(2 + 0.5)            # = 0
    idf_1 = math.log(4 - 1 + 0.5) - math.log(1 + 0.5)
    mean_idf = (idf_the_raw + 3 * idf_2 + 5 * idf_1) / 9
    idf_the = 0.25 * mean_idf
    k1, b = 1.5, 0.75

    def term(idf, tf, dl):
        return idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / 4))

    expected = {
        ids[0]: term(idf_the, 2, 6) + term(idf_1, 1, 6),      # "the" x2, "mat" x1
        ids[1]: term(idf_the, 1, 3),
        ids[2]: term(idf_the, 2, 5),
    }
    assert expected[ids[0]] == pytest.approx(0.80754, abs=1e-4)   # worked by hand
    hits = store.collection("hand").search("the mat", k=10, mode="bm25")
    assert [h.id for h in hits] == [ids[0], ids[2], ids[1]]      # "birds sing" matches nothing
    for h in hits:
        assert h.bm25_score == pytest.approx(expected[h.id], rel=1e-12)
        assert h.score == h.bm25_score and h.dense_score is None


def test_equal_to_rank_bm25_okapi_with_incremental_adds_and_removals():
    rank_bm25 = pytest.importorskip("rank_bm25")
    rng = np.random.default_rng(1)
    docs = [[f"t{int(x)}" for x in rng.zipf(1.3, size=rng.integers(3, 40)) if x < 300]
            for _ in range(400)]
    index = BM25Index()
    index.add(range(1000, 1250), docs[:250])
    index.search(["t1"])                                     # freeze, then add more
    index.add(range(1250, 1400), docs[250:])
    index.add([5000, 5001], [["t1", "t2"], ["t9"]])
    index.remove([5000, 5001, 123456])
    reference = rank_bm25.BM25Okapi(docs)
    for _ in range(25):
        query = [f"t{int(x)}" for x in rng.zipf(1.3, size=4)]
        want = reference.get_scores(query)
        np.testing.assert_allclose(index.score_ids(query, range(1000, 1400)), want, rtol=1e-12)
        top = index.search(query, k=10)
        got_ids = [i - 1000 for i, _ in top]
        tenth = np.sort(want)[-10] if len(top) == 10 else 0
        assert all(want[i] >= tenth - 1e-12 for i in got_ids)
        np.testing.assert_allclose([s for _, s in top], np.sort(want)[::-1][:len(top)], rtol=1e-12)
