"""An in-memory BM25 index with exactly the scores of rank-bm25's ``BM25Okapi``.

For a query q = (q_1 .. q_n) (repeated terms count again) and a document D:

    score(D, q) = sum_i idf(q_i) * tf(q_i, D) * (k1 + 1)
                              / (tf(q_i, D) + k1 * (1 - b + b * |D| / avgdl))

with ``k1 = 1.5``, ``b = 0.75``; ``tf`` the term's count in D, ``|D|`` D's token count,
``avgdl`` the mean token count over the live documents, N the number of live documents and
``df(t)`` the number of live documents containing t. The idf is the ATIRE/Okapi form

    idf(t) = ln(N - df(t) + 0.5) - ln(df(t) + 0.5)

and, as in ``BM25Okapi``, a term whose idf is negative (df > N/2) gets the floor
``epsilon * mean(idf over the vocabulary)`` with ``epsilon = 0.25``. Query terms absent from
the corpus contribute 0. Tokens come from :func:`braid.memory.tokenizer.tokenize`.

Layout: postings sorted by term (CSR: ``term_ptr``, ``post_doc``, ``post_weight``) with the
whole per-posting BM25 weight precomputed, so a query is a gather plus ``np.bincount``.
Additions go to a pending list; the next search folds them in (one near-linear timsort
merge and one vectorised weight pass), because N, avgdl and every idf change with them.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["BM25Index", "K1", "B", "EPSILON"]

K1, B, EPSILON = 1.5, 0.75, 0.25


class BM25Index:
    """BM25 over documents identified by int64 ids (here: SQLite rowids)."""

    def __init__(self, k1: float = K1, b: float = B, epsilon: float = EPSILON):
        self.k1, self.b, self.epsilon = k1, b, epsilon
        self._vocab: dict[str, int] = {}
        self._ids = np.zeros(0, np.int64)          # slot -> external id
        self._slot_of: dict[int, int] = {}
        self._doc_len = np.zeros(0, np.float64)
        self._alive = np.zeros(0, bool)
        # postings of all slots (sorted by term, then slot) + pending chunks
        self._p_term = np.zeros(0, np.int32)
        self._p_doc = np.zeros(0, np.int32)
        self._p_tf = np.zeros(0, np.float64)
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._removed_since_freeze = False
        self._frozen = False
        self._term_ptr = np.zeros(1, np.int64)
        self._post_weight = np.zeros(0, np.float64)
        self._idf = np.zeros(0, np.float64)

    def __len__(self) -> int:
        return int(self._alive.sum())

    def add(self, ids: Sequence[int], token_lists: Sequence[Sequence[str]]) -> None:
        """Index documents (ids must be new)."""
        if len(ids) != len(token_lists):
            raise ValueError("ids and token_lists differ in length")
        if not len(ids):
            return
        first = len(self._ids)
        vocab = self._vocab
        term_ids = [vocab.setdefault(t, len(vocab)) for toks in token_lists for t in toks]
        lens = np.fromiter((len(t) for t in token_lists), np.int64, len(token_lists))
        slots = np.repeat(np.arange(first, first + len(ids), dtype=np.int64), lens)
        key = slots * (len(vocab) + 1) + np.asarray(term_ids, np.int64)
        uniq, tf = np.unique(key, return_counts=True)   # sorted by (slot, term)
        doc, term = np.divmod(uniq, len(vocab) + 1)
        order = np.argsort(term, kind="stable")          # -> by (term, slot)
        self._pending.append((term[order].astype(np.int32), doc[order].astype(np.int32),
                              tf[order].astype(np.float64)))
        new_ids = np.asarray(ids, np.int64)
        for i, ext in enumerate(new_ids.tolist()):
            if ext in self._slot_of:
                raise ValueError(f"document id {ext} is already indexed")
            self._slot_of[ext] = first + i
        self._ids = np.concatenate([self._ids, new_ids])
        self._doc_len = np.concatenate([self._doc_len, lens.astype(np.float64)])
        self._alive = np.concatenate([self._alive, np.ones(len(ids), bool)])
        self._frozen = False

    def remove(self, ids: Sequence[int]) -> int:
        """Forget documents; unknown ids are ignored. Returns how many were removed."""
        removed = 0
        for ext in ids:
            slot = self._slot_of.pop(int(ext), None)
            if slot is not None:
                self._alive[slot] = False
                removed += 1
        if removed:
            self._removed_since_freeze = True
            self._frozen = False
        return removed

    def _freeze(self) -> None:
        term = np.concatenate([self._p_term] + [p[0] for p in self._pending])
        doc = np.concatenate([self._p_doc] + [p[1] for p in self._pending])
        tf = np.concatenate([self._p_tf] + [p[2] for p in self._pending])
        if self._removed_since_freeze:
            keep = self._alive[doc]
            term, doc, tf = term[keep], doc[keep], tf[keep]
        if self._pending:  # sorted runs: timsort merges them in near-linear time
            order = np.argsort(term, kind="stable")
            term, doc, tf = term[order], doc[order], tf[order]
        self._p_term, self._p_doc, self._p_tf = term, doc, tf
        self._pending, self._removed_since_freeze = [], False

        df = np.bincount(term, minlength=len(self._vocab)).astype(np.float64)
        self._term_ptr = np.concatenate([[0], np.cumsum(df)]).astype(np.int64)
        n_docs = float(self._alive.sum())
        idf = np.log(n_docs - df + 0.5) - np.log(df + 0.5) if n_docs else np.zeros_like(df)
        present = df > 0
        if present.any():
            floor = self.epsilon * idf[present].mean()
            idf = np.where(idf < 0, floor, idf)
        self._idf = np.where(present, idf, 0.0)
        avgdl = self._doc_len[self._alive].mean() if n_docs else 1.0
        norm = self.k1 * (1 - self.b + self.b * self._doc_len / avgdl)
        self._post_weight = self._idf[term] * tf * (self.k1 + 1) / (tf + norm[doc])
        self._frozen = True

    def _scores(self, query_tokens: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Scores of every slot, and per matched query term its posting slots."""
        if not self._frozen:
            self._freeze()
        ptr = self._term_ptr
        spans = [(ptr[t], ptr[t + 1]) for t in
                 (self._vocab.get(tok) for tok in query_tokens) if t is not None]
        n = len(self._ids)
        if not spans:
            return np.zeros(n), []
        postings = [self._p_doc[s:e] for s, e in spans]
        weights = np.concatenate([self._post_weight[s:e] for s, e in spans])
        return np.bincount(np.concatenate(postings), weights=weights, minlength=n), postings

    def search(self, query_tokens: Sequence[str], k: int = 10,
               allowed_ids: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Top-k ``(id, score)`` among documents sharing at least one term with the query,
        best first (ties: earlier-indexed first); ``allowed_ids`` restricts the candidates."""
        if k <= 0:
            return []
        scores, postings = self._scores(query_tokens)
        if not postings:
            return []
        allowed = None
        if allowed_ids is not None:
            allowed = np.zeros(len(scores), bool)
            allowed[self._slots(allowed_ids)] = True
            scores = np.where(allowed, scores, -np.inf)
        cand = None
        # Any k-th largest score of a subset is <= the true k-th largest, so "score >= it"
        # keeps the whole top-k while skipping a partition over all N documents. The
        # subset: the first 4096 postings of the rarest term that has at least k.
        long_enough = [p for p in postings if len(p) >= k]
        if long_enough:
            probe = scores[min(long_enough, key=len)[:max(4096, k)]]
            threshold = np.partition(probe, len(probe) - k)[len(probe) - k]
            if threshold > 0:  # non-matching documents score 0, so all candidates match
                cand = np.flatnonzero(scores >= threshold)
        if cand is None:
            matched = np.zeros(len(scores), bool)
            for p in postings:
                matched[p] = True
            if allowed is not None:
                matched &= allowed
            cand = np.flatnonzero(matched)
        if not len(cand):
            return []
        cand_scores = scores[cand]
        if len(cand) > k:
            part = np.argpartition(cand_scores, len(cand) - k)[len(cand) - k:]
            # keep every candidate tied with the k-th so the tie-break is by slot
            part = np.flatnonzero(cand_scores >= cand_scores[part].min())
            cand, cand_scores = cand[part], cand_scores[part]
        order = np.lexsort((cand, -cand_scores))[:k]
        return [(int(self._ids[s]), float(cand_scores[i])) for i, s in
                zip(order, cand[order])]

    def score_ids(self, query_tokens: Sequence[str], ids: Sequence[int]) -> list[float]:
        """BM25 scores of given (indexed) documents; 0.0 where no query term occurs."""
        scores, _ = self._scores(query_tokens)
        return [float(v) for v in scores[self._slots(ids)]]

    def _slots(self, ids) -> np.ndarray:
        get = self._slot_of.get
        return np.fromiter((s for s in (get(int(i)) for i in ids) if s is not None), np.int64)
