"""Run records in SQLite: per run the workflow, config, thread id, status, timings and token usage,
and per node execution its timing and usage per role. `braid runs list|show` reads them."""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .usage import Usage, usage_by_role_dicts

__all__ = ["NodeRecord", "RunRecord", "RunRecords"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    thread_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, config TEXT NOT NULL, input TEXT NOT NULL,
    status TEXT NOT NULL, surface TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 1,
    host TEXT, pid INTEGER, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    elapsed_s REAL NOT NULL DEFAULT 0, usage TEXT NOT NULL DEFAULT '{}', usage_by_role TEXT NOT NULL DEFAULT '{}',
    output TEXT, error TEXT);
CREATE TABLE IF NOT EXISTS nodes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, thread_id TEXT NOT NULL, attempt INTEGER NOT NULL, node TEXT NOT NULL,
    task_id TEXT NOT NULL, started_at REAL NOT NULL, finished_at REAL, seconds REAL, status TEXT NOT NULL,
    usage TEXT NOT NULL DEFAULT '{}', error TEXT);
CREATE INDEX IF NOT EXISTS nodes_by_thread ON nodes (thread_id, id);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (created_at);
"""


@dataclass
class NodeRecord:
    attempt: int
    node: str
    task_id: str
    started_at: float
    finished_at: float | None
    seconds: float | None
    status: str
    usage: dict[str, Usage]
    error: str | None


@dataclass
class RunRecord:
    thread_id: str
    workflow: str
    config: dict[str, Any]
    input: dict[str, Any]
    status: str
    """running, finished, failed, cancelled; `interrupted` when its process is gone while running."""
    surface: str
    attempts: int
    created_at: float
    updated_at: float
    elapsed_s: float
    usage: Usage
    usage_by_role: dict[str, Usage]
    output: dict[str, Any] | None
    error: str | None
    nodes: list[NodeRecord]


def _usage_map(text: str) -> dict[str, Usage]:
    return {role: Usage.from_dict(value) for role, value in json.loads(text or "{}").items()}


def _dump_usage_map(usage: dict[str, Usage]) -> str:
    return json.dumps(usage_by_role_dicts(usage))


def _alive(host: str | None, pid: int | None) -> bool:
    if host != socket.gethostname() or not pid:
        return True  # another machine's run: trust its status
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunRecords:
    """One SQLite file (WAL) shared by every process on the machine; each write commits at once.

    One connection per instance, shared by threads under a lock: opening and closing one per write
    cost a WAL checkpoint at every close (~25 ms of each run).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._db:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    def _write(self, sql: str, args: tuple) -> int:
        with self._connect() as db, db:
            return db.execute(sql, args).lastrowid or 0

    def start_run(self, thread_id: str, workflow: str, config: dict[str, Any], inputs: dict[str, Any],
                  surface: str) -> int:
        """Records a new run, or a new attempt of an existing one (resume); returns the attempt number."""
        now = time.time()
        with self._connect() as db, db:
            row = db.execute("SELECT attempts FROM runs WHERE thread_id = ?", (thread_id,)).fetchone()
            if row is None:
                db.execute("INSERT INTO runs (thread_id, workflow, config, input, status, surface, host, pid, "
                           "created_at, updated_at) VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                           (thread_id, workflow, json.dumps(config), json.dumps(inputs), surface,
                            socket.gethostname(), os.getpid(), now, now))
                return 1
            db.execute("UPDATE runs SET attempts = attempts + 1, status = 'running', host = ?, pid = ?, "
                       "updated_at = ?, error = NULL WHERE thread_id = ?",
                       (socket.gethostname(), os.getpid(), now, thread_id))
            return row[0] + 1

    def node_started(self, thread_id: str, attempt: int, node: str, task_id: str) -> int:
        return self._write("INSERT INTO nodes (thread_id, attempt, node, task_id, started_at, status) "
                           "VALUES (?, ?, ?, ?, ?, 'running')", (thread_id, attempt, node, task_id, time.time()))

    def node_finished(self, row_id: int, seconds: float, usage: dict[str, Usage], error: str | None) -> None:
        self._write("UPDATE nodes SET finished_at = ?, seconds = ?, status = ?, usage = ?, error = ? WHERE id = ?",
                    (time.time(), seconds, "failed" if error else "finished", _dump_usage_map(usage), error, row_id))

    def node_restored(self, row_id: int) -> None:
        """A node LangGraph announced on resume but did not run: its writes came from the checkpoint."""
        self._write("UPDATE nodes SET finished_at = ?, seconds = 0, status = 'restored' WHERE id = ?",
                    (time.time(), row_id))

    def finish_run(self, thread_id: str, status: str, elapsed_s: float, usage: Usage, usage_by_role: dict[str, Usage],
                   output: dict[str, Any] | None, error: str | None) -> None:
        """`elapsed_s` and usage are this attempt's: they are added to earlier attempts'."""
        with self._connect() as db, db:
            row = db.execute("SELECT elapsed_s, usage, usage_by_role FROM runs WHERE thread_id = ?",
                             (thread_id,)).fetchone()
            total = Usage.from_dict(json.loads(row[1])).add(usage)
            roles = _usage_map(row[2])
            for role, value in usage_by_role.items():
                roles.setdefault(role, Usage()).add(value)
            db.execute("UPDATE runs SET status = ?, elapsed_s = ?, usage = ?, usage_by_role = ?, output = ?, "
                       "error = ?, updated_at = ? WHERE thread_id = ?",
                       (status, row[0] + elapsed_s, json.dumps(total.as_dict()), _dump_usage_map(roles),
                        json.dumps(output) if output is not None else None, error, time.time(), thread_id))
            db.execute("UPDATE nodes SET status = 'interrupted' WHERE thread_id = ? AND status = 'running'",
                       (thread_id,))

    def get(self, thread_id: str) -> RunRecord | None:
        with self._connect() as db:
            row = db.execute("SELECT thread_id, workflow, config, input, status, surface, attempts, host, pid, "
                             "created_at, updated_at, elapsed_s, usage, usage_by_role, output, error FROM runs "
                             "WHERE thread_id = ?", (thread_id,)).fetchone()
            if row is None:
                return None
            nodes = db.execute("SELECT attempt, node, task_id, started_at, finished_at, seconds, status, usage, error "
                               "FROM nodes WHERE thread_id = ? ORDER BY id", (thread_id,)).fetchall()
        return self._record(row, nodes)

    def list(self, limit: int = 50, workflow: str | None = None) -> list[RunRecord]:
        where, args = ("WHERE workflow = ?", (workflow,)) if workflow else ("", ())
        with self._connect() as db:
            rows = db.execute("SELECT thread_id, workflow, config, input, status, surface, attempts, host, pid, "
                              "created_at, updated_at, elapsed_s, usage, usage_by_role, output, error FROM runs "
                              f"{where} ORDER BY created_at DESC LIMIT ?", (*args, limit)).fetchall()
        return [self._record(row, []) for row in rows]

    @staticmethod
    def _record(row: tuple, nodes: list[tuple]) -> RunRecord:
        (thread_id, workflow, config, inputs, status, surface, attempts, host, pid, created, updated, elapsed, usage,
         by_role, output, error) = row
        if status == "running" and not _alive(host, pid):
            status = "interrupted"
        return RunRecord(thread_id, workflow, json.loads(config), json.loads(inputs), status, surface, attempts,
                         created, updated, elapsed, Usage.from_dict(json.loads(usage)), _usage_map(by_role),
                         json.loads(output) if output else None, error,
                         [NodeRecord(n[0], n[1], n[2], n[3], n[4], n[5],
                                     "interrupted" if n[6] == "running" and status == "interrupted" else n[6],
                                     _usage_map(n[7]), n[8]) for n in nodes])
