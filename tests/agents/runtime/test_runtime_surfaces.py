"""The example workflow (model -> MCP calculator -> answer) on a real Braid server with the bundled
SmolLM2, run from Python and from the CLI: the tool's result against Python's own arithmetic, the
run's token usage against the server's own counters, the run record's nodes, and the same final
answer from both surfaces (greedy decoding)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import httpx
import pytest

from arithmetic_reference import expected_result
from braid.agents import RuntimeSettings, load_workflow
from braid.agents.runtime.events import NodeFinished, NodeStarted, RunFinished, RunStarted
from braid.agents.runtime.records import RunRecords
from braid.agents.runtime.usage import Usage
from example_setup import QUESTION, example_config

pytestmark = pytest.mark.slow

NODES = ["call_tool", "run_tools", "answer"]


def served_tokens(root_url: str) -> tuple[float, float]:
    """(prompt, generation) token counters the server itself exports."""
    text = httpx.get(f"{root_url}/metrics", timeout=10).text

    def counter(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^braid:{name}_total{{[^}}]*}} (\S+)$", text, re.M))

    return counter("prompt_tokens"), counter("generation_tokens")


def braid_cli(*args: str, env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "braid.clients.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=timeout)


async def test_python_and_cli_runs_agree_and_account_for_every_token(smollm2_server, agents_home, tmp_path):
    settings = RuntimeSettings(home=agents_home)
    workflow = load_workflow("example", example_config(smollm2_server.base_url), settings=settings)
    prompt_before, generated_before = served_tokens(smollm2_server.root_url)
    events = [event async for event in workflow.astream(QUESTION)]
    prompt_after, generated_after = served_tokens(smollm2_server.root_url)

    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    steps = [(type(e).__name__, e.node) for e in events if isinstance(e, (NodeStarted, NodeFinished))]
    assert steps == [(kind, node) for node in NODES for kind in ("NodeStarted", "NodeFinished")]
    result = events[-1].result
    assert result.status == "finished"

    (call,) = result.output.tool_calls
    assert call.name == "calculate"
    want = expected_result(call.arguments["expression"])
    if want is not None:
        assert call.ok and json.loads(call.result)["result"] == want
    else:
        assert not call.ok or "result" in json.loads(call.result)

    # Every token the server counted is in the run's usage, and nothing else.
    assert result.usage.prompt_tokens == prompt_after - prompt_before > 0
    assert result.usage.completion_tokens == generated_after - generated_before > 0
    assert result.usage.calls == 2

    record = RunRecords(settings.records_path).get(result.thread_id)
    assert record.status == "finished" and record.surface == "python"
    assert [(n.node, n.status, n.attempt) for n in record.nodes] == [(n, "finished", 1) for n in NODES]
    per_node = [n.usage for n in record.nodes]
    assert per_node[1] == {}
    total = Usage()
    for usage in per_node:
        for role, value in usage.items():
            assert role == "assistant"
            total.add(value)
    assert (total.prompt_tokens, total.completion_tokens) == (result.usage.prompt_tokens,
                                                              result.usage.completion_tokens)
    assert record.output["answer"] == result.output.answer

    config = tmp_path / "example.yaml"
    config.write_text(json.dumps(example_config(smollm2_server.base_url)))
    cli = braid_cli("run", "example", QUESTION, "--config", str(config), "--json", env={"BRAID_HOME": str(agents_home)})
    assert cli.returncode == 0, cli.stderr
    shown = json.loads(cli.stdout)
    assert shown["output"]["answer"] == result.output.answer
    assert shown["output"]["tool_calls"] == json.loads(result.output.model_dump_json())["tool_calls"]
    assert shown["usage"]["prompt_tokens"] == result.usage.prompt_tokens
    for node in NODES:  # live progress, one line per node
        assert re.search(rf"\] {node} done in [\d.]+ s", cli.stderr), cli.stderr

    listed = braid_cli("runs", "list", "--json", env={"BRAID_HOME": str(agents_home)})
    threads = [json.loads(line)["thread_id"] for line in listed.stdout.splitlines()]
    assert threads == [shown["thread_id"], result.thread_id]
    detail = braid_cli("runs", "show", result.thread_id, env={"BRAID_HOME": str(agents_home)})
    assert detail.returncode == 0 and all(node in detail.stdout for node in NODES)
    assert f"{result.usage.total_tokens} tokens" in detail.stdout


def test_cli_names_what_is_not_reachable(smollm2_server, agents_home, tmp_path):
    env = {"BRAID_HOME": str(agents_home)}
    closed = "http://127.0.0.1:9/v1"
    down = braid_cli("run", "example", QUESTION, "--set", f"roles.assistant.base_url={closed}", env=env)
    assert down.returncode == 2
    assert closed in down.stderr and "braid serve" in down.stderr and "Traceback" not in down.stderr

    config = tmp_path / "bad-tool.json"
    config.write_text(json.dumps(example_config(smollm2_server.base_url,
                                                tools={"calculator": {"command": "/nonexistent/mcp-server"}})))
    missing = braid_cli("run", "example", QUESTION, "--config", str(config), env=env)
    assert missing.returncode == 2
    assert "MCP server 'calculator'" in missing.stderr and "/nonexistent/mcp-server" in missing.stderr

    empty = braid_cli("run", "example", "   ", env=env)
    assert empty.returncode == 2 and "empty input" in empty.stderr
    unknown = braid_cli("run", "no-such-workflow", "x", env=env)
    assert unknown.returncode == 2 and "unknown workflow 'no-such-workflow'" in unknown.stderr


def test_invoke_twice_in_one_process(smollm2_server, agents_home):
    """Each `invoke` runs its own event loop; the second must not reuse the first's connections."""
    workflow = load_workflow("example", example_config(smollm2_server.base_url, answer_max_tokens=4),
                             settings=RuntimeSettings(home=agents_home))
    first, second = workflow.invoke(QUESTION), workflow.invoke(QUESTION)
    assert first.status == second.status == "finished" and first.thread_id != second.thread_id
    assert first.output == second.output  # greedy decoding


async def test_a_role_decodes_with_braids_contrastive_methods(smollm2_server, agents_home):
    """A role's `extra_body` reaches Braid's decoding: ICD with alpha 0 is plain decoding (same output)
    but the server also runs and counts the negative branch's prompt (each call's usage grows)."""
    settings = RuntimeSettings(home=agents_home)
    plain = await load_workflow("example", example_config(smollm2_server.base_url, answer_max_tokens=4),
                                settings=settings).ainvoke(QUESTION)
    icd_config = example_config(smollm2_server.base_url, answer_max_tokens=4)
    icd_config["roles"]["assistant"]["extra_body"] = {"contrastive": {"method": "icd", "alpha": 0.0}}
    icd = await load_workflow("example", icd_config, settings=settings).ainvoke(QUESTION)
    assert icd.output == plain.output
    assert icd.usage.completion_tokens == plain.usage.completion_tokens
    assert icd.usage.prompt_tokens > plain.usage.prompt_tokens + 2 * 10  # a negative prompt per call
