"""Durable runs: a `braid run` killed with SIGKILL mid-way continues from its last checkpoint with
`--resume`; nodes that finished are not run again (asserted with the run record). With the SQLite
checkpointer on one machine, and with a real PostgreSQL shared by two "workers" (two BRAID_HOMEs):
the second resumes what the first started."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from braid.agents.runtime.records import RunRecords
from example_setup import QUESTION, example_config
from postgres_server import postgres_bin, start_postgres

pytestmark = pytest.mark.slow


def run_until_answer_starts(config: Path, home: Path, thread: str, env: dict) -> None:
    """Starts `braid run` and SIGKILLs it once the record shows the `answer` node running."""
    records = RunRecords(home / "agents" / "runs.sqlite")
    process = subprocess.Popen([sys.executable, "-m", "braid.clients.cli", "run", "example", QUESTION,
                                "--config", str(config), "--thread", thread, "--quiet"],
                               env={**os.environ, **env, "BRAID_HOME": str(home)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            record = records.get(thread)
            if record and any(n.node == "answer" for n in record.nodes):
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return
            if process.poll() is not None:
                pytest.fail(f"the run ended before it could be killed: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.02)
        pytest.fail("the run never reached its answer node")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def resume(home: Path, thread: str, env: dict, *options: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "braid.clients.cli", "run", "example", "--thread", thread,
                           "--resume", "--json", *options], capture_output=True, text=True, timeout=240,
                          env={**os.environ, **env, "BRAID_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def node_runs(home: Path, thread: str) -> list[tuple[int, str, str]]:
    return [(n.attempt, n.node, n.status) for n in RunRecords(home / "agents" / "runs.sqlite").get(thread).nodes]


@pytest.fixture
def long_answer_config(smollm2_server, tmp_path) -> Path:
    """A longer answer, so the kill lands while it is generated."""
    path = tmp_path / "example.json"
    path.write_text(json.dumps(example_config(smollm2_server.base_url, answer_max_tokens=96)))
    return path


def test_killed_run_resumes_from_its_last_checkpoint(long_answer_config, tmp_path):
    home, thread = tmp_path / "home", uuid.uuid4().hex
    run_until_answer_starts(long_answer_config, home, thread, {})
    killed = RunRecords(home / "agents" / "runs.sqlite").get(thread)
    assert killed.status == "interrupted"  # its process is gone
    assert node_runs(home, thread) == [(1, "call_tool", "finished"), (1, "run_tools", "finished"),
                                       (1, "answer", "interrupted")]

    result = resume(home, thread, {})
    assert result["status"] == "finished" and result["output"]["answer"]
    assert node_runs(home, thread) == [(1, "call_tool", "finished"), (1, "run_tools", "finished"),
                                       (1, "answer", "interrupted"), (2, "answer", "finished")]
    record = RunRecords(home / "agents" / "runs.sqlite").get(thread)
    assert record.attempts == 2 and record.status == "finished"
    # The tool call made before the kill is the one in the output: it came from the checkpoint.
    (call,) = result["output"]["tool_calls"]
    assert record.output["tool_calls"] == [call]

    again = resume(home, thread, {})  # a finished run answers from its record, running nothing
    assert again["output"] == result["output"]
    assert len(node_runs(home, thread)) == 4


@pytest.fixture(scope="module")
def postgres():
    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed here (Debian: apt-get install postgresql); .ci/run installs it")
    server = start_postgres()
    yield server
    server.stop()


def test_postgres_lets_another_worker_resume_a_run(long_answer_config, postgres, tmp_path):
    shared = {"BRAID_CHECKPOINTER": postgres.url}
    first, second, thread = tmp_path / "worker-a", tmp_path / "worker-b", uuid.uuid4().hex
    run_until_answer_starts(long_answer_config, first, thread, shared)
    assert [node for _, node, status in node_runs(first, thread) if status == "finished"] == ["call_tool",
                                                                                                "run_tools"]
    # The second worker has no record of the run, only its own config and the shared checkpoints.
    result = resume(second, thread, shared, "--config", str(long_answer_config))
    assert result["status"] == "finished" and result["output"]["answer"]
    # The second worker ran only what was left; the tool call came through Postgres.
    assert node_runs(second, thread) == [(1, "answer", "finished")]
    assert len(result["output"]["tool_calls"]) == 1
