"""Serving benchmark: Braid on vLLM vs vLLM's own OpenAI server vs Braid on transformers.

Each server is started in turn on the same model and settings (one at a time: this machine
is small), then the same streaming /v1/completions requests are sent at each concurrency
level. Printed: output throughput, TTFT and inter-token latency percentiles, and the ratios
of each Braid server to vLLM's server measured in the same run. Written (``--out``, default
``serve``): benchmarks/results/OUT.md (the run header, the pooled table, each pass's throughput)
and OUT.json (the header and every request's TTFT and inter-token gaps per pass). A second table
gives the CPU time each of the server's processes spent per output token during the timed
requests (its API process, and vLLM's engine core and worker processes), which shows where a
difference in throughput on a small CPU comes from.

    .venv/bin/python benchmarks/serve.py --help
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from structured_common import RESULTS, RunInfo, free_port, server_cpu_by_process, thread_env, wait_healthy  # noqa: E402  (also puts tests/ on the path)

SERVERS = {"vllm": "vLLM OpenAI server", "braid-vllm": "Braid, vLLM engine",
           "braid-transformers": "Braid, transformers engine"}

PROMPT = ("The history of the printing press begins in the fifteenth century, when Johannes Gutenberg "
          "combined movable metal type, oil-based ink and a wooden screw press. Explain what changed for")


@dataclass
class Result:
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    tokens: int = 0
    wall: float = 0.0

    def add(self, other: "Result") -> None:
        self.ttft += other.ttft
        self.itl += other.itl
        self.tokens += other.tokens
        self.wall += other.wall


async def one_request(client: httpx.AsyncClient, url: str, model: str, max_tokens: int, result: Result) -> None:
    body = {"model": model, "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "ignore_eos": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    last = None
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            now = time.perf_counter()
            if chunk.get("choices") and chunk["choices"][0].get("text"):
                if last is None:
                    result.ttft.append(now - start)
                else:
                    result.itl.append(now - last)
                last = now
            if chunk.get("usage"):
                result.tokens += chunk["usage"]["completion_tokens"]


ROLES = {"server": "API process", "engine-core": "engine core", "vllm-worker": "worker", "other": "other"}


def cpu_spent(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per role between two ``server_cpu_by_process`` readings (a process new since
    ``before`` counts from zero)."""
    spent = dict.fromkeys(ROLES.values(), 0.0)
    for pid, (role, seconds) in after.items():
        spent[ROLES[role]] += seconds - before.get(pid, (role, 0.0))[1]
    return spent


async def run_level(base: str, model: str, concurrency: int, requests: int, max_tokens: int,
                    server_pid: int) -> tuple[Result, dict[str, float]]:
    result = Result()
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency + 4)) as client:
        async def guarded() -> None:
            async with semaphore:
                await one_request(client, f"{base}/v1/completions", model, max_tokens, result)

        await one_request(client, f"{base}/v1/completions", model, 4, Result())  # warm-up
        cpu_before = server_cpu_by_process(server_pid)
        start = time.perf_counter()
        await asyncio.gather(*(guarded() for _ in range(requests)))
        result.wall = time.perf_counter() - start
        cpu = cpu_spent(cpu_before, server_cpu_by_process(server_pid))
    return result, cpu


def server_command(kind: str, model_path: str, port: int, args, workdir: Path) -> list[str]:
    if kind == "vllm":
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path,
                "--served-model-name", "bench", "--port", str(port), "--host", "127.0.0.1", "--dtype", args.dtype,
                "--max-num-seqs", str(args.max_num_seqs), "--kv-cache-memory-bytes", str(args.kv_cache_bytes),
                "--disable-log-stats", "--uvicorn-log-level", "warning"]
    engine = "vllm" if kind == "braid-vllm" else "transformers"
    options = {"kv_cache_memory_bytes": args.kv_cache_bytes}
    config = workdir / f"{kind}.json"
    config.write_text(json.dumps({"host": "127.0.0.1", "port": port, "log_level": "warning", "max_queue": 1024,
                                  "models": [{"id": "bench", "source": model_path, "engine": engine,
                                              "dtype": args.dtype, "max_num_seqs": args.max_num_seqs,
                                              "engine_options": options}]}))
    return [sys.executable, "-m", "braid.clients.cli", "serve", "--config", str(config)]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="bundled name, folder or HF id")
    parser.add_argument("--servers", default="vllm,braid-vllm,braid-transformers",
                        help=f"comma list of: {', '.join(SERVERS)}")
    parser.add_argument("--concurrency", default="1,8,32", help="comma list of concurrency levels")
    parser.add_argument("--requests-per-level", type=int, default=0,
                        help="requests per level (default: max(4, 2 x concurrency))")
    parser.add_argument("--max-tokens", type=int, default=64, help="output tokens per request (ignore_eos)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--max-num-seqs", type=int, default=32)
    parser.add_argument("--kv-cache-bytes", type=int, default=1 << 30)
    parser.add_argument("--rounds", type=int, default=2,
                        help="passes over the servers, alternating their order (results are pooled)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads of the servers (OMP_NUM_THREADS; 0: torch's default)")
    parser.add_argument("--out", default="serve", help="results/OUT.md and results/OUT.json ('': print only)")
    args = parser.parse_args()
    if unknown := set(args.servers.split(",")) - set(SERVERS):
        parser.error(f"unknown servers {sorted(unknown)}; choose from {', '.join(SERVERS)}")
    info = RunInfo.start(args.threads)
    # A SIGTERM (e.g. a timeout) must still run the `finally` that stops the current server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from braid.server.models.config import Settings
    from braid.server.models.weights import resolve_source

    model_path = resolve_source(args.model, Settings().home)
    levels = [int(c) for c in args.concurrency.split(",")]
    kinds = args.servers.split(",")
    # Rounds alternate the server order (A B C, then C B A, ...) so that a drift in the machine's
    # load during the run weighs on every server alike.
    order = [k for r in range(args.rounds) for k in (kinds if r % 2 == 0 else kinds[::-1])]
    table: dict[tuple[str, int], Result] = {}
    passes: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for number, kind in enumerate(order):
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            log = open(Path(tmp) / f"{kind}.log", "w")
            process = subprocess.Popen(server_command(kind, model_path, port, args, Path(tmp)), stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       env={**os.environ, "VLLM_CACHE_ROOT": str(Path(tmp) / "vllm-cache"),
                                            **thread_env(args.threads)})
            try:
                wait_healthy(base, process, 600, Path(tmp) / f"{kind}.log", poll_s=1)
                for level in levels:
                    requests = args.requests_per_level or max(4, 2 * level)
                    r, cpu = asyncio.run(run_level(base, "bench", level, requests, args.max_tokens, process.pid))
                    print(f"  {kind:<20} c={level:<3} {r.tokens / r.wall:8.1f} tok/s", file=sys.stderr, flush=True)
                    table.setdefault((kind, level), Result()).add(r)
                    passes.append({"pass": number, "round": number // len(kinds), "server": kind,
                                   "concurrency": level, "requests": requests, "tokens": r.tokens, "wall_s": r.wall,
                                   "load1": os.getloadavg()[0], "cpu_s": cpu, "ttft_s": r.ttft, "itl_s": r.itl})
            finally:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=60)

    text = report(table, passes, args, info.finish(), kinds)
    print("\n" + text)
    if args.out:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{args.out}.md").write_text(text)
        (RESULTS / f"{args.out}.json").write_text(json.dumps({"run": info.as_dict(), "args": vars(args),
                                                              "passes": passes}) + "\n")
        print(f"written: {RESULTS / args.out}.md, .json")


