"""Real processes: SIGKILL in the middle of adds, and two concurrent writers."""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from braid.memory import HashingEmbedder, Store

WRITER = Path(__file__).with_name("memory_writer_process.py")


def _writer(path: Path, collection: str, tag: str, batches: int, batch_size: int):
    return subprocess.Popen([sys.executable, str(WRITER), str(path), collection, tag,
                             str(batches), str(batch_size)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _check_consistent(path: Path, collection: str, committed: list[str]) -> int:
    """Opens, every committed id is present, every present record is found by BM25 and by
    dense search, and SQLite's integrity check passes. Returns the record count."""
    db = sqlite3.connect(path / "memory.sqlite3")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    with Store.open(path, embedder=HashingEmbedder()) as store:
        coll = store.collection(collection)
        for rid in committed:
            assert coll.get(rid) is not None, f"committed record {rid} lost"
        rows = sqlite3.connect(path / "memory.sqlite3").execute(
            "SELECT r.id, r.text FROM records r JOIN collections c ON c.id = r.collection_id"
            " WHERE c.name = ?", (collection,)).fetchall()
        assert len(rows) == coll.count() >= len(committed)
        for rid, text in rows:
            unique_token = text.split()[1]
            bm25 = coll.search(unique_token, k=1, mode="bm25")
            dense = coll.search(text, k=1, mode="dense")
            assert bm25 and bm25[0].id == rid, f"{rid} not found by BM25"
            assert dense and dense[0].id == rid and dense[0].dense_score > 0.999
        return len(rows)


def test_sigkill_during_adds_loses_nothing_committed(tmp_path):
    path, committed = tmp_path / "mem", []
    unreported = 0  # committed by a killed writer before it could print the ids
    rng = random.Random(7)
    for round_ in range(4):
        proc = _writer(path, "log", f"k{round_}", -1, 40)
        for _ in range(3 + round_):  # let a few batches commit, then kill at a random moment
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            committed += json.loads(line)
        time.sleep(rng.uniform(0, 0.03))
        os.kill(proc.pid, signal.SIGKILL)
        # read through the same buffered reader as readline(): communicate() would read the
        # pipe underneath it and miss lines that readline() had already buffered
        out = proc.stdout.read()
        proc.wait()
        proc.stderr.close()
        proc.stdout.close()
        for line in out.splitlines():  # printed before the kill: committed too
            committed += json.loads(line)
        assert proc.returncode == -signal.SIGKILL
        n = _check_consistent(path, "log", committed)
        assert n % 40 == 0, "a partial batch is visible"
        assert n - len(committed) - unreported in (0, 40), "more than one in-flight batch?"
        unreported = n - len(committed)


def test_two_writer_processes_share_one_store(tmp_path):
    path = tmp_path / "mem"
    reader = Store.open(path, embedder=HashingEmbedder())
    coll = reader.collection("shared")
    assert coll.search("record", mode="bm25") == []          # indexes built while empty
    procs = [_writer(path, "shared", tag, 15, 20) for tag in ("a", "b")]
    committed = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        committed += [rid for line in out.splitlines() for rid in json.loads(line)]
    assert len(committed) == len(set(committed)) == 600
    # the long-lived reader catches up with both processes' writes before searching
    assert coll.count() == 600
    hits = coll.search("writer b batch 14", k=20, mode="bm25", filters={"writer": "b", "batch": 14})
    assert {h.metadata["item"] for h in hits} == set(range(20))
    assert {h.metadata["writer"] for h in coll.search("writer", k=50, mode="hybrid")} == {"a", "b"}
    reader.close()
    assert _check_consistent(path, "shared", committed) == 600
