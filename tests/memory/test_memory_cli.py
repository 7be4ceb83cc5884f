"""`braid index add | search | stats` as users run them (subprocesses on a store folder): the counts
`stats` prints, and `search --json` hits against rank_bm25's BM25Okapi scores of the same texts."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

DOCS = [
    {"id": "kettle", "text": "The kettle boils water for tea in three minutes", "room": "kitchen"},
    {"id": "sofa", "text": "The sofa in the living room seats four people", "room": "living"},
    {"id": "lamp", "text": "A reading lamp stands beside the sofa", "room": "living"},
    {"id": "oven", "text": "The oven bakes bread and roasts vegetables", "room": "kitchen"},
    {"id": "desk", "text": "The desk holds a lamp, a laptop and a cup of tea", "room": "study"},
]


def braid(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "braid.clients.cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_index_add_search_and_stats(tmp_path):
    rank_bm25 = pytest.importorskip("rank_bm25")
    corpus, store = tmp_path / "rooms.jsonl", tmp_path / "store"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    other = tmp_path / "notes.jsonl"
    other.write_text(json.dumps({"id": "n1", "text": "buy tea"}) + "\n")

    added = braid("index", "add", str(corpus), "--store", str(store), "--collection", "house", "--id-field", "id",
                  "-q")
    assert added.returncode == 0, added.stderr
    assert "5 records from 1 files into 'house'" in added.stdout and "collection now holds 5" in added.stdout
    again = braid("index", "add", str(corpus), "--store", str(store), "--collection", "house", "--id-field", "id",
                  "-q")
    assert "collection now holds 5" in again.stdout  # stable ids replace, not duplicate
    assert braid("index", "add", str(other), "--store", str(store), "--collection", "notes", "-q").returncode == 0

    stats = braid("index", "stats", "--store", str(store))
    assert stats.returncode == 0
    assert sorted(stats.stdout.split("\n")[:-1]) == ["house\t5", "notes\t1"]

    query = "lamp beside the sofa"
    found = braid("index", "search", query, "--store", str(store), "--collection", "house", "--mode", "bm25",
                  "-k", "5", "--json")
    assert found.returncode == 0, found.stderr
    hits = [json.loads(line) for line in found.stdout.splitlines()]
    tokenize = lambda text: re.findall(r"\w+", text.lower())  # noqa: E731 - the documented tokenizer
    reference = rank_bm25.BM25Okapi([tokenize(d["text"]) for d in DOCS])
    scores = dict(zip((d["id"] for d in DOCS), reference.get_scores(tokenize(query))))
    want = [i for i in sorted(scores, key=lambda i: -scores[i]) if scores[i] > 0]
    assert [h["id"] for h in hits] == want
    for hit in hits:
        assert hit["score"] == pytest.approx(scores[hit["id"]], rel=1e-6)
        assert hit["metadata"]["room"] == next(d["room"] for d in DOCS if d["id"] == hit["id"])

    filtered = braid("index", "search", "tea", "--store", str(store), "--collection", "house", "--mode", "bm25",
                     "--filter", '{"room": "kitchen"}', "--json")
    assert [json.loads(line)["id"] for line in filtered.stdout.splitlines()] == ["kettle"]
    text = braid("index", "search", "tea", "--store", str(store), "--collection", "house", "--mode", "bm25")
    assert re.search(r"^\s+1\. score=\d\.\d{4} bm25=\d\.\d{4} dense=- id=(kettle|desk)$", text.stdout, re.M)
