"""What the agents runtime costs beyond the model calls, per surface and per checkpointer.

One Braid server (the bundled SmolLM2, transformers engine, greedy) serves the model and the
`example` workflow as a model id; the calculator MCP server runs over streamable HTTP, so opening
its session is cheap and the same on every surface. The example workflow (model -> calculator ->
answer) then runs N times on each arm, arms interleaved round-robin so load drift hits all alike:

- python: `Workflow.ainvoke` in this (warm) process, SQLite checkpointer: the baseline;
- cli: `braid run example ... --json` as a new process: wall time with the interpreter's start and
  imports, and without them (the run's own time from its record plus the CLI's output);
- mcp: `call_tool("example")` on an open session with `braid mcp serve agents` (stdio);
- openai: `chat.completions.create(model="example")` with the official client;
- python-memory / python-postgres: the baseline with the in-memory / a real PostgreSQL checkpointer.

Per run, non-model time = wall time at the caller - model time (the run record's sum over its model
calls, measured around each call). A surface's overhead is the median of its non-model time minus
the baseline's. Checkpointing's cost is measured directly: the time inside the checkpointer's own
calls (put, put_writes, get_tuple) in the python arms, as a share of the non-model time. Goals (issue
13): each surface adds at most 50 ms per run; checkpointing at most 10% of non-model time.

    python benchmarks/agents_overhead.py --runs 10      # ~10 min on 2 cores
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from structured_common import RESULTS, RunInfo  # noqa: E402
from server_process import free_port, start_server, stop_server  # noqa: E402

QUESTION = "Use the calculator to compute 37 * 91."
MODEL = "smollm2"


def example_config(base_url: str, calculator_url: str) -> dict:
    return {"roles": {"assistant": {"base_url": base_url, "model": MODEL, "max_tokens": 96}},
            "answer_max_tokens": 16, "tools": {"calculator": {"url": calculator_url}}}


def start_calculator(workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "braid.tools", "serve", "calculator", "--transport", "http",
                                "--port", str(port)], stdout=(workdir / "calculator.log").open("w"),
                               stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("the calculator MCP server did not start")


class CheckpointTimer:
    """Seconds spent inside the checkpointers' own calls (put, put_writes, get_tuple), measured around
    each call in this process: checkpointing's cost directly, not as a difference of noisy medians."""

    METHODS = ("aput", "aput_writes", "aget_tuple")

    def __init__(self) -> None:
        self.seconds = 0.0
        from langgraph.checkpoint.memory import InMemorySaver
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        for cls in (AsyncSqliteSaver, AsyncPostgresSaver, InMemorySaver):
            for name in self.METHODS:
                setattr(cls, name, self._timed(getattr(cls, name)))

    def _timed(self, method):
        async def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
        return timed


def latest_record(home: Path):
    from braid.agents.runtime.records import RunRecords

    (record,) = RunRecords(home / "agents" / "runs.sqlite").list(limit=1)
    return record


class Arms:
    def __init__(self, home: Path, config_path: Path, config: dict, server_url: str, postgres_url: str | None):
        self.home, self.config_path, self.config = home, config_path, config
        self.server_url, self.postgres_url = server_url, postgres_url
        self.session = None
        self.timer = CheckpointTimer()
        self.checkpoint_s: dict[str, list[float]] = {}

    async def python(self, checkpointer: str | None = None, arm: str = "python") -> tuple[float, float]:
        from braid.agents import RuntimeSettings, load_workflow

        workflow = load_workflow("example", self.config,
                                 settings=RuntimeSettings(home=self.home, checkpointer=checkpointer))
        before = self.timer.seconds
        t0 = time.perf_counter()
        result = await workflow.ainvoke(QUESTION)
        wall = time.perf_counter() - t0
        self.checkpoint_s.setdefault(arm, []).append(self.timer.seconds - before)
        return wall, result.usage.model_s

    async def python_memory(self) -> tuple[float, float]:
        return await self.python("memory", "python-memory")

    async def python_postgres(self) -> tuple[float, float]:
        return await self.python(self.postgres_url, "python-postgres")

    async def cli(self) -> tuple[float, float]:
        t0 = time.perf_counter()
        done = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "braid.clients.cli", "run", "example", QUESTION, "--config", str(self.config_path),
            "--json", "--quiet", env={**os.environ, "BRAID_HOME": str(self.home)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await done.communicate()
        wall = time.perf_counter() - t0
        if done.returncode:
            raise RuntimeError(err.decode()[-2000:])
        return wall, json.loads(out)["model_s"]

    async def mcp(self) -> tuple[float, float]:
        t0 = time.perf_counter()
        result = await self.session.call_tool("example", {"text": QUESTION})
        wall = time.perf_counter() - t0
        if result.isError:
            raise RuntimeError(str(result.content))
        return wall, latest_record(self.home).usage.model_s

    async def openai(self) -> tuple[float, float]:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=self.server_url, api_key="none", max_retries=0, timeout=600)
        t0 = time.perf_counter()
        out = await client.chat.completions.create(model="example", messages=[{"role": "user", "content": QUESTION}])
        wall = time.perf_counter() - t0
        return wall, out.model_extra["braid_run"]["model_s"]


