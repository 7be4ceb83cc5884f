"""What constraints buy on a small model: JSON and schema validity with and without `response_format`.

For each of the ten schemas of ``structured_data.py`` (nested objects, arrays with bounds, enums,
bounded numbers, patterns, required/optional fields, a pydantic-style ``$defs``/``$ref`` schema with a
nullable field) and its three prompts, the model (default: the bundled SmolLM2-135M-Instruct,
float32) is asked through ``/v1/chat/completions`` with the official ``openai`` client, the schema
written in the system message in every arm:

* ``none``: no constraint (the schema is only in the prompt);
* ``json_schema``: ``response_format={"type": "json_schema", "json_schema": {"name", "schema", "strict": true}}``;
* ``json_object`` (only if listed in ``--arms``): ``response_format={"type": "json_object"}``.

Scored per output: *parses* = ``json.loads(content)`` succeeds on the whole reply; *lenient parse* =
it parses after stripping a Markdown code fence or taking the outermost ``{...}`` (what a forgiving
client would do); *valid* = the strict parse validates against the schema with ``jsonschema``
(the validator class the schema's dialect asks for, Draft 2020-12 by default), an independent
checker. Shares with 95% Wilson intervals, per arm and per schema; replies cut by ``max_tokens``
are counted (and listed). A schema the server refuses (4xx) is reported as refused, not as invalid.

Greedy by default (one reply per prompt: 30 per arm). ``--samples K --temperature T`` draws K seeded
replies per prompt instead. Resumable: every reply is appended to ``results/OUT.jsonl`` as it comes;
a restart skips the (engine, schema, prompt, sample, arm) already there and re-writes the table
from all of them.

    .venv/bin/python benchmarks/structured_validity.py --check     # schemas and checker on known answers, no server
    .venv/bin/python benchmarks/structured_validity.py             # both engines, one braid serve each
    .venv/bin/python benchmarks/structured_validity.py --url http://127.0.0.1:8000   # a server started by hand
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import jsonschema
from openai import APIConnectionError, APIStatusError, APITimeoutError, AsyncOpenAI
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from structured_common import RESULTS, RunInfo, braid_server, fmt_ci, load_jsonl  # noqa: E402
from structured_data import EXAMPLES, PROMPTS, SCHEMAS, broken, messages  # noqa: E402

ARMS = ("none", "json_schema", "json_object")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def response_format(arm: str, schema_name: str) -> dict | None:
    if arm == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": schema_name, "schema": SCHEMAS[schema_name],
                                                       "strict": True}}
    if arm == "json_object":
        return {"type": "json_object"}
    return None


def strict_parse(text: str):
    """(True, value) if the whole reply is JSON, else (False, None)."""
    try:
        return True, json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return False, None


def lenient_parse(text: str):
    """The reply's JSON after stripping a code fence, or its outermost {...}."""
    ok, value = strict_parse(text)
    if ok:
        return ok, value
    fenced = _FENCE.search(text or "")
    if fenced and (found := strict_parse(fenced.group(1).strip()))[0]:
        return found
    start, end = (text or "").find("{"), (text or "").rfind("}")
    return strict_parse(text[start:end + 1]) if 0 <= start < end else (False, None)


def schema_valid(value, schema: dict) -> bool:
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return validator(schema).is_valid(value)


def score(row: dict) -> dict:
    """Per-reply verdicts, computed from the stored reply so that old rows are re-scored the same way."""
    if row.get("http_status"):
        return {"refused": True, "parses": False, "lenient": False, "valid": False}
    parses, value = strict_parse(row["content"])
    lenient, _ = lenient_parse(row["content"])
    return {"refused": False, "parses": parses, "lenient": lenient,
            "valid": parses and schema_valid(value, SCHEMAS[row["schema"]])}


