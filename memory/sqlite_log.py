"""SQLite, the source of truth: records with their tokens and vectors, plus tombstones.

One file ``memory.sqlite3`` in WAL mode with ``synchronous=FULL``: every add or delete is one
``BEGIN IMMEDIATE`` transaction, fsynced at commit, so a killed process loses nothing that
was committed and leaves no half batch. Rowids come from AUTOINCREMENT inside serialised
write transactions, so a later commit always has larger rowids: "rowid > high-water mark"
finds every record another process committed since the last look; deletions are found
through the ``tombstones`` table's own sequence in the same way.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .records import NewRecord

__all__ = ["SqliteLog", "SCHEMA_VERSION", "DB_NAME"]

SCHEMA_VERSION = "1"
DB_NAME = "memory.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS collections (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL,
    embedder TEXT, dim INTEGER);
CREATE TABLE IF NOT EXISTS records (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id INTEGER NOT NULL REFERENCES collections(id),
    id TEXT NOT NULL, text TEXT NOT NULL, metadata TEXT NOT NULL, score REAL,
    labels TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    terms TEXT NOT NULL, vector BLOB NOT NULL,
    UNIQUE (collection_id, id));
CREATE TABLE IF NOT EXISTS tombstones (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, collection_id INTEGER NOT NULL,
    record_rowid INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS tombstones_by_collection ON tombstones (collection_id, seq);
"""
RECORD_COLUMNS = "id, text, metadata, score, labels, created_at, updated_at"


class SqliteLog:
    def __init__(self, directory: Path, busy_timeout_s: float = 60.0):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / DB_NAME
        self.conn = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                    check_same_thread=False)
        self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        self._retry_locked(lambda: self.conn.execute("PRAGMA journal_mode = WAL"))
        self.conn.execute("PRAGMA synchronous = FULL")
        with self.write():
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self.conn.execute(statement)
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                              (SCHEMA_VERSION,))

    @staticmethod
    def _retry_locked(fn, attempts: int = 50):
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or i == attempts - 1:
                    raise
                time.sleep(0.05)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction (takes the write lock up front, so no upgrade deadlock)."""
        self._retry_locked(lambda: self.conn.execute("BEGIN IMMEDIATE"))
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot across several SELECTs."""
        self.conn.execute("BEGIN")
        try:
            yield self.conn
        finally:
            self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    # -- meta and collections -------------------------------------------------------------
    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta_once(self, key: str, value: str) -> str:
        """Store ``value`` unless the key has one; return the stored value."""
        with self.write() as c:
            c.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, value))
            return c.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]

    def collection_id(self, name: str, create: bool) -> int | None:
        row = self.conn.execute("SELECT id FROM collections WHERE name = ?", (name,)).fetchone()
        if row or not create:
            return row[0] if row else None
        with self.write() as c:
            c.execute("INSERT OR IGNORE INTO collections (name, created_at) VALUES (?, ?)",
                      (name, time.time()))
            return c.execute("SELECT id FROM collections WHERE name = ?", (name,)).fetchone()[0]

    def collection_names(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT name FROM collections ORDER BY name")]

    def collection_embedder(self, cid: int) -> tuple[str | None, int | None]:
        return self.conn.execute("SELECT embedder, dim FROM collections WHERE id = ?",
                                 (cid,)).fetchone()

    # -- records --------------------------------------------------------------------------
    def insert(self, cid: int, records: Sequence[NewRecord], ids: Sequence[str],
               terms: Sequence[list[str]], vectors: np.ndarray, embedder: str) -> None:
        """Insert a batch in one transaction; an existing id is replaced (tombstoned)."""
        now = time.time()
        vec = np.ascontiguousarray(vectors, np.float32)
        with self.write() as c:
            name, dim = c.execute("SELECT embedder, dim FROM collections WHERE id = ?",
                                  (cid,)).fetchone()
            if name is None:
                c.execute("UPDATE collections SET embedder = ?, dim = ? WHERE id = ?",
                          (embedder, vec.shape[1], cid))
            elif (name, dim) != (embedder, vec.shape[1]):
                raise ValueError(f"this collection holds {name} vectors (dim {dim}); "
                                 f"got {embedder} (dim {vec.shape[1]})")
            self._tombstone(c, cid, "id IN (SELECT value FROM json_each(?))", [json.dumps(list(ids))])
            c.executemany(
                "INSERT INTO records (collection_id, id, text, metadata, score, labels,"
                " created_at, updated_at, terms, vector) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(cid, rid, r.text, json.dumps(r.metadata), r.score, json.dumps(r.labels),
                  r.created_at if r.created_at is not None else now, now, " ".join(t),
                  vec[i].tobytes()) for i, (r, rid, t) in enumerate(zip(records, ids, terms))])

    @staticmethod
    def _tombstone(c: sqlite3.Connection, cid: int, where: str, params: list) -> int:
        c.execute("INSERT INTO tombstones (collection_id, record_rowid) SELECT collection_id,"
                  f" rowid FROM records WHERE collection_id = ? AND {where}", [cid, *params])
        return c.execute(f"DELETE FROM records WHERE collection_id = ? AND {where}",
                         [cid, *params]).rowcount

    def delete(self, cid: int, ids: Sequence[str]) -> int:
        with self.write() as c:
            return self._tombstone(c, cid, "id IN (SELECT value FROM json_each(?))",
                                   [json.dumps(list(ids))])

    def count(self, cid: int) -> int:
        return self.conn.execute("SELECT count(*) FROM records WHERE collection_id = ?",
                                 (cid,)).fetchone()[0]

    def get(self, cid: int, record_id: str) -> tuple | None:
        return self.conn.execute(f"SELECT {RECORD_COLUMNS} FROM records WHERE collection_id = ?"
                                 " AND id = ?", (cid, record_id)).fetchone()

    def rows_by_rowid(self, rowids: Sequence[int]) -> dict[int, tuple]:
        rows = self.conn.execute(f"SELECT rowid, {RECORD_COLUMNS} FROM records WHERE rowid IN"
                                 " (SELECT value FROM json_each(?))", (json.dumps(list(rowids)),))
        return {r[0]: r[1:] for r in rows}

    def filtered_rowids(self, cid: int, where: str, params: list) -> np.ndarray:
        rows = self.conn.execute(f"SELECT rowid FROM records WHERE collection_id = ? AND {where}",
                                 [cid, *params]).fetchall()
        return np.fromiter((r[0] for r in rows), np.int64, len(rows))

    def changes_since(self, cid: int, max_rowid: int, max_tombstone: int, batch: int = 4096):
        """Yield ``("add", [(rowid, terms, vector_blob), ...])`` chunks of records newer than
        ``max_rowid`` then ``("delete", [(seq, rowid), ...])`` - from one snapshot."""
        with self.read() as c:
            cur = c.execute("SELECT rowid, terms, vector FROM records WHERE collection_id = ?"
                            " AND rowid > ? ORDER BY rowid", (cid, max_rowid))
            while chunk := cur.fetchmany(batch):
                yield "add", chunk
            tombs = c.execute("SELECT seq, record_rowid FROM tombstones WHERE collection_id = ?"
                              " AND seq > ? ORDER BY seq", (cid, max_tombstone)).fetchall()
            yield "delete", tombs
