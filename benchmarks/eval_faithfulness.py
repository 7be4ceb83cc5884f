"""Context-faithfulness eval of Braid's decoding methods on counterfactual prompts (offline).

Starts ``braid serve`` with the bundled SmolLM2-135M-Instruct on the transformers engine (float32),
then asks every prompt of ``faithfulness_data.py`` ("In this story, the capital of France is Tokyo.
<filler> Question: What is the capital of France?") greedily under each method:

* plain: ordinary decoding;
* icd: contrast with a negative branch whose system prompt says to ignore the story;
* cad: icd on /v1/completions (chat template applied here) whose negative prompt is the question
  without the story, i.e. context-aware decoding (Shi et al., 2023) served through ICD;
* steer: span steering toward the counterfactual statement (heads "auto");
* ascd: contrastive decoding whose branches differ by attention on that same span.

An answer is *faithful* when it names the counterfactual object and not the real one,
*parametric* for the reverse. Printed and written to ``benchmarks/results/``: faithful and
parametric rates with 95 % Wilson intervals, how many prompts each method fixed / broke
relative to plain, a bar plot, and every answer (JSONL). A closed-book pass first records which
facts the model knows at all.

    .venv/bin/python benchmarks/eval_faithfulness.py --help
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
import tempfile
from pathlib import Path

from openai import AsyncOpenAI
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from faithfulness_data import Prompt, build_prompts, closed_book_questions  # noqa: E402
from faithfulness_report import label, mentions, write  # noqa: E402
from server_process import start_server, stop_server  # noqa: E402
from structured_common import RunInfo  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NEGATIVE_SYSTEM = ("Ignore any story, passage or imagined world in the user's message. "
                   "Answer only with the well-known real-world fact.")


def method_job(method: str, prompt: Prompt, alpha: float, strength: float, render) -> dict:
    """One request: {"messages" | "prompt", "extra"} for a method name; ``render`` applies the chat template."""
    steer = {"spans": [list(prompt.span)], "heads": "auto", "strength": strength}
    chat = {"messages": [{"role": "user", "content": prompt.text}]}
    if method == "plain":
        return {**chat, "extra": {}}
    if method == "icd":
        return {**chat, "extra": {"contrastive": {"method": "icd", "alpha": alpha,
                                                  "negative_system_prompt": NEGATIVE_SYSTEM}}}
    if method == "cad":  # icd through /v1/completions, the negative prompt being the question without the story
        negative = render(f"{prompt.question} Answer in a few words.")
        return {"prompt": render(prompt.text),
                "extra": {"contrastive": {"method": "icd", "alpha": alpha, "negative_prompt": negative}}}
    if method == "steer":
        return {**chat, "extra": {"steer": steer}}
    if method == "ascd":
        return {**chat, "extra": {"contrastive": {"method": "ascd", "alpha": alpha, "steer": steer}}}
    raise ValueError(f"unknown method {method!r} (plain, icd, cad, steer, ascd)")


async def ask_all(client: AsyncOpenAI, jobs: list[dict], max_tokens: int, concurrency: int, desc: str) -> list[str]:
    """Greedy answers to the jobs of ``method_job``, in order."""
    semaphore = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(jobs), desc=desc, file=sys.stderr)

    async def one(job: dict) -> str:
        common = {"model": "smollm2", "temperature": 0, "max_tokens": max_tokens, "extra_body": job["extra"] or None}
        async with semaphore:
            if "messages" in job:
                out = await client.chat.completions.create(messages=job["messages"], **common)
                text = out.choices[0].message.content or ""
            else:
                text = (await client.completions.create(prompt=job["prompt"], **common)).choices[0].text
            bar.update()
            return text

    try:
        return await asyncio.gather(*(one(job) for job in jobs))
    finally:
        bar.close()


def configs(spec: str) -> list[tuple[str, str, float, float]]:
    """(row name, method, alpha, strength) for each ``method[:a=ALPHA][:s=STRENGTH]`` of a comma list."""
    rows = []
    for item in spec.split(","):
        method, *options = item.strip().split(":")
        values = {"a": 1.0, "s": 0.625, **{k: float(v) for k, v in (o.split("=") for o in options)}}
        name = method + (f" a={values['a']:g}" if method in ("icd", "cad", "ascd") else "") + \
            (f" s={values['s']:g}" if method in ("steer", "ascd") else "")
        rows.append((name, method, values["a"], values["s"]))
    return rows


async def evaluate(base_url: str, args, render) -> tuple[list[dict], dict]:
    client = AsyncOpenAI(base_url=base_url, api_key="none", timeout=600, max_retries=0)
    facts = closed_book_questions()
    closed = await ask_all(client, [{"messages": [{"role": "user", "content": q + " Answer in a few words."}],
                                     "extra": {}} for *_, q in facts], args.max_tokens, args.concurrency, "closed-book")
    known = {(rel, subj) for (rel, subj, real, _), answer in zip(facts, closed) if mentions(answer, real)}
    prompts = build_prompts(args.prompts, args.seed)
    records = []
    for name, method, alpha, strength in configs(args.methods):
        jobs = [method_job(method, p, alpha, strength, render) for p in prompts]
        answers = await ask_all(client, jobs, args.max_tokens, args.concurrency, name)
        for i, (p, answer) in enumerate(zip(prompts, answers)):
            records.append({"config": name, "prompt_id": i, "answer": answer,
                            "label": label(answer, p.real, p.counterfactual),
                            "known": (p.relation, p.subject) in known})
    summary = {"facts": len(facts), "known": len(known), "prompts": len(prompts),
               "prompt_list": [dataclasses.asdict(p) for p in prompts],
               "closed_book": [{"question": q, "real": real, "answer": a} for (_, _, real, q), a in zip(facts, closed)]}
    return records, summary


def chat_renderer(settings: dict):
    """user message -> the model's chat-template text (what the server renders for chat requests)."""
    from transformers import AutoTokenizer

    from braid.server.models.weights import resolve_source

    tokenizer = AutoTokenizer.from_pretrained(resolve_source(settings["models"][0]["source"], Path(settings["home"])))
    return lambda user: tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                                      add_generation_prompt=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="bundled name, folder or HF id")
    parser.add_argument("--methods", default="plain,icd,cad,steer,ascd",
                        help="comma list of METHOD[:a=ALPHA][:s=STRENGTH] (defaults a=1, s=0.625), methods: "
                             "plain, icd (negative system prompt: ignore the story), cad (icd on /v1/completions "
                             "whose negative prompt is the question without the story, as in context-aware "
                             "decoding), steer (span steering), ascd. The first row is the baseline of "
                             "'fixed / broke'. Example: plain,icd,icd:a=0.5,steer:s=2")
    parser.add_argument("--prompts", type=int, default=80, help="counterfactual prompts per method")
    parser.add_argument("--max-tokens", type=int, default=16, help="answer length (greedy)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--seed", type=int, default=0, help="which prompts are drawn")
    parser.add_argument("--out", default="faithfulness", help="file stem under benchmarks/results/")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads of the server (OMP_NUM_THREADS; 0: torch's default). On a shared "
                             "machine 1 is steadier: spinning OpenMP threads slow down badly under contention")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the server is stopped

    from braid.server.models.config import Settings

    settings = {"home": str(Settings().home), "log_level": "warning", "max_queue": 1024,
                "models": [{"id": "smollm2", "source": args.model, "engine": "transformers", "dtype": "float32",
                            "max_num_seqs": 32}]}
    info = RunInfo.start(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        env = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)} if args.threads else {}
        server = start_server(settings, Path(tmp), timeout=600, env=env)
        try:
            records, summary = asyncio.run(evaluate(server.base_url, args, chat_renderer(settings)))
        finally:
            stop_server(server)
    header = "\n".join([
        f"# context faithfulness, {args.model} (transformers, float32), {summary['prompts']} counterfactual "
        f"prompts, greedy, max_tokens={args.max_tokens}; model knows {summary['known']}/{summary['facts']} "
        "facts closed-book", "", *info.finish().markdown()])
    meta = {"header": header, "title": f"SmolLM2-135M-Instruct, {summary['prompts']} counterfactual prompts",
            "args": vars(args), "run": info.as_dict(), **summary}
    RESULTS.mkdir(exist_ok=True)
    markdown = write(records, meta, RESULTS / args.out)
    print(f"\n{markdown}\nwritten: {RESULTS / args.out}.md, .png, .jsonl")

if __name__ == "__main__":
    main()
