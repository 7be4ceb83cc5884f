"""Xolver end to end on a real `braid serve` with the bundled SmolLM2, from the CLI: each agent's code
runs in Braid's python sandbox (checked against Python's own `exec`), the run record's nodes, model time
against the run's time, and the experience memory one process writes retrieved by the next process."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from braid.agents import RuntimeSettings
from braid.agents.runtime.records import RunRecords
from braid.memory import HashingEmbedder, Store
from example_setup import MODEL
from xolver_setup import COLLECTION, exec_printed_isolated, python_server

pytestmark = pytest.mark.slow

PROBLEM = "Tom has 3 boxes with 4 apples in each box. How many apples does Tom have?"
NEAR_PROBLEM = "Tom has 3 boxes with 4 apples in each box. How many apples does Tom have in total?"
NODES = ["plan", "retrieve", "solve", "solve", "judge", "verify", "remember"]


def xolver_cli(problem: str, config: dict, home, tmp_path, *extra: str, timeout: float = 420):
    path = tmp_path / f"xolver-{abs(hash(problem)) % 10**8}.json"
    path.write_text(json.dumps(config))
    return subprocess.run([sys.executable, "-m", "braid.clients.cli", "run", "xolver", problem, "--config", str(path),
                           "--json", *extra], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "BRAID_HOME": str(home)})


def e2e_config(base_url: str, max_tokens: int = 64, **overrides) -> dict:
    """Two agents, one round, no planner or self-recall turns, short replies: a bounded run on CPU (about
    2 minutes on 2 busy cores). The memory server is the default one, under ${BRAID_HOME} (expanded by the
    runtime)."""
    return {"roles": {"default": {"base_url": base_url, "model": MODEL, "max_tokens": max_tokens}},
            "tools": {"python": python_server(),
                      "memory": {"braid": "memory", "options": ["--store", "${BRAID_HOME}/agents/xolver-memory",
                                                                "--embedder", "hashing"]}},
            "agents": 2, "rounds": 1, "plan_roles": False, "self_retrieval": False, "write_memory": True,
            "verified_score": 0.0, **overrides}


def test_xolver_on_the_bundled_model_and_its_memory_in_the_next_process(smollm2_server, agents_home, tmp_path):
    first = xolver_cli(PROBLEM, e2e_config(smollm2_server.base_url), agents_home, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    shown = json.loads(first.stdout)
    out = shown["output"]
    assert shown["status"] == "finished" and out["rounds"] == 1 and out["problem"] == PROBLEM
    assert out["stop_reason"] in ("1 rounds done", "all agents reached the top score")
    assert out["exemplars"] == []  # a fresh store
    assert sorted(r["agent"] for r in out["store"]) == [0, 1] and all(r["round"] == 0 for r in out["store"])
    checked = 0
    for response in out["store"]:
        assert set(response) >= {"text", "answer", "code", "executed", "code_error", "score", "feedback"}
        assert 0.0 <= response["score"] <= 1.0 and response["feedback"]
        if not response["code"] or response["code_error"] is not None:
            continue  # no call, or its code failed or timed out: nothing printed to compare
        ok, printed = exec_printed_isolated(response["code"])
        if ok:
            assert response["executed"] == printed, response["code"]
            checked += 1
    print(f"responses checked against exec: {checked}/{len(out['store'])}")

    # time per problem: model time and the rest
    assert 0 < shown["model_wall_s"] <= shown["elapsed_s"]
    assert shown["other_s"] == pytest.approx(shown["elapsed_s"] - shown["model_wall_s"], abs=1e-6)
    assert shown["usage"]["calls"] >= 2 and shown["usage"]["total_tokens"] > 0

    record = RunRecords(RuntimeSettings(home=agents_home).records_path).get(shown["thread_id"])
    assert record.status == "finished" and record.surface == "cli"
    assert [n.node for n in record.nodes] == NODES
    assert all(n.status == "finished" for n in record.nodes)

    # verified_score 0: the best answer was written, under the runtime's BRAID_HOME
    assert out["final_answer"] is not None and out["memory_id"], out
    with Store.open(agents_home / "agents" / "xolver-memory", embedder=HashingEmbedder()) as store:
        written = store.collection(COLLECTION).get(out["memory_id"])
    assert written.text == PROBLEM and written.metadata["final_answer"] == out["final_answer"]

    # a new process, a near-identical problem: the first run's problem comes back as an exemplar (one
    # agent answering without code: one short model call, retrieval is what this run is for)
    second = xolver_cli(NEAR_PROBLEM, e2e_config(smollm2_server.base_url, max_tokens=32, agents=1, code="none",
                                                 write_memory=False), agents_home, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads(second.stdout)["output"]
    assert [e["problem"] for e in again["exemplars"]] == [PROBLEM]
    (exemplar,) = again["exemplars"]
    assert exemplar["similarity"] >= 0.3 and exemplar["answer"] == out["final_answer"]


def test_a_problem_beyond_the_models_context_is_a_clear_failure(smollm2_server, agents_home, tmp_path):
    """Within the workflow's 20,000 characters, but more tokens than the model's context: the server's
    400 names the limit, the CLI reports it (exit 1) without a traceback or a hang."""
    problem = "Add these: " + " ".join(str(i % 10) for i in range(9990)) + "."
    assert len(problem) < 20000
    counted = httpx.post(f"{smollm2_server.root_url}/tokenize", json={"model": MODEL, "prompt": problem},
                         timeout=60).json()
    if counted["count"] <= counted["max_model_len"]:
        pytest.skip(f"{MODEL}'s context ({counted['max_model_len']}) holds 20,000 characters")
    failed = xolver_cli(problem, e2e_config(smollm2_server.base_url, agents=1), agents_home, tmp_path, timeout=180)
    assert failed.returncode == 1
    assert "maximum context length" in failed.stderr and "Traceback" not in failed.stderr
