"""Xolver's control flow with scripted model replies (a real OpenAI-compatible test server whose replies
are chosen per request) and everything else real: the agents runtime, Braid's python sandbox MCP
server executing the agents' code, and Braid's memory MCP server on a store of the test's own.

Expected scores come from the judge's documented formula written out in `xolver_setup.expected_score`,
on printed results computed with Python's own `exec`; the expected store is the top m by that score."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
import pytest

from braid.agents import RuntimeSettings, load_workflow
from braid.agents.runtime.errors import ServiceUnreachable
from braid.agents.runtime.io import InputError
from braid.agents.runtime.runner import RunFailed
from braid.memory import HashingEmbedder, Store
from scripted_openai import MODEL, ChatRequest, Refusal, python_call, running_scripted
from xolver_setup import COLLECTION, exec_printed, expected_score, xolver_config

pytestmark = pytest.mark.timeout(180)

PROBLEM = "A baker bakes 6 trays of cookies with 7 cookies on each tray. How many cookies does the baker bake?"
ROLES = ["Arithmetic Expert", "Word Problem Analyst", "Careful Checker"]
PLAN = ("Specialized Roles:\n1. Arithmetic Expert: multiplies\n2. Word Problem Analyst: reads\n"
        "3. Careful Checker: checks\n4. Historian: irrelevant\n\nInfluential Roles:\n"
        + "\n".join(f"{i + 1}. {role}: focus" for i, role in enumerate(ROLES)))
RECALL = "Problem: A box holds 3 rows of 4 eggs. How many eggs?\nSolution: 3 * 4 = 12. \\boxed{12}"


@dataclass(frozen=True)
class Turn:
    """One agent's round: the code it runs, the number its answer turn states, whether the code computes."""

    code: str
    answer: str
    computes: bool = True

    @property
    def reply(self) -> str:
        return f"The code's result gives the answer. \\boxed{{{self.answer}}}"


def team_script(agents: int, turns: dict[tuple[int, int], Turn], *, judge=None, seed: int = 0):
    """Replies by request kind; an agent's turns (code call, then answer) by its (round, agent) from the seed."""

    def script(request: ChatRequest):
        kind = request.kind
        if kind == "planner":
            return PLAN
        if kind == "recall":
            return RECALL
        if kind in ("solver", "answer"):
            agent, round_ = request.agent_round(agents, seed)
            turn = turns[(round_, agent)]
            return python_call(turn.code) if kind == "solver" else turn.reply
        if kind == "judge" and judge is not None:
            return judge(request)
        if kind == "verifier":
            return "\\boxed{0}"
        raise AssertionError(f"unexpected {kind} request: {request.last_user[:300]}")

    return script


def expected_round(turns: dict[tuple[int, int], Turn], round_: int, agents: int) -> dict[tuple[int, int], float]:
    answers = {a: turns[(round_, a)].answer for a in range(agents)}
    out = {}
    for agent in range(agents):
        turn = turns[(round_, agent)]
        out[(round_, agent)] = expected_score(computes=turn.computes, executed=exec_printed(turn.code),
                                              answer=turn.answer,
                                              others=[answers[o] for o in range(agents) if o != agent])
    return out


def top_m(scores: dict[tuple[int, int], float], m: int) -> list[tuple[int, int]]:
    """The top m (round, agent) by score; among equal scores the newer round, then the lower agent index."""
    return sorted(scores, key=lambda key: (-scores[key], -key[0], key[1]))[:m]


def workflow_on(scripted, tmp_path, **overrides):
    config = xolver_config(scripted.url, tmp_path / "memory", model=MODEL, **overrides)
    return load_workflow("xolver", config, settings=RuntimeSettings(home=tmp_path / "home"))


async def run_xolver(scripted, tmp_path, problem: str = PROBLEM, **overrides):
    result = await workflow_on(scripted, tmp_path, **overrides).ainvoke(problem)
    assert result.status == "finished", result.error
    return result


def solver_rounds(scripted, agents: int) -> list[tuple[int, int]]:
    """(agent, round) of every code-turn request the server saw, sorted."""
    return sorted(request.agent_round(agents) for request in scripted.of_kind("solver"))


