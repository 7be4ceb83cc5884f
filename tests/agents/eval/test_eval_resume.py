"""Resumable evals, the way users run them: `braid eval` as a process, killed (SIGKILL) mid-way and
started again with the same command; every (arm, item) must end up in the results file exactly once,
with the values the workflow computes, and a torn last line (a kill mid-write) must be repaired."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from braid.agents.eval.results import read_results
from eval_workflows import FAILING, write_dataset

HERE = Path(__file__).parent
WRONG_EVERY = 3  # the `sloppy` arm


def _env(home: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "BRAID_HOME": str(home), "PYTHONPATH": path, "BRAID_AGENT_BASE_URL": "http://127.0.0.1:9/v1"}


def _command(data: Path, out: Path, arms: list[str], *extra: str) -> list[str]:
    return [sys.executable, "-m", "braid.clients.cli", "eval", "eval_workflows:SPEC", "--data", str(data),
            "--out", str(out), *[x for arm in arms for x in ("--arm", arm)], *extra]


def _complete_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _kill_after(command: list[str], env: dict[str, str], results: Path, lines: int) -> None:
    """Starts the eval and SIGKILLs it once `results` holds at least `lines` lines."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while _complete_lines(results) < lines:
            assert process.poll() is None, f"the eval ended before it could be stopped: {process.communicate()}"
            assert time.monotonic() < deadline, "the eval wrote too few results in 120 s"
            time.sleep(0.02)
        process.kill()
    finally:
        process.wait(timeout=60)
        process.stdout.close()
        process.stderr.close()


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _rows(results: Path) -> list[dict]:
    text = results.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]  # every line parses: no torn line is left


def _check_once_each(rows: list[dict], questions, arms: dict[str, int]) -> None:
    """Each (arm, item) exactly once, with the answer the workflow computes for that arm."""
    keys = [(row["arm"], row["id"]) for row in rows]
    expected_keys = {(arm, q.id) for arm in arms for q in questions} | {(arm, i) for arm in arms for i in FAILING}
    assert len(keys) == len(set(keys)), sorted(k for k in set(keys) if keys.count(k) > 1)
    assert set(keys) == expected_keys
    by_key = {(row["arm"], row["id"]): row for row in rows}
    for arm, wrong_every in arms.items():
        for q in questions:
            row = by_key[(arm, q.id)]
            assert row["status"] == "finished", row
            assert row["answer"] == str(q.answer(wrong_every))
            assert row["expected"] == q.answer()
            assert row["correct"] is (q.answer(wrong_every) == q.answer())
            assert (row["prompt_tokens"], row["completion_tokens"]) == (len(q.text.split()), len(row["answer"]))
            assert row["calls"] == 1 and row["thread_id"]
        for item in FAILING:
            row = by_key[(arm, item)]
            assert row["status"] == "failed" and row["correct"] is False and row["error"], row
    assert "no arithmetic" in by_key[(next(iter(arms)), "bad")]["error"]
    assert "empty input" in by_key[(next(iter(arms)), "empty")]["error"]


def test_killed_eval_restarts_and_has_each_item_exactly_once(tmp_path):
    data = tmp_path / "arith.jsonl"
    questions = write_dataset(data, 28)  # + 2 failing items = 30
    (tmp_path / "exact.yaml").write_text("delay_s: 0.1\n")
    (tmp_path / "sloppy.yaml").write_text(f"delay_s: 0.1\nwrong_every: {WRONG_EVERY}\n")
    out, env = tmp_path / "out", _env(tmp_path / "home")
    results = out / "results.jsonl"
    command = _command(data, out, [f"exact={tmp_path / 'exact.yaml'}", f"sloppy={tmp_path / 'sloppy.yaml'}"])

    _kill_after(command, env, results, 10)
    first = results.read_bytes()
    first = first[:first.rfind(b"\n") + 1]
    _kill_after(command, env, results, _complete_lines(results) + 15)
    assert len(first) < len(results.read_bytes())
    done = _run(command, env)

    final = results.read_bytes()
    assert final.startswith(first)  # lines written before a kill are kept as they were
    rows = _rows(results)
    _check_once_each(rows, questions, {"exact": 0, "sloppy": WRONG_EVERY})
    assert (out / "report.md").is_file() and (out / "accuracy.png").is_file()
    assert "exact: 28/30 correct" in done.stdout

    # Finished: the same command runs nothing and writes nothing.
    _run(command, env)
    assert results.read_bytes() == final

    # --retry-failed appends one new line per failed item and leaves the rest alone.
    _run([*command, "--retry-failed"], env)
    again = results.read_bytes()
    assert again.startswith(final)
    retried = [json.loads(line) for line in again[len(final):].splitlines()]
    assert sorted((r["arm"], r["id"]) for r in retried) == sorted((a, i) for a in ("exact", "sloppy") for i in FAILING)
    assert all(r["status"] == "failed" for r in retried)


def test_restart_repairs_a_torn_last_line(tmp_path):
    data = tmp_path / "arith.jsonl"
    questions = write_dataset(data, 18)
    out, env = tmp_path / "out", _env(tmp_path / "home")
    results = out / "results.jsonl"
    command = _command(data, out, [])  # one arm, `default`: the workflow's defaults (0.1 s per item)

    _kill_after(command, env, results, 5)
    kept = results.read_bytes()
    kept = kept[:kept.rfind(b"\n") + 1]
    # A kill in the middle of writing a line: half of a real line for an item not written yet.
    last = questions[-1]
    torn = json.dumps({"arm": "default", "id": last.id, "workflow": "arith", "status": "finished",
                       "correct": True, "answer": str(last.answer())}).encode()
    with results.open("ab") as f:
        f.truncate(len(kept))
        f.write(torn[:len(torn) // 2])

    # Readers ignore the torn line (and leave the file alone); the next eval repairs it.
    assert {key[1] for key in read_results(results)} == {row["id"] for row in map(json.loads, kept.splitlines())}
    assert not results.read_bytes().endswith(b"\n")
    done = _run(command, env)
    assert "torn last line" in done.stderr
    assert results.read_bytes().startswith(kept)
    _check_once_each(_rows(results), questions, {"default": 0})
