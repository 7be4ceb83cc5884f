"""The official LangGraph checkpointers behind one setting: SQLite (default, under BRAID_HOME),
Postgres (`postgres://...`: shared by several worker machines) or in memory."""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

__all__ = ["open_checkpointer"]


@asynccontextmanager
async def open_checkpointer(url: str) -> AsyncIterator[BaseCheckpointSaver]:
    if url == "memory":
        yield InMemorySaver()
        return
    if url.startswith(("postgres://", "postgresql://")):
        try:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        except ImportError:
            raise RuntimeError("a postgres:// checkpointer needs `pip install 'braid[postgres]'` "
                               "(langgraph-checkpoint-postgres, psycopg)") from None
        async with AsyncPostgresSaver.from_conn_string(url) as saver:
            await saver.setup()
            yield saver
        return
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path = Path(url.removeprefix("sqlite:///").removeprefix("sqlite://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(str(path)) as conn:
        # WAL with synchronous=NORMAL: a commit survives the process being killed (it is in the WAL) but
        # is not fsynced each step; FULL's fsync per checkpoint cost ~40% of a run's non-model time.
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        yield AsyncSqliteSaver(conn)