def report(table: dict, passes: list[dict], args, info: RunInfo, kinds: list[str]) -> str:
    order = " / ".join(", ".join(SERVERS[k] for k in (kinds if r % 2 == 0 else kinds[::-1]))
                       for r in range(min(args.rounds, 2)))
    lines = [f"# Serving: streaming /v1/completions, {args.model} {args.dtype}", "",
             f"{args.max_tokens} output tokens per request (`ignore_eos`, greedy, fixed prompt), "
             f"max(4, 2 x concurrency) requests per level unless `--requests-per-level` "
             f"({args.requests_per_level or 'default'}), {args.rounds} rounds over the servers in alternating order "
             f"({order}{' / ...' if args.rounds > 2 else ''}), pooled: throughput = all output tokens / all wall time "
             f"of the level; percentiles over every request of every round. One server runs at a time.", "",
             *info.markdown(), "",
             "| server | concurrency | output tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | "
             "throughput / vLLM server |",
             "|---|---|---|---|---|---|---|---|"]
    for level in sorted({level for _, level in table}):
        for kind in kinds:
            r = table.get((kind, level))
            if r is None:
                continue
            base = table.get(("vllm", level))
            ratio = f"{(r.tokens / r.wall) / (base.tokens / base.wall):.3f}" if base else "n/a"
            lines.append(f"| {SERVERS[kind]} | {level} | {r.tokens / r.wall:.1f} | {pct(r.ttft, 50):.0f} | "
                         f"{pct(r.ttft, 99):.0f} | {pct(r.itl, 50):.1f} | {pct(r.itl, 99):.1f} | {ratio} |")
    lines += ["", "Each round's output tok/s (and the 1-minute load average when the level ended):", "",
              "| server | concurrency | " + " | ".join(f"round {r + 1}" for r in range(args.rounds)) + " |",
              "|---|---|" + "---|" * args.rounds]
    for level in sorted({p["concurrency"] for p in passes}):
        for kind in kinds:
            cells = [f"{p['tokens'] / p['wall_s']:.1f} ({p['load1']:.1f})" for p in passes
                     if p["server"] == kind and p["concurrency"] == level]
            if cells:
                lines.append(f"| {SERVERS[kind]} | {level} | " + " | ".join(cells) + " |")
    lines += ["", f"CPU time per output token (ms, all rounds pooled) of each of the server's processes during "
              f"the timed requests, and the CPU they kept busy (CPU seconds per wall second; "
              f"{psutil.cpu_count()} cores):", "",
              "| server | concurrency | " + " | ".join(ROLES.values()) + " | all | cores busy |",
              "|---|---|" + "---|" * (len(ROLES) + 2)]
    for level in sorted({p["concurrency"] for p in passes}):
        for kind in kinds:
            mine = [p for p in passes if p["server"] == kind and p["concurrency"] == level]
            tokens, wall = sum(p["tokens"] for p in mine), sum(p["wall_s"] for p in mine)
            if not tokens:
                continue
            spent = {role: sum(p["cpu_s"][role] for p in mine) for role in ROLES.values()}
            cells = [f"{1000 * spent[role] / tokens:.2f}" for role in ROLES.values()]
            total = sum(spent.values())
            lines.append(f"| {SERVERS[kind]} | {level} | " + " | ".join(cells)
                         + f" | {1000 * total / tokens:.2f} | {total / wall:.2f} |")
    return "\n".join(lines) + "\n"

if __name__ == "__main__":
    main()