def check() -> None:
    """No server: every schema is a valid schema, every known answer validates, every broken one does not,
    and the parsers read fenced / chatty replies as they should."""
    for name, schema in SCHEMAS.items():
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
        assert schema_valid(EXAMPLES[name], schema), f"known answer of {name} does not validate"
        assert score({"schema": name, "content": json.dumps(EXAMPLES[name])})["valid"], name
        for bad in broken(name):
            assert not schema_valid(bad, schema), f"broken instance of {name} validates: {bad}"
        assert len(PROMPTS[name]) == 3, name
        assert messages(name, PROMPTS[name][0])[0]["content"].endswith(json.dumps(schema, separators=(",", ":")))
    fenced = "Sure!\n```json\n" + json.dumps(EXAMPLES["person"]) + "\n```"
    verdict = score({"schema": "person", "content": fenced})
    assert verdict == {"refused": False, "parses": False, "lenient": True, "valid": False}, verdict
    assert score({"schema": "person", "content": '{"name": "A", "age": 200}'})["valid"] is False  # maximum
    assert score({"schema": "address", "content": json.dumps({**EXAMPLES["address"], "zip": "1011"})})["valid"] is False
    assert score({"schema": "book", "content": json.dumps({**EXAMPLES["book"],
                                                           "author": {"name": "X"}})})["valid"] is False  # $ref
    assert score({"schema": "person", "http_status": 400, "content": ""})["refused"]
    print(f"check passed: {len(SCHEMAS)} schemas are valid JSON Schemas; {len(EXAMPLES)} known answers validate, "
          f"{sum(len(broken(n)) for n in SCHEMAS)} broken ones do not; fenced replies parse leniently only; "
          f"{sum(len(p) for p in PROMPTS.values())} prompts")


async def ask_all(base_url: str, model: str, engine: str, jobs: list[dict], args, out: Path) -> None:
    client = AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", timeout=args.timeout, max_retries=0)
    semaphore = asyncio.Semaphore(args.concurrency)
    bar = tqdm(total=len(jobs), desc=engine, file=sys.stderr)
    lost = []

    async def one(job: dict) -> None:
        extra = {"seed": args.seed + job["sample"]} if args.samples > 1 else {}
        fmt = response_format(job["arm"], job["schema"])
        async with semaphore:
            try:
                reply = await client.chat.completions.create(
                    model=model, messages=messages(job["schema"], PROMPTS[job["schema"]][job["prompt"]]),
                    max_tokens=args.max_tokens, temperature=args.temperature,
                    **({"response_format": fmt} if fmt else {}), **extra)
                choice = reply.choices[0]
                row = {**job, "content": choice.message.content or "", "finish_reason": choice.finish_reason,
                       "completion_tokens": reply.usage.completion_tokens if reply.usage else None}
            except APIStatusError as exc:  # a refusal is a result; a lost connection is retried on restart
                row = {**job, "content": "", "http_status": exc.status_code, "error": str(exc)[:500]}
            except (APIConnectionError, APITimeoutError) as exc:
                lost.append(f"{job}: {exc}")
                bar.update()
                return
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        bar.update()

    await asyncio.gather(*(one(job) for job in jobs))
    bar.close()
    if lost:
        print(f"{len(lost)} requests lost (not recorded; a rerun retries them), e.g. {lost[0]}", file=sys.stderr)