async def test_early_stop_when_every_agent_computes_the_agreed_answer(tmp_path):
    agents = 3
    turns = {(0, 0): Turn("print(6 * 7)", "42"), (0, 1): Turn("print(7 * 6)", "42"),
             (0, 2): Turn("cookies = sum([7] * 6)\nprint(cookies)", "42")}
    want = expected_round(turns, 0, agents)
    assert set(want.values()) == {1.0}  # the setup: every agent at the top score
    with running_scripted(team_script(agents, turns)) as scripted:
        result = await run_xolver(scripted, tmp_path, agents=agents, rounds=3)

    out = result.output
    assert out.stop_reason == "all agents reached the top score" and out.rounds == 1
    assert solver_rounds(scripted, agents) == [(a, 0) for a in range(agents)]  # no round-2 agent ran
    assert out.roles == ROLES
    assert out.final_answer == "42" and out.answer == "\\boxed{42}"
    assert sorted((r.agent, r.score) for r in out.store) == [(a, want[(0, a)]) for a in range(agents)]
    for response in out.store:
        assert response.executed == exec_printed(turns[(0, response.agent)].code) == "42"
        assert response.code == turns[(0, response.agent)].code and response.code_error is None

    solvers = scripted.of_kind("solver")
    for request in solvers:  # each agent's code turn: the required tool, its own seed and temperature
        agent, _ = request.agent_round(agents)
        assert request.tool_choice == "required" and request.tools == ["run_python"]
        assert request.temperature == 0.7
        assert request.messages[0]["role"] == "system" and f"You are a {ROLES[agent]}." in request.contents()[0]
    assert sorted(r.seed for r in scripted.of_kind("answer")) == [0, 1, 2]
    # an empty store: no exemplar, so each agent first recalled one, shown as an earlier turn
    assert out.exemplars == [] and len(scripted.of_kind("recall")) == agents
    assert all(RECALL in r.contents("assistant") for r in solvers)
    # verified (score 1.0 >= 0.85): written to the experience memory
    assert out.memory_id is not None
    assert 0 < result.model_wall_s <= result.elapsed_s


async def test_store_keeps_the_top_m_across_rounds(tmp_path):
    agents = 2
    turns = {(0, 0): Turn("print(6 * 7)", "42"), (0, 1): Turn("print(6 * 8)", "40"),
             (1, 0): Turn("x = 6 * 9\nprint(x)", "54"), (1, 1): Turn("print(54)", "54", computes=False),
             (2, 0): Turn("print(sum(range(10)))", "45"), (2, 1): Turn("print(1 / 0)", "44")}
    scores: dict[tuple[int, int], float] = {}
    stores = []
    for round_ in range(3):
        scores.update(expected_round(turns, round_, agents))
        stores.append(top_m(scores, agents))
    # the setup: no store is all at the top score (no early stop), and the final store mixes rounds
    assert all(any(scores[key] < 1.0 for key in store) for store in stores[:2])
    assert {key[0] for key in stores[-1]} == {1, 2}

    with running_scripted(team_script(agents, turns)) as scripted:
        result = await run_xolver(scripted, tmp_path, agents=agents, rounds=3)
    out = result.output
    assert out.rounds == 3 and out.stop_reason == "3 rounds done"
    assert [(r.round, r.agent) for r in out.store] == stores[-1]
    assert [r.score for r in out.store] == pytest.approx([scores[key] for key in stores[-1]])
    best = stores[-1][0]
    assert out.final_answer == turns[best].answer and (out.best.round, out.best.agent) == best
    assert solver_rounds(scripted, agents) == sorted((a, r) for r in range(3) for a in range(agents))

    # agents of round r > 0 revise against the store as it stood after round r - 1
    for request in scripted.of_kind("solver"):
        agent, round_ = request.agent_round(agents)
        if round_ == 0:
            assert "Your previous response was" not in request.last_user
            continue
        shown = [float(s) for s in re.findall(r"^Score: ([\d.]+) \(", request.last_user, re.M)]
        assert shown == pytest.approx([round(scores[key], 2) for key in stores[round_ - 1]])
        previous = turns[(round_ - 1, agent)]
        assert f"Your previous response was:\n```python\n{previous.code}\n```" in request.last_user


