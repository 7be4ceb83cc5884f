"""Structured-output speed: time per output token with and without a JSON-Schema constraint.

Servers, started one at a time on the same model (default: the bundled SmolLM2-135M-Instruct,
float32): Braid on its vLLM engine (``braid-vllm``), Braid on its transformers engine
(``braid-transformers``) and vLLM's own OpenAI server on the folder Braid converted the model into,
with ``--structured-outputs-config {"backend": "xgrammar"}`` (``vllm-server``). Each gets the same
streaming chat requests (official ``openai`` client) in two arms:

* ``constrained``: ``response_format={"type": "json_schema", ...}`` with one of ``--schemas`` (bounded
  schemas from ``structured_data.py``); the reply ends when the JSON ends (EOS is the only token the
  grammar then allows), up to ``--max-tokens``;
* ``unconstrained``: the same messages (the schema is in the system message in both arms), no
  ``response_format``, ``ignore_eos`` and ``max_tokens`` = the number of tokens the constrained reply to
  that schema took on that server (measured once before the timed rounds), so both arms decode the
  same number of tokens at the same positions.

Time per token, the headline number: **decode time per token from streaming timestamps** =
(arrival of the chunk that carries ``finish_reason`` - arrival of the first content chunk) /
(``usage.completion_tokens`` - 1). It leaves out prefill and the first token (and so a grammar
compilation on a cache miss, which shows in TTFT instead). This assumes that the server counts the
EOS token that ends a constrained reply in ``completion_tokens`` (vLLM does); a server that does not
would look ~1/tokens slower constrained. Also printed: whole-request time / ``completion_tokens``, TTFT,
and the server's CPU time (all its processes) per output token per wave, which other processes on a
shared machine disturb much less than wall time.

A wave at concurrency c sends c requests at once, request j using schema (round + j) mod S. Arms
and levels are interleaved over ``--rounds`` rounds (the arm order reverses every round); medians
over all requests of a (server, level, arm) are reported, with the range of the per-round ratios.
``--passes 2`` runs the servers twice in alternating order (A B C, C B A) and pools the passes.

Goals (issue 11): constrained at most 1.10x unconstrained on each engine; Braid's vLLM engine within
5% of vLLM's own server on the same schema (constrained and unconstrained), both measured in this run.

    .venv/bin/python benchmarks/structured_speed.py --dry-run      # the requests it would send, no server
    .venv/bin/python benchmarks/structured_speed.py --threads 1    # all three servers, one after the other
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
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from openai import APIStatusError, AsyncOpenAI
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from structured_common import RESULTS, RunInfo, braid_server, server_cpu, vllm_server  # noqa: E402
from structured_data import PROMPTS, SCHEMAS, messages  # noqa: E402

SERVERS = ("braid-vllm", "braid-transformers", "vllm-server")
ARMS = ("constrained", "unconstrained")


@dataclass
class Timing:
    server: str
    level: int
    arm: str
    schema: str
    round: int
    tokens: int
    finish_reason: str | None
    ttft: float
    decode_per_token: float  # (finish chunk - first content chunk) / (tokens - 1)
    request_per_token: float  # whole request / tokens
    wave_cpu_per_token: float | None  # server CPU seconds / output token over the request's wave


def request_kwargs(arm: str, schema: str, max_tokens: int, constrained_tokens: int) -> dict:
    kwargs = {"messages": messages(schema, PROMPTS[schema][0]), "temperature": 0, "stream": True,
              "stream_options": {"include_usage": True}}
    if arm == "constrained":
        return {**kwargs, "max_tokens": max_tokens, "response_format": {
            "type": "json_schema", "json_schema": {"name": schema, "schema": SCHEMAS[schema], "strict": True}}}
    return {**kwargs, "max_tokens": constrained_tokens, "extra_body": {"ignore_eos": True}}


async def timed(client: AsyncOpenAI, model: str, kwargs: dict) -> dict:
    start = time.perf_counter()
    first = finished = None
    tokens, finish_reason, text = 0, None, []
    stream = await client.chat.completions.create(model=model, **kwargs)
    async for chunk in stream:
        now = time.perf_counter()
        if chunk.choices:
            choice = chunk.choices[0]
            if choice.delta and choice.delta.content:
                first = first or now
                text.append(choice.delta.content)
            if choice.finish_reason:
                finished, finish_reason = now, choice.finish_reason
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    end = time.perf_counter()
    if first is None or not tokens:
        raise RuntimeError(f"no content or no usage in the stream (tokens={tokens}, finish={finish_reason})")
    return {"tokens": tokens, "finish_reason": finish_reason, "ttft": first - start, "text": "".join(text),
            "decode_per_token": ((finished or end) - first) / max(tokens - 1, 1),
            "request_per_token": (end - start) / tokens}


async def bench_server(root_url: str, pid: int | None, name: str, args, schemas: list[str], levels: list[int],
                       samples: dict, first_round: int = 0) -> dict:
    """Timed rounds on one server; returns {"lengths": ..., "refused": ..., "timings": [...]}."""
    client = AsyncOpenAI(base_url=f"{root_url}/v1", api_key="unused", timeout=900, max_retries=0)
    lengths, refused, replies = {}, {}, {}
    for schema in schemas:  # the constrained length of each schema, and the grammar's first compilation
        try:
            probe = await timed(client, "bench", request_kwargs("constrained", schema, args.max_tokens, 0))
            lengths[schema], replies[schema] = probe["tokens"], probe["text"]
            if probe["finish_reason"] == "length":
                print(f"  {name} {schema}: the constrained reply hit --max-tokens {args.max_tokens}", file=sys.stderr)
        except APIStatusError as exc:
            refused[schema] = f"{exc.status_code}: {str(exc)[:200]}"
            lengths[schema] = args.fallback_tokens
    usable = [s for s in schemas if s not in refused]
    arms = [arm for arm in ARMS if arm == "unconstrained" or usable]
    for arm in arms:  # warm-up of both arms at every level
        pool = usable if arm == "constrained" else schemas
        for level in levels:
            await asyncio.gather(*(timed(client, "bench", request_kwargs(arm, pool[j % len(pool)], args.max_tokens, 8))
                                   for j in range(level)))
    timings = []
    with tqdm(total=args.rounds * len(levels) * len(arms), desc=name, file=sys.stderr) as bar:
        for round_ in range(args.rounds):
            for level in levels:
                for arm in arms if round_ % 2 == 0 else arms[::-1]:
                    pool = usable if arm == "constrained" else schemas
                    wave_schemas = [pool[(round_ + j) % len(pool)] for j in range(level)]
                    cpu = server_cpu(pid) if pid else None
                    results = await asyncio.gather(*(timed(client, "bench", request_kwargs(
                        arm, s, args.max_tokens, lengths[s])) for s in wave_schemas))
                    total = sum(r["tokens"] for r in results)
                    cpu_per_token = (server_cpu(pid) - cpu) / total if pid else None
                    timings += [Timing(name, level, arm, s, first_round + round_, r["tokens"], r["finish_reason"],
                                       r["ttft"], r["decode_per_token"], r["request_per_token"], cpu_per_token)
                                for s, r in zip(wave_schemas, results)]
                    bar.update()
    samples[name] = replies
    return {"lengths": lengths, "refused": refused, "timings": timings}


def median(values: list[float]) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def report(results: dict, args, info: RunInfo, replies: dict) -> str:
    timings = [t for r in results.values() for t in r["timings"]]
    by = defaultdict(list)
    for t in timings:
        by[(t.server, t.level, t.arm)].append(t)
    levels = sorted({t.level for t in timings})
    lines = ["# Structured outputs: time per output token, constrained vs unconstrained", "",
             f"Model {args.model} ({args.dtype}), chat API, schemas {args.schemas} (`structured_data.py`), "
             f"{args.rounds} interleaved rounds x {args.passes} pass(es), medians. Decode ms/token = (finish chunk - "
             "first content chunk) / (completion_tokens - 1) from streaming timestamps; request ms/token = whole "
             "request / completion_tokens. Unconstrained requests use ignore_eos and the constrained reply's "
             "length.", "", *info.markdown(), "",
             "| server | concurrency | arm | tokens / request | decode ms / token | x unconstrained | per-round "
             "range | request ms / token | TTFT ms | server CPU ms / token | x unconstrained |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    ratios = {}
    for (server, level, arm), items in sorted(by.items()):
        base = by.get((server, level, "unconstrained"), [])
        decode = median([t.decode_per_token for t in items])
        cpu = median([t.wave_cpu_per_token for t in items])
        ratio = decode / median([t.decode_per_token for t in base]) if base else float("nan")
        cpu_ratio = cpu / median([t.wave_cpu_per_token for t in base]) if base else float("nan")
        per_round = [median([t.decode_per_token for t in items if t.round == r])
                     / median([t.decode_per_token for t in base if t.round == r])
                     for r in sorted({t.round for t in items}) if any(t.round == r for t in base)]
        spread = f"{min(per_round):.2f}-{max(per_round):.2f}" if per_round else "-"
        ratios[(server, level, arm)] = ratio
        lines.append(f"| {server} | {level} | {arm} | {median([t.tokens for t in items]):.0f} | {decode * 1000:.1f} | "
                     f"{ratio:.2f} | {spread} | {median([t.request_per_token for t in items]) * 1000:.1f} | "
                     f"{median([t.ttft for t in items]) * 1000:.0f} | {cpu * 1000:.1f} | {cpu_ratio:.2f} |")
    for server, result in results.items():
        for schema, error in result["refused"].items():
            lines.append(f"| {server} | - | constrained | refused {schema}: {error[:150]} | | | | | | | |")
    lines += ["", "Goals:", ""]
    for server in results:
        for level in levels:
            ratio = ratios.get((server, level, "constrained"))
            if ratio is not None:
                lines.append(f"- {server}, concurrency {level}: constrained / unconstrained = {ratio:.2f}x "
                             f"(goal at most 1.10x: {'met' if ratio <= 1.10 else 'NOT met'})")
    if "braid-vllm" in results and "vllm-server" in results:
        for level in levels:
            for arm in ARMS:
                ours, theirs = by.get(("braid-vllm", level, arm)), by.get(("vllm-server", level, arm))
                if ours and theirs:
                    ratio = median([t.decode_per_token for t in ours]) / median([t.decode_per_token for t in theirs])
                    lines.append(f"- braid-vllm / vllm-server, concurrency {level}, {arm}: {ratio:.3f}x decode time "
                                 f"per token (goal within 5%: {'met' if ratio <= 1.05 else 'NOT met'})")
    lines += ["", "Tokens of each schema's constrained reply per server (probe before the rounds): " + "; ".join(
        f"{server} {dict(result['lengths'])}" for server, result in results.items())]
    shared = {s: [replies[server][s] for server in replies if s in replies[server]] for s in SCHEMAS}
    shared = {s: texts for s, texts in shared.items() if len(texts) > 1}
    if shared:
        lines.append("Greedy constrained replies identical across servers: " + ", ".join(
            f"{s} {'yes' if len(set(texts)) == 1 else 'no'}" for s, texts in shared.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="bundled name, folder or HF id")
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"comma list of {', '.join(SERVERS)}")
    parser.add_argument("--schemas", default="person,order,weather", help="comma list of structured_data schemas")
    parser.add_argument("--concurrency", default="1,8", help="comma list of concurrency levels")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds per server and pass")
    parser.add_argument("--passes", type=int, default=1, help="passes over the servers, alternating their order")
    parser.add_argument("--max-tokens", type=int, default=256, help="cap of a constrained reply")
    parser.add_argument("--fallback-tokens", type=int, default=64,
                        help="unconstrained length for a schema the server refuses")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads of the servers (OMP_NUM_THREADS; 0: torch's default). On a shared "
                             "machine 1 is steadier")
    parser.add_argument("--kv-cache-bytes", type=int, default=1 << 30, help="vLLM KV cache (0: vLLM's default, GPU)")
    parser.add_argument("--max-num-seqs", type=int, default=32)
    parser.add_argument("--out", default="structured_speed", help="results/OUT.md and results/OUT.json")
    parser.add_argument("--dry-run", action="store_true", help="print the requests of each arm and exit")
    args = parser.parse_args()
    schemas, levels, servers = args.schemas.split(","), [int(c) for c in args.concurrency.split(",")], \
        args.servers.split(",")
    for name in schemas:
        if name not in SCHEMAS:
            parser.error(f"--schemas: unknown schema {name!r} (choose from {', '.join(SCHEMAS)})")
    for name in servers:
        if name not in SERVERS:
            parser.error(f"--servers: unknown server {name!r} (choose from {', '.join(SERVERS)})")
    if args.dry_run:
        for arm in ARMS:
            kwargs = request_kwargs(arm, schemas[0], args.max_tokens, 40)
            print(f"{arm}: " + json.dumps({k: v for k, v in kwargs.items() if k != "messages"}))
        print(f"messages ({schemas[0]}): {json.dumps(request_kwargs('constrained', schemas[0], 1, 1)['messages'])}")
        order = [k for p in range(args.passes) for k in (servers if p % 2 == 0 else servers[::-1])]
        print(f"servers in order: {order}")
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the running server is stopped

    info = RunInfo.start(args.threads)
    results, replies = {}, {}
    common = {"dtype": args.dtype, "threads": args.threads, "kv_cache_bytes": args.kv_cache_bytes,
              "max_num_seqs": args.max_num_seqs}
    with tempfile.TemporaryDirectory() as tmp:
        for pass_ in range(args.passes):
            for name in servers if pass_ % 2 == 0 else servers[::-1]:
                workdir = Path(tmp) / f"{name}-{pass_}"
                start = (vllm_server(args.model, workdir, **common) if name == "vllm-server" else
                         braid_server(args.model, name.removeprefix("braid-"), workdir, **common))
                with start as server:
                    result = asyncio.run(bench_server(server.root_url, server.pid, name, args, schemas, levels,
                                                      replies, first_round=pass_ * args.rounds))
                if name in results:
                    results[name]["timings"] += result["timings"]
                else:
                    results[name] = result
    text = report(results, args, info.finish(), replies)
    print("\n" + text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.md").write_text(text + "\n")
    raw = {"run": info.as_dict(), "args": vars(args), "replies": replies,
           "servers": {k: {**v, "timings": [asdict(t) for t in v["timings"]]} for k, v in results.items()}}
    (RESULTS / f"{args.out}.json").write_text(json.dumps(raw, indent=1) + "\n")
    print(f"\nwritten: {RESULTS / args.out}.md, .json")


if __name__ == "__main__":
    main()