def report(rows: list[dict], runs: list[dict], schemas: list[str]) -> str:
    lines = ["# Structured outputs: JSON and schema validity with and without constraints", "",
             f"{len(schemas)} schemas x 3 prompts (`benchmarks/structured_data.py`), chat API, the schema in the "
             "system message in every arm. *parses*: `json.loads` of the whole reply; *lenient*: after stripping a "
             "code fence or taking the outermost `{...}`; *valid*: the strict parse validates with `jsonschema`. "
             "95% Wilson intervals.", ""]
    for run in runs:
        lines += [f"Run {run['started']}:", *RunInfo(**{k: v for k, v in run.items() if k != "kind"}).markdown(), ""]
    verdicts = [(row, score(row)) for row in rows if row["schema"] in schemas]
    groups = defaultdict(list)
    for row, verdict in verdicts:
        groups[(row["engine"], row["arm"])].append((row, verdict))
    lines += ["| engine | arm | replies | parses | lenient parse | schema-valid | cut by max_tokens | refused (4xx) |",
              "|---|---|---|---|---|---|---|---|"]
    for (engine, arm), items in sorted(groups.items()):
        answered = [(r, v) for r, v in items if not v["refused"]]
        n = len(answered)
        count = lambda key: sum(v[key] for _, v in answered)  # noqa: E731
        cut = sum(r.get("finish_reason") == "length" for r, _ in answered)
        lines.append(f"| {engine} | {arm} | {len(items)} | {fmt_ci(count('parses'), n)} | "
                     f"{fmt_ci(count('lenient'), n)} | {fmt_ci(count('valid'), n)} | {cut} | {len(items) - n} |")
    lines += ["", "Per schema (schema-valid / replies answered; refused in brackets):", ""]
    arms = sorted({arm for _, arm in groups})
    engines = sorted({engine for engine, _ in groups})
    lines += ["| schema | " + " | ".join(f"{e} {a}" for e in engines for a in arms) + " |",
              "|---|" + "---|" * (len(engines) * len(arms))]
    for name in schemas:
        cells = []
        for engine in engines:
            for arm in arms:
                items = [v for r, v in groups.get((engine, arm), []) if r["schema"] == name]
                answered = [v for v in items if not v["refused"]]
                refused = len(items) - len(answered)
                cells.append(f"{sum(v['valid'] for v in answered)}/{len(answered)}"
                             + (f" ({refused} refused)" if refused else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    errors = sorted({(r["engine"], r["arm"], r["schema"], r.get("error", "")[:160])
                     for r, v in verdicts if v["refused"]})
    if errors:
        lines += ["", "Refusals:", *[f"- {e} {a} {s}: {msg}" for e, a, s, msg in errors]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct",
                        help="bundled name, folder or HF id that the script serves (ignored with --url)")
    parser.add_argument("--engines", default="vllm,transformers",
                        help="comma list of vllm, transformers (one braid serve each); with --url a label for "
                             "the server (default there: external)")
    parser.add_argument("--url", default="", help="use this running server (root URL) instead of starting one")
    parser.add_argument("--served-model", default="", help="model id on --url (default: its first model)")
    parser.add_argument("--arms", default="none,json_schema", help=f"comma list of {', '.join(ARMS)}")
    parser.add_argument("--schemas", default=",".join(SCHEMAS), help="comma list of schema names")
    parser.add_argument("--samples", type=int, default=1, help="replies per prompt (>1 needs --temperature > 0)")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0, help="seed of sample i is SEED + i (with --samples > 1)")
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per request")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=0, help="server torch threads (0: torch's default)")
    parser.add_argument("--kv-cache-bytes", type=int, default=1 << 30, help="vLLM KV cache (0: vLLM's default, GPU)")
    parser.add_argument("--out", default="structured_validity", help="results/OUT.jsonl and results/OUT.md")
    parser.add_argument("--check", action="store_true", help="check schemas and the checker on known answers, exit")
    args = parser.parse_args()
    if args.check:
        check()
        return
    if args.samples > 1 and args.temperature <= 0:
        parser.error("--samples > 1 needs --temperature > 0 (greedy replies would repeat)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the servers are stopped

    arms, schemas = args.arms.split(","), args.schemas.split(",")
    for arm in arms:
        if arm not in ARMS:
            parser.error(f"--arms: unknown arm {arm!r} (choose from {', '.join(ARMS)})")
    for name in schemas:
        if name not in SCHEMAS:
            parser.error(f"--schemas: unknown schema {name!r} (choose from {', '.join(SCHEMAS)})")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{args.out}.jsonl"
    if args.url and not args.served_model:
        args.served_model = _first_model(args.url)
    label = args.served_model or args.model
    previous = load_jsonl(out)
    for row in previous:
        if row.get("kind") == "item" and row["model"] != label:
            sys.exit(f"{out} holds replies of {row['model']!r}, not {label!r}: choose another --out")
    info = RunInfo.start(args.threads, args.url or None)
    done = {(r["engine"], r["schema"], r["prompt"], r["sample"], r["arm"]) for r in previous if r.get("kind") == "item"}

    asked = False
    engines = ["external"] if args.url and args.engines == parser.get_default("engines") else args.engines.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        for engine in engines:
            jobs = [{"kind": "item", "model": label, "engine": engine, "schema": name, "prompt": p,
                     "sample": s, "arm": arm}
                    for name in schemas for p in range(len(PROMPTS[name])) for s in range(args.samples)
                    for arm in arms if (engine, name, p, s, arm) not in done]
            if not jobs:
                continue
            asked = True
            if args.url:
                asyncio.run(ask_all(args.url.rstrip("/").removesuffix("/v1"), args.served_model, engine, jobs, args,
                                    out))
                continue
            with braid_server(args.model, engine, Path(tmp) / engine, dtype=args.dtype, threads=args.threads,
                              kv_cache_bytes=args.kv_cache_bytes) as server:
                asyncio.run(ask_all(server.root_url, server.served_model, engine, jobs, args, out))
    if asked:
        with out.open("a") as f:
            f.write(json.dumps({"kind": "run", **info.finish().as_dict()}) + "\n")
    rows = load_jsonl(out)
    text = report([r for r in rows if r.get("kind") == "item"], [r for r in rows if r.get("kind") == "run"], schemas)
    (RESULTS / f"{args.out}.md").write_text(text + "\n")
    print("\n" + text + f"\n\nwritten: {RESULTS / args.out}.md, .jsonl")


def _first_model(url: str) -> str:
    import httpx

    return httpx.get(f"{url.rstrip('/').removesuffix('/v1')}/v1/models", timeout=30).json()["data"][0]["id"]


if __name__ == "__main__":
    main()