def cli_import_seconds() -> float:
    """The CLI process's fixed cost: start the interpreter and import `braid run`'s modules."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "braid.clients.cli", "runs", "workflows"], check=True, capture_output=True)
    return time.perf_counter() - t0


async def measure(arms: Arms, names: list[str], runs: int, warmup: int) -> dict[str, list[tuple[float, float]]]:
    from braid.clients.mcp_client import braid_server_command, connect_stdio

    command, args = braid_server_command("agents", "--workflow-config", f"example={arms.config_path}")
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    async with connect_stdio(command, args, env={"BRAID_HOME": str(arms.home)}) as session:
        arms.session = session
        for index in range(warmup + runs):
            for name in names:
                wall, model_s = await getattr(arms, name.replace("-", "_"))()
                if index >= warmup:
                    samples[name].append((wall, model_s))
                print(f"[{index + 1}/{warmup + runs}] {name:16} wall {wall:6.2f} s  model {model_s:6.2f} s  "
                      f"other {1000 * (wall - model_s):7.1f} ms{'  (warm-up)' if index < warmup else ''}",
                      flush=True)
    return samples


def report(samples: dict[str, list[tuple[float, float]]], import_s: float, info: RunInfo, runs: int,
           checkpoint_s: dict[str, list[float]]) -> str:
    other = {name: [w - m for w, m in values] for name, values in samples.items()}
    base = statistics.median(other["python"])
    lines = [f"# Agents runtime overhead (example workflow, SmolLM2-135M, {runs} runs per arm)", "",
             *info.markdown(), "",
             "| arm | median wall s | median model s | median non-model ms | IQR non-model ms | "
             "overhead vs python ms |", "|---|---:|---:|---:|---:|---:|"]
    for name, values in samples.items():
        q = statistics.quantiles(other[name], n=4) if len(other[name]) > 1 else [other[name][0]] * 3
        lines.append(f"| {name} | {statistics.median(w for w, _ in values):.2f} | "
                     f"{statistics.median(m for _, m in values):.2f} | {1000 * statistics.median(other[name]):.1f} | "
                     f"{1000 * q[0]:.1f}-{1000 * q[2]:.1f} | {1000 * (statistics.median(other[name]) - base):+.1f} |")
    lines += ["", f"CLI process start and imports (`braid runs workflows`, median of 5): {1000 * import_s:.0f} ms; "
              f"cli overhead without it: "
              f"{1000 * (statistics.median(other['cli']) - import_s - base):+.1f} ms." if "cli" in other else ""]
    lines += ["", "Checkpointing, measured around the checkpointer's own calls (put, put_writes, get_tuple) in "
              "the python arms, per run (median), and as a share of that arm's median non-model time:", "",
              "| checkpointer | ms per run | share of non-model time |", "|---|---:|---:|"]
    for arm, label in (("python", "SQLite (default)"), ("python-postgres", "PostgreSQL"),
                       ("python-memory", "in memory")):
        if checkpoint_s.get(arm):
            spent = statistics.median(checkpoint_s[arm][-runs:])
            lines.append(f"| {label} | {1000 * spent:.1f} | {100 * spent / statistics.median(other[arm]):.1f}% |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="Measured runs per arm.")
    parser.add_argument("--warmup", type=int, default=1, help="Unmeasured runs per arm first.")
    parser.add_argument("--arms", default="python,python-memory,python-postgres,cli,mcp,openai",
                        help="Comma-separated arms (python is the baseline and always runs).")
    parser.add_argument("--out", type=Path, default=RESULTS / "agents_overhead.md")
    args = parser.parse_args()
    names = ["python", *[a for a in args.arms.split(",") if a and a != "python"]]
    info = RunInfo.start(threads=0)
    with tempfile.TemporaryDirectory(prefix="braid-agents-bench-") as tmp:
        workdir = Path(tmp)
        home = workdir / "agents-home"
        postgres = None
        if "python-postgres" in names:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "agents"))
            from postgres_server import postgres_bin, start_postgres

            if postgres_bin() is None:
                names.remove("python-postgres")
            else:
                postgres = start_postgres()
        calculator, calculator_url = start_calculator(workdir)
        from braid.server.models.config import Settings

        server = start_server({"home": str(Settings().home), "agents_home": str(home), "log_level": "warning",
                               "models": [{"id": MODEL, "source": "smollm2-135m-instruct", "engine": "transformers",
                                           "dtype": "float32"}],
                               "workflows": [{"id": "example", "config": {  # roles default to this server
                                   "roles": {"assistant": {"model": MODEL, "max_tokens": 96}},
                                   "answer_max_tokens": 16, "tools": {"calculator": {"url": calculator_url}}}}]},
                              workdir, timeout=600)
        try:
            config = example_config(server.base_url, calculator_url)
            config_path = workdir / "example.json"
            config_path.write_text(json.dumps(config))
            arms = Arms(home, config_path, config, server.base_url, postgres.url if postgres else None)
            samples = asyncio.run(measure(arms, names, args.runs, args.warmup))
            checkpoint_s = arms.checkpoint_s
            import_s = statistics.median(cli_import_seconds() for _ in range(5)) if "cli" in names else 0.0
        finally:
            stop_server(server)
            calculator.kill()
            if postgres:
                postgres.stop()
    text = report(samples, import_s, info.finish(), args.runs, checkpoint_s)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps({"run": info.as_dict(), "samples": samples,
                                                         "checkpoint_s": checkpoint_s, "cli_import_s": import_s},
                                                        indent=1))
    print(text)


if __name__ == "__main__":
    main()
