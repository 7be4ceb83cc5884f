"""Retrieval benchmark: braid BM25 vs rank-bm25 BM25Okapi, and faiss dense search.

Builds a synthetic corpus (each document 60 terms drawn from a Zipfian distribution over
--vocab terms, exponent --zipf), 5-term queries drawn from the same distribution, and
prints one table of measurements taken in this run: p50/p95 query latency of braid's
BM25Index and of rank_bm25.BM25Okapi (same corpus, same machine, top-10), top-10 agreement,
and faiss flat inner-product search at --docs random 384-d unit vectors.

Top-10 agreement is tie-aware: a braid hit counts as agreeing if rank-bm25 has it in its
top 10 or gives it the same score as its 10th hit (synthetic corpora produce exact ties).

Writes benchmarks/results/OUT.md (the run header, the table) and OUT.json (the header, every
latency sample) with --out (default ``retrieval``).

    python benchmarks/retrieval.py            # 100k documents, 100 queries (~2 min)
    python benchmarks/retrieval.py --docs 20000 --queries 30 --out retrieval_small
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from structured_common import RESULTS, RunInfo  # noqa: E402


def zipf_corpus(rng, n_docs, vocab, exponent, terms_per_doc):
    p = 1.0 / np.arange(1, vocab + 1) ** exponent
    p /= p.sum()
    ids = rng.choice(vocab, size=(n_docs, terms_per_doc), p=p)
    words = np.array([f"w{i}" for i in range(vocab)], dtype=object)
    return [list(row) for row in words[ids]], p, words


def percentiles(samples_s):
    ms = np.asarray(samples_s) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=100_000, help="documents and dense vectors (default 100000)")
    ap.add_argument("--queries", type=int, default=100, help="number of queries (default 100)")
    ap.add_argument("--vocab", type=int, default=50_000, help="vocabulary size (default 50000)")
    ap.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent (default 1.0)")
    ap.add_argument("--terms-per-doc", type=int, default=60, help="terms per document (default 60)")
    ap.add_argument("--query-terms", type=int, default=5, help="terms per query (default 5)")
    ap.add_argument("--dim", type=int, default=384, help="dense vector dimension (default 384)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="retrieval", help="results/OUT.md and results/OUT.json ('' : print only)")
    args = ap.parse_args()

    import faiss
    from rank_bm25 import BM25Okapi

    from braid.memory.bm25 import BM25Index
    from braid.memory.dense import DenseIndex

    info = RunInfo.start(0, in_process=True, threads_text=(
        f"faiss {faiss.omp_get_max_threads()} OpenMP threads, numpy's BLAS default; the BM25 sides are "
        f"single-threaded Python/numpy"))

    rng = np.random.default_rng(args.seed)
    corpus, p, words = zipf_corpus(rng, args.docs, args.vocab, args.zipf, args.terms_per_doc)
    queries = [list(words[rng.choice(args.vocab, size=args.query_terms, p=p)])
               for _ in range(args.queries)]

    t = time.perf_counter()
    braid = BM25Index()
    braid.add(list(range(args.docs)), corpus)
    braid.search(queries[0], 10)  # folds the postings in (the first search after adds does)
    braid_build = time.perf_counter() - t
    t = time.perf_counter()
    okapi = BM25Okapi(corpus)
    okapi_build = time.perf_counter() - t

    braid_lat, okapi_lat, agree, max_err = [], [], [], 0.0
    for q in queries:
        t = time.perf_counter()
        hits = braid.search(q, 10)
        braid_lat.append(time.perf_counter() - t)
        t = time.perf_counter()
        scores = okapi.get_scores(q)
        top = np.argsort(-scores, kind="stable")[:10]
        okapi_lat.append(time.perf_counter() - t)
        tenth = scores[top[-1]]
        top_set = set(top.tolist())
        agree.append(np.mean([i in top_set or abs(scores[i] - tenth) < 1e-9 for i, _ in hits]))
        max_err = max(max_err, max(abs(scores[i] - s) for i, s in hits))

    vectors = rng.standard_normal((args.docs, args.dim), dtype=np.float32)
    dense = DenseIndex(args.dim)
    t = time.perf_counter()
    dense.add(np.arange(args.docs), vectors)
    dense_build = time.perf_counter() - t
    qv = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    dense.search(qv[0], 10)
    dense_lat = []
    for q in qv:
        t = time.perf_counter()
        dense.search(q, 10)
        dense_lat.append(time.perf_counter() - t)

    b50, b95 = percentiles(braid_lat)
    o50, o95 = percentiles(okapi_lat)
    d50, d95 = percentiles(dense_lat)
    info.finish()
    lines = ["# Retrieval: braid BM25 vs rank-bm25 BM25Okapi, faiss flat search", "",
             f"{args.docs} documents x {args.terms_per_doc} Zipf({args.zipf}) terms over a {args.vocab}-term "
             f"vocabulary, {args.queries} queries x {args.query_terms} terms, top-10, seed {args.seed}; dense: "
             f"{args.docs} random {args.dim}-d float32 vectors. Both sides of each ratio ran in this process, one "
             f"query after the other. faiss {faiss.__version__}, numpy {np.__version__}.", "",
             *info.markdown(), "",
             "| measurement | braid | rank-bm25 BM25Okapi | ratio (rank-bm25 / braid) |",
             "|---|---|---|---|",
             f"| BM25 p50 latency (ms) | {b50:.2f} | {o50:.1f} | {o50 / b50:.0f}x |",
             f"| BM25 p95 latency (ms) | {b95:.2f} | {o95:.1f} | {o95 / b95:.0f}x |",
             f"| BM25 index build (s) | {braid_build:.1f} | {okapi_build:.1f} | {okapi_build / braid_build:.1f}x |",
             f"| BM25 top-10 agreement (tie-aware) | {np.mean(agree):.3f} | 1 (reference) | |",
             f"| BM25 max abs score difference | {max_err:.1e} | 0 (reference) | |",
             f"| dense faiss flat-IP p50 / p95 (ms), {args.docs} x {args.dim} | {d50:.2f} / {d95:.2f} | | |",
             f"| dense index build (s) | {dense_build:.2f} | | |"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{args.out}.md").write_text(text)
        (RESULTS / f"{args.out}.json").write_text(json.dumps({
            "run": info.as_dict(), "args": vars(args),
            "latency_s": {"braid_bm25": braid_lat, "rank_bm25": okapi_lat, "faiss_flat_ip": dense_lat},
            "build_s": {"braid_bm25": braid_build, "rank_bm25": okapi_build, "faiss_flat_ip": dense_build},
            "top10_agreement": float(np.mean(agree)), "max_abs_score_difference": float(max_err)}, indent=1) + "\n")
        print(f"written: {RESULTS / args.out}.md, .json")

if __name__ == "__main__":
    main()