async def test_best_verified_answer_is_remembered_not_the_last_rounds(tmp_path):
    agents = 2
    turns = {(0, 0): Turn("print(6 * 7)", "42"), (0, 1): Turn("print(6 * 8)", "42"),
             (1, 0): Turn("print(5 * 5)", "25"), (1, 1): Turn("print(1 / 0)", "30")}
    scores = {**expected_round(turns, 0, agents), **expected_round(turns, 1, agents)}
    best = top_m(scores, agents)[0]
    assert best == (0, 0) and scores[best] >= 0.85 > max(scores[(1, 0)], scores[(1, 1)])
    assert any(scores[key] < 1.0 for key in top_m(expected_round(turns, 0, agents), agents))  # no early stop

    with running_scripted(team_script(agents, turns)) as scripted:
        result = await run_xolver(scripted, tmp_path, agents=agents, rounds=2)
    out = result.output
    assert out.rounds == 2 and out.final_answer == "42"
    last_round = [r for r in out.store if r.round == 1]
    assert last_round and last_round[0].answer == "25"  # the last round's best is worse, and not written

    with Store.open(tmp_path / "memory", embedder=HashingEmbedder()) as store:
        collection = store.collection(COLLECTION)
        assert collection.count() == 1
        record = collection.get(out.memory_id)
    assert record.text == PROBLEM
    meta = record.metadata
    assert (meta["final_answer"], meta["round"], meta["code"], meta["executed"]) == ("42", 0, "print(6 * 7)", "42")
    assert meta["score"] == pytest.approx(scores[best]) and record.score == pytest.approx(scores[best])
    assert meta["model"] == MODEL and "\\boxed{42}" in meta["solution"]


async def test_judge_reply_without_a_score_counts_zero_and_the_run_finishes(tmp_path):
    agents = 2
    turns = {(0, 0): Turn("print(6 * 7)", "42"), (0, 1): Turn("print(3 * 14)", "42")}
    execution = expected_round(turns, 0, agents)

    def judge(request: ChatRequest) -> str:
        return "Score: 1\nThe product is right." if "6 * 7" in request.last_user else "It looks plausible to me."

    with running_scripted(team_script(agents, turns, judge=judge)) as scripted:
        result = await run_xolver(scripted, tmp_path, agents=agents, rounds=1, llm_judge=True)
    out = result.output
    assert len(scripted.of_kind("judge")) == agents
    by_agent = {r.agent: r for r in out.store}
    assert by_agent[0].score == pytest.approx((execution[(0, 0)] + 1.0) / 2)
    assert by_agent[1].score == pytest.approx((execution[(0, 1)] + 0.0) / 2)
    assert "judge reply had no 'Score: 0/1'" in by_agent[1].feedback
    assert "judge reply had no" not in by_agent[0].feedback
    assert out.stop_reason == "1 rounds done" and out.final_answer == "42"


async def test_code_that_runs_forever_times_out_and_the_run_finishes(tmp_path):
    turns = {(0, 0): Turn("while True:\n    pass", "7")}
    assert expected_score(computes=True, executed=None, answer="7", others=[]) == 0.0
    with running_scripted(team_script(1, turns)) as scripted:
        started = time.monotonic()
        result = await run_xolver(scripted, tmp_path, agents=1, rounds=1, code_timeout_s=1)
        took = time.monotonic() - started
    (response,) = result.output.store
    assert response.code_error == "timed out" and response.executed is None
    assert response.score == 0.0 and "code failed: timed out" in response.feedback
    (answer_request,) = scripted.of_kind("answer")
    assert answer_request.last_user.startswith("The code printed: an error: timed out")
    assert result.output.memory_id is None  # not verified: nothing remembered
    assert took < 60


async def test_code_that_only_prints_a_literal_gets_no_execution_credit(tmp_path):
    agents = 2
    turns = {(0, 0): Turn("print(18)", "18", computes=False), (0, 1): Turn("print(3 * 6)", "18")}
    want = expected_round(turns, 0, agents)
    assert want[(0, 0)] == pytest.approx(0.3) and want[(0, 1)] == pytest.approx(1.0)
    with running_scripted(team_script(agents, turns)) as scripted:
        result = await run_xolver(scripted, tmp_path, agents=agents, rounds=1)
    by_agent = {r.agent: r for r in result.output.store}
    assert by_agent[0].executed == by_agent[1].executed == "18"
    assert by_agent[0].score == pytest.approx(want[(0, 0)]) and by_agent[1].score == pytest.approx(want[(0, 1)])
    assert "computes nothing" in by_agent[0].feedback
    assert result.output.best.agent == 1


