"""Decoding-method benchmark: time per generated token of ICD, ASCD and span steering vs plain.

For each engine (one ``braid serve`` at a time, SmolLM2-135M-Instruct by default, float32), the
same streaming chat request (a ~90-token story prompt with a marked span, ``ignore_eos`` so every
request makes exactly ``--max-tokens`` tokens) is sent under each method at each concurrency
level. Methods and levels are interleaved over ``--rounds`` rounds so that load from other
processes on the machine hits all of them alike; the median over rounds is reported.

Measured per request from the stream: decode time per token = (last token - first token) /
(tokens - 1), and time to first token; per wave: output throughput and the server's CPU time
(all its processes, user + system) per output token, which other processes on a shared machine
disturb much less than wall time. Printed: all of them and each method's ratio to plain decoding
on the same engine at the same concurrency (the issue's goal: contrastive decoding at most 1.5x
plain per token). A method an engine cannot run (400) is listed as such.

    .venv/bin/python benchmarks/contrastive.py --help
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from server_process import start_server, stop_server  # noqa: E402
from structured_common import RunInfo, server_cpu  # noqa: E402

STATEMENT = "the capital of France is Tokyo"
USER = (f"In this story, {STATEMENT}. The travellers arrived early in the morning, walked through the busy "
        "markets, talked with the people they met and wrote long notes about everything they saw. Later that "
        "week they visited a small museum. Question: What is the capital of France? Explain at length.")
SPAN = [USER.index(STATEMENT), USER.index(STATEMENT) + len(STATEMENT)]
STEER = {"spans": [SPAN], "heads": "auto"}
METHODS = {
    "plain": {},
    "icd": {"contrastive": {"method": "icd"}},
    "ascd": {"contrastive": {"method": "ascd", "steer": STEER}},
    "steer": {"steer": STEER},
}


@dataclass
class Sample:
    per_token: list[float] = field(default_factory=list)  # seconds, one per request
    ttft: list[float] = field(default_factory=list)
    throughput: list[float] = field(default_factory=list)  # output tok/s, one per wave
    cpu_per_token: list[float] = field(default_factory=list)  # server CPU seconds / output token, one per wave


async def one_request(client: httpx.AsyncClient, body: dict) -> tuple[float, float, int]:
    """(time to first token, decode seconds per token, tokens) of one streaming request."""
    start, first, last, tokens = time.perf_counter(), None, None, 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {(await response.aread()).decode()[:300]}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(f"stream error: {chunk['error']}")
            if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                last = time.perf_counter()
                first = first or last
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return first - start, (last - first) / max(body["max_tokens"] - 1, 1), tokens


def request_body(method: str, max_tokens: int) -> dict:
    return {"model": "bench", "messages": [{"role": "user", "content": USER}], "max_tokens": max_tokens,
            "temperature": 0, "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True},
            **METHODS[method]}


async def probe(client: httpx.AsyncClient, method: str) -> tuple[str | None, int]:
    """(None if the engine runs ``method``, else the server's error message; the prompt's tokens)."""
    body = {**request_body(method, 2), "stream": False}
    body.pop("stream_options")
    response = await client.post("/v1/chat/completions", json=body)
    if response.status_code != 200:
        return f"{response.status_code}: {response.json()['error']['message']}", 0
    return None, response.json()["usage"]["prompt_tokens"]


async def wave(client: httpx.AsyncClient, pid: int, method: str, concurrency: int, max_tokens: int,
               sample: Sample) -> None:
    start, cpu = time.perf_counter(), server_cpu(pid)
    results = await asyncio.gather(*(one_request(client, request_body(method, max_tokens))
                                     for _ in range(concurrency)))
    sample.throughput.append(concurrency * max_tokens / (time.perf_counter() - start))
    sample.cpu_per_token.append((server_cpu(pid) - cpu) / (concurrency * max_tokens))
    for ttft, per_token, _ in results:
        sample.ttft.append(ttft)
        sample.per_token.append(per_token)


async def bench_engine(base: str, pid: int, methods: list[str], levels: list[int], rounds: int, max_tokens: int,
                       label: str) -> tuple[dict, dict, int]:
    table: dict[tuple[str, int], Sample] = {}
    unsupported: dict[str, str] = {}
    prompt_tokens = 0
    async with httpx.AsyncClient(base_url=base, timeout=900, limits=httpx.Limits(max_connections=64)) as client:
        for method in methods:
            error, tokens = await probe(client, method)
            if error is not None:
                unsupported[method] = error
            elif method == "plain":
                prompt_tokens = tokens
        runnable = [m for m in methods if m not in unsupported]
        for method in runnable:  # warm-up (head profiling for "auto", first-call overheads)
            await wave(client, pid, method, 1, 4, Sample())
        with tqdm(total=rounds * len(levels) * len(runnable), desc=label, file=sys.stderr) as bar:
            for round_ in range(rounds):
                for level in levels:
                    for method in runnable if round_ % 2 == 0 else runnable[::-1]:  # cancels drift
                        await wave(client, pid, method, level, max_tokens,
                                   table.setdefault((method, level), Sample()))
                        bar.update()
    return table, unsupported, prompt_tokens


def thread_env(threads: int) -> dict[str, str]:
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}


def settings(engine: str, model: str) -> dict:
    from braid.server.models.config import Settings

    return {"home": str(Settings().home), "log_level": "warning", "max_queue": 1024,
            "models": [{"id": "bench", "source": model, "engine": engine, "dtype": "float32", "max_num_seqs": 32,
                        "engine_options": {"kv_cache_memory_bytes": 1 << 30}}]}


def report(results: dict, args, info: RunInfo) -> str:
    counts = {engine: tokens for engine, (_, _, tokens) in results.items() if tokens}
    prompts = (str(next(iter(counts.values()))) if len(set(counts.values())) == 1
               else ", ".join(f"{engine} {tokens}" for engine, tokens in counts.items()))
    lines = [f"# decoding-method benchmark, {args.model} float32, chat prompt of {prompts or '?'} tokens (plain; "
             f"as the server counted it), {args.max_tokens} output tokens/request (ignore_eos), median of "
             f"{args.rounds} interleaved rounds", "", *info.markdown(), "",
             "| engine | method | concurrency | ms / token | x plain | server CPU ms / token | x plain | "
             "TTFT ms | x plain | output tok/s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for engine, (table, unsupported, _) in results.items():
        for (method, level), s in table.items():
            base = table.get(("plain", level))
            cells = []
            for attribute, scale, digits in (("per_token", 1000, 1), ("cpu_per_token", 1000, 1), ("ttft", 1000, 0)):
                value = statistics.median(getattr(s, attribute))
                ratio = value / statistics.median(getattr(base, attribute)) if base else float("nan")
                cells += [f"{value * scale:.{digits}f}", f"{ratio:.2f}"]
            lines.append(f"| {engine} | {method} | {level} | {' | '.join(cells)} | "
                         f"{statistics.median(s.throughput):.1f} |")
        for method, error in unsupported.items():
            lines.append(f"| {engine} | {method} | - | not served: {error[:120]} | | | | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="bundled name, folder or HF id")
    parser.add_argument("--engines", default="transformers,vllm", help="comma list: transformers, vllm")
    parser.add_argument("--methods", default="plain,icd,ascd,steer",
                        help="comma list of plain, icd, ascd, steer (each probed; a 400 is reported, not fatal)")
    parser.add_argument("--concurrency", default="1,8", help="comma list of concurrency levels (one wave each)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians are reported")
    parser.add_argument("--max-tokens", type=int, default=32, help="output tokens per request")
    parser.add_argument("--out", default="", help="also write the table to benchmarks/results/OUT.md")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads of the server (OMP_NUM_THREADS; 0: torch's default). On a shared "
                             "machine 1 is steadier: spinning OpenMP threads slow down badly under contention")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the servers are stopped

    methods, levels = args.methods.split(","), [int(c) for c in args.concurrency.split(",")]
    info = RunInfo.start(args.threads)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines.split(","):
            workdir = Path(tmp) / engine
            workdir.mkdir()
            server = start_server(settings(engine, args.model), workdir, timeout=900,
                                  env={"VLLM_CACHE_ROOT": str(workdir / "vllm-cache"), **thread_env(args.threads)})
            try:
                results[engine] = asyncio.run(bench_engine(server.root_url, server.process.pid, methods, levels,
                                                           args.rounds, args.max_tokens, engine))
            finally:
                stop_server(server)
    text = report(results, args, info.finish())
    print("\n" + text)
    if args.out:
        path = Path(__file__).resolve().parent / "results" / f"{args.out}.md"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text + "\n")
        print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
