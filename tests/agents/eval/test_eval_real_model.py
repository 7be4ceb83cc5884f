"""`braid eval` on the example workflow against the real SmolLM2 server: the tokens it reports per item
add up to what the server itself counted, and correctness follows the calculator's exact result."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import httpx
import pytest

from arithmetic_reference import expected_result
from example_setup import example_config

pytestmark = pytest.mark.slow


def served_tokens(root_url: str) -> float:
    text = httpx.get(f"{root_url}/metrics", timeout=10).text
    return sum(float(v) for name in ("prompt_tokens", "generation_tokens")
               for v in re.findall(rf"^braid:{name}_total{{[^}}]*}} (\S+)$", text, re.M))


def test_eval_tokens_match_the_servers_count(smollm2_server, agents_home, tmp_path):
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{a}", "question": f"Use the calculator to compute {a} * 7.",
                                        "answer": str(a * 7)}) + "\n" for a in (6, 12)))
    config = tmp_path / "arm.json"
    config.write_text(json.dumps(example_config(smollm2_server.base_url)))
    out = tmp_path / "eval"
    before = served_tokens(smollm2_server.root_url)
    done = subprocess.run([sys.executable, "-m", "braid.clients.cli", "eval", "example", "--data", str(data),
                           "--arm", f"greedy={config}", "--out", str(out)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "BRAID_HOME": str(agents_home)})
    assert done.returncode == 0, done.stderr
    spent = served_tokens(smollm2_server.root_url) - before

    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == ["q12", "q6"] and all(r["status"] == "finished" for r in rows)
    assert sum(r["total_tokens"] for r in rows) == spent > 0
    for row in rows:
        assert row["prompt_tokens"] + row["completion_tokens"] == row["total_tokens"]
        assert 0 < row["model_s"] <= row["elapsed_s"]
    # Correct exactly when the calculator (or the answer) produced the expected number: recompute it from
    # the recorded tool call with Python's own arithmetic.
    from braid.agents.runtime.records import RunRecords

    records = RunRecords(agents_home / "agents" / "runs.sqlite")
    for row in rows:
        output = records.get(row["thread_id"]).output
        produced = [expected_result(call["arguments"].get("expression", "")) for call in output["tool_calls"]]
        if row["expected"] in produced:
            assert row["correct"]
        elif not re.search(rf"(?<![\w.]){row['expected']}(?![\w.])", output["answer"] + "".join(
                call["result"] for call in output["tool_calls"])):
            assert not row["correct"]
    assert (out / "report.md").read_text().count("| greedy |") >= 1