async def test_token_budget_stops_before_the_next_round(tmp_path):
    turns = {(0, 0): Turn("print(6 * 8)", "40")}
    assert expected_score(computes=True, executed="48", answer="40", others=[]) < 1.0
    with running_scripted(team_script(1, turns)) as scripted:
        result = await run_xolver(scripted, tmp_path, agents=1, rounds=3, token_budget=1)
    out = result.output
    assert out.rounds == 1 and out.stop_reason.startswith("token budget spent")
    assert out.tokens > 0 and f"({out.tokens} >= 1)" in out.stop_reason
    assert solver_rounds(scripted, 1) == [(0, 0)]


SEEDED_PROBLEM = ("A baker bakes 5 trays of cookies with 8 cookies on each tray. "
                  "How many cookies does the baker bake?")


def seed_memory(path, text: str, **metadata) -> str:
    """A record written as the memory server writes it (hashing embedder, the server's default dim)."""
    with Store.open(path, embedder=HashingEmbedder()) as store:
        (record_id,) = store.collection(COLLECTION).add([{"text": text, "metadata": metadata}])
    return record_id


def cosine(a: str, b: str) -> float:
    x, y = HashingEmbedder().embed([a, b])
    return float(np.dot(x, y))


async def test_a_similar_solved_problem_is_shown_as_an_exemplar(tmp_path):
    seed_memory(tmp_path / "memory", SEEDED_PROBLEM, final_answer="40", solution="5 * 8 = 40 cookies.",
                code="print(5 * 8)")
    similarity = cosine(SEEDED_PROBLEM, PROBLEM)
    assert similarity >= 0.3  # the setup: above the default min_similarity
    turns = {(0, 0): Turn("print(6 * 7)", "42")}
    with running_scripted(team_script(1, turns)) as scripted:
        result = await run_xolver(scripted, tmp_path, agents=1, rounds=1)
    (exemplar,) = result.output.exemplars
    assert (exemplar.problem, exemplar.answer, exemplar.code) == (SEEDED_PROBLEM, "40", "print(5 * 8)")
    assert exemplar.similarity == pytest.approx(similarity, abs=1e-5)
    assert scripted.of_kind("recall") == []
    (solver,) = scripted.of_kind("solver")
    roles = [m["role"] for m in solver.messages]
    assert roles == ["system", "user", "assistant", "user"]
    _, shown_problem, shown_solution, asked = solver.contents()
    assert shown_problem == SEEDED_PROBLEM and asked == PROBLEM
    assert "```python\nprint(5 * 8)\n```" in shown_solution and "\\boxed{40}" in shown_solution


async def test_without_a_relevant_exemplar_each_agent_recalls_one(tmp_path):
    unrelated = "The capital of France is Paris, on the river Seine."
    seed_memory(tmp_path / "memory", unrelated, solution="Paris")
    assert cosine(unrelated, PROBLEM) < 0.99
    turns = {(0, 0): Turn("print(6 * 7)", "42"), (0, 1): Turn("print(7 * 6)", "42")}
    with running_scripted(team_script(2, turns)) as scripted:
        result = await run_xolver(scripted, tmp_path, agents=2, rounds=1, min_similarity=0.99)
    assert result.output.exemplars == []
    recalls = scripted.of_kind("recall")
    assert sorted(r.seed for r in recalls) == [0, 1] and all(PROBLEM in r.last_user for r in recalls)
    for solver in scripted.of_kind("solver"):
        assert "Recall a related problem and its solution." in solver.contents("user")
        assert RECALL in solver.contents("assistant") and unrelated not in json.dumps(solver.messages)


# Bad input on every surface: a clear error, never a crash or a hang.

def closed_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    return f"http://127.0.0.1:{port}/v1"


def never_called(request: ChatRequest):
    raise AssertionError(f"no model request expected, got {request.kind}")


async def test_bad_inputs_are_named_before_any_model_call(tmp_path):
    with running_scripted(never_called) as scripted:
        workflow = workflow_on(scripted, tmp_path)
        with pytest.raises(InputError, match="empty input"):
            await workflow.ainvoke("   \n ")
        with pytest.raises(InputError, match=r"at most 20000"):
            await workflow.ainvoke("What is 2 + 2? " * 1400)
        assert scripted.requests == []


async def test_unreachable_model_server_is_named_by_url(tmp_path):
    url = closed_url()
    workflow = load_workflow("xolver", xolver_config(url, tmp_path / "memory", model=MODEL),
                             settings=RuntimeSettings(home=tmp_path / "home"))
    with pytest.raises(ServiceUnreachable, match=re.escape(url)):
        await workflow.ainvoke(PROBLEM)


async def test_unreachable_python_tool_is_named_by_command(tmp_path):
    with running_scripted(never_called) as scripted:
        config = xolver_config(scripted.url, tmp_path / "memory", model=MODEL)
        config["tools"]["python"] = {"command": "/nonexistent"}
        workflow = load_workflow("xolver", config, settings=RuntimeSettings(home=tmp_path / "home"))
        with pytest.raises(ServiceUnreachable, match="MCP server 'python' at /nonexistent"):
            await workflow.ainvoke(PROBLEM)


CONTEXT_LIMIT = "This model's maximum context length is 2048 tokens. Please reduce the length of the prompt."
BEYOND_CONTEXT = "Add up these numbers: " + " + ".join(["7"] * 3000) + ". What is the sum?"


def context_script(request: ChatRequest):
    """An OpenAI server's refusal (as `braid serve` words it) of a prompt over the model's context."""
    return Refusal(400, CONTEXT_LIMIT) if sum(len(c) for c in request.contents()) > 8000 else PLAN


async def test_a_problem_beyond_the_models_context_fails_with_the_servers_reason(tmp_path):
    assert len(BEYOND_CONTEXT) < 20000  # within the workflow's own limit: the model server decides
    with running_scripted(context_script) as scripted:
        workflow = workflow_on(scripted, tmp_path)
        with pytest.raises(RunFailed, match="maximum context length is 2048 tokens"):
            await workflow.ainvoke(BEYOND_CONTEXT)
        assert [r.kind for r in scripted.requests] == ["planner"]  # failed at once, no retry loop


def braid_cli(*args: str, home, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "braid.clients.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "BRAID_HOME": str(home)}, timeout=timeout)


def test_cli_names_bad_input_and_what_is_not_reachable(tmp_path):
    home = tmp_path / "home"
    empty = braid_cli("run", "xolver", "   ", home=home)
    assert empty.returncode == 2 and "empty input" in empty.stderr and "Traceback" not in empty.stderr

    long_problem = tmp_path / "long.txt"
    long_problem.write_text("What is 2 + 2? " * 1400)
    too_long = braid_cli("run", "xolver", f"@{long_problem}", home=home)
    assert too_long.returncode == 2 and "at most 20000" in too_long.stderr

    url = closed_url()
    down = tmp_path / "down.json"
    down.write_text(json.dumps(xolver_config(url, tmp_path / "memory", model=MODEL)))
    unreachable = braid_cli("run", "xolver", PROBLEM, "--config", str(down), home=home)
    assert unreachable.returncode == 2, unreachable.stderr
    assert url in unreachable.stderr and "Traceback" not in unreachable.stderr

    with running_scripted(never_called) as scripted:
        config = xolver_config(scripted.url, tmp_path / "memory", model=MODEL)
        config["tools"]["python"] = {"command": "/nonexistent"}
        bad_tool = tmp_path / "bad-tool.json"
        bad_tool.write_text(json.dumps(config))
        missing = braid_cli("run", "xolver", PROBLEM, "--config", str(bad_tool), home=home)
    assert missing.returncode == 2, missing.stderr
    assert "MCP server 'python' at /nonexistent" in missing.stderr and "Traceback" not in missing.stderr


def test_cli_reports_a_run_that_fails_midway_without_a_traceback(tmp_path):
    with running_scripted(context_script) as scripted:
        config = tmp_path / "xolver.json"
        config.write_text(json.dumps(xolver_config(scripted.url, tmp_path / "memory", model=MODEL)))
        failed = braid_cli("run", "xolver", BEYOND_CONTEXT, "--config", str(config), home=tmp_path / "home")
    assert failed.returncode == 1
    assert "maximum context length is 2048 tokens" in failed.stderr and "Traceback" not in failed.stderr
    assert "--resume" not in failed.stderr  # the same request would be refused again
