"""Byte-level evaluation: bits per byte, a downstream task, and a proxy-tuning demonstration.

1. **Bits per byte** on a held-out text (see `eval_bytelevel_data.py`: Triton's GSan design
   document, shipped in the triton wheel, written after both models' training data; first
   ``--bpb-bytes`` bytes, in chunks of at most ``--chunk-bytes``, each read as a text of its own)
   for SmolLM2-135M-Instruct, Gemma-3-270M and their ``mix`` and ``product`` ensembles (weights
   0.5/0.5: the average of the members' next-byte distributions, and their renormalized
   geometric mean). By default through the server's scoring path: a ``braid serve`` with the
   four byte-level model ids, ``/v1/completions`` with ``echo=True, logprobs=0, max_tokens=0``
   through the openai client, per-byte logprobs summed. ``--direct`` computes the same with
   the library in this process (the members once; the ensembles from their distributions).
   For reference, each model's ordinary token-level bits per byte of the same chunks.
2. **Arithmetic** (reasoning-gym ``basic_arithmetic``, two terms of up to two digits, + - *):
   after three worked examples, ``Answer:`` is followed by each of five choices (the answer,
   +-1, +-10) and a newline; a model is right when the answer is its most likely choice. Members
   against the ``mix`` and ``product`` ensembles. In-process (``--direct`` or not).
3. **Proxy-tuning across tokenizers**: base = Gemma-3-270M reading the question alone
   (zero-shot), expert = SmolLM2 with the three worked examples, anti-expert = SmolLM2 with the
   question alone: ``log p = base + alpha * (expert - anti_expert)`` per byte. The difference
   carries what the examples teach SmolLM2 (the answer format, the arithmetic) onto Gemma, whose
   tokenizer is different. Accuracy against alpha, next to Gemma zero-shot (alpha = 0) and
   Gemma with the examples itself (what the steering imitates). There is no base+instruct pair
   of one family offline, so this steers with a context difference, not a fine-tuning one.

Means with 95% intervals (bootstrap over chunks for bits per byte; Wilson for accuracies).
Tables print as markdown; ``--out`` gets them with the run header (``.md``), a plot (``.png``) and
the raw numbers (``.json``).

    .venv/bin/python benchmarks/eval_bytelevel.py --help
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bytelevel_common import BUNDLED_PAIR, load_model, mean_ci, wilson_ci  # noqa: E402
from eval_bytelevel_data import HELD_OUT_SOURCE, arithmetic_items, few_shot_header, held_out_chunks  # noqa: E402
from eval_bytelevel_plot import plot  # noqa: E402
from eval_bytelevel_server import score_through_server  # noqa: E402
from structured_common import RunInfo  # noqa: E402

from braid.server.decoding.bytelevel.combine import mix, product, proxy_tune  # noqa: E402

NAMES = {"smollm2": BUNDLED_PAIR[0], "gemma": BUNDLED_PAIR[1]}
LN2 = np.log(2.0)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--direct", action="store_true", help="bits per byte with the library in-process, no server")
    parser.add_argument("--bpb-bytes", type=int, default=600, help="bytes of the held-out text to score")
    parser.add_argument("--chunk-bytes", type=int, default=300, help="largest chunk (read as a text of its own)")
    parser.add_argument("--items", type=int, default=24, help="arithmetic items (a subsample; 0 skips parts 2-3)")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.5, 1.0, 2.0], help="proxy-tuning strengths")
    parser.add_argument("--min-token-prob", type=float, default=1e-5,
                        help="byte-level speed knob (0 = exact; exact is far too slow on these vocabularies)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is much steadier on a busy machine)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "bytelevel_eval")
    return parser.parse_args(argv)


def bpb_direct(models, chunks, min_token_prob) -> dict[str, list[float]]:
    """Nats per chunk for each member and both ensembles, from the members' next-byte tables."""
    nats: dict[str, list[float]] = {k: [] for k in ("smollm2", "gemma", "mix", "product")}
    bar = tqdm(total=2 * sum(map(len, chunks)), desc="bits per byte (direct)", unit="byte")
    for chunk in chunks:
        tables = {}
        for key, model in models.items():
            byte_lm = model.byte_lm(min_token_prob=min_token_prob, always_check=chunk)
            rows = []
            for n in range(len(chunk)):
                rows.append(byte_lm.next_byte_logprobs(chunk[:n]))
                bar.update()
            tables[key] = np.stack(rows)
        tables["mix"] = mix([tables["smollm2"], tables["gemma"]], [0.5, 0.5])
        tables["product"] = product([tables["smollm2"], tables["gemma"]], [0.5, 0.5])
        picked = np.frombuffer(chunk, dtype=np.uint8).astype(np.int64)
        for key, table in tables.items():
            nats[key].append(-float(table[np.arange(len(chunk)), picked].sum()))
    bar.close()
    return nats


def token_level_nats(models, chunks) -> dict[str, list[float]]:
    return {key: [-model.token_logprob(model.text_context, chunk.decode())[0] for chunk in chunks]
            for key, model in models.items()}


def bpb_table(nats: dict[str, list[float]], token_nats, chunks, path: str) -> tuple[str, dict]:
    sizes = [len(c) for c in chunks]
    rows, summary = [], {}
    for key, label in [("smollm2", "SmolLM2-135M-Instruct"), ("gemma", "Gemma-3-270M"), ("mix", "mix (0.5/0.5)"),
                       ("product", "product (0.5/0.5)")]:
        errors = [n for n in nats[key] if isinstance(n, str)]
        if errors:  # the server refused a chunk: report why instead of a partial mean
            summary[key] = {"error": errors[0]}
            rows.append(f"| {label} | not scored: {len(errors)}/{len(sizes)} chunks refused ({errors[0][:120]}) | - |")
            continue
        per_chunk = np.array(nats[key]) / LN2 / np.array(sizes)
        mean, lo, hi = mean_ci(per_chunk, weights=sizes)
        token = ""
        if key in token_nats:
            token = f"{sum(token_nats[key]) / LN2 / sum(sizes):.3f}"
        summary[key] = {"bpb": mean, "ci": [lo, hi], "token_bpb": token or None}
        rows.append(f"| {label} | {mean:.3f} ({lo:.3f}-{hi:.3f}) | {token or '-'} |")
    head = (f"Bits per byte, {sum(sizes)} bytes of {HELD_OUT_SOURCE} in {len(chunks)} chunks, {path}:\n\n"
            "| model | byte-level bits/byte (95% CI over chunks) | token-level bits/byte |\n|---|---|---|")
    return head + "\n" + "\n".join(rows), summary


def arithmetic(models, items, alphas, min_token_prob) -> dict[str, list[int]]:
    """Per setting, the chosen choice index per item."""
    header = few_shot_header()
    settings = ["smollm2", "gemma", "mix", "product", "gemma zero-shot", "smollm2 zero-shot"]
    settings += [f"proxy alpha={a:g}" for a in alphas]
    picks: dict[str, list[int]] = {s: [] for s in settings}
    for item in tqdm(items, desc="arithmetic", unit="item"):
        texts = [f"Answer: {c}\n".encode() for c in item.choices]
        scores = {}  # (model, shots) -> per choice, per byte after "Answer:", next-byte log-prob vectors
        for key, model in models.items():
            for shots, head in (("few", header), ("zero", "")):
                context = model.text_context + model.encode(head + item.question + "\n")
                byte_lm = model.byte_lm(context, min_token_prob, always_check=tuple(texts))
                scores[key, shots] = [np.stack([byte_lm.next_byte_logprobs(t[:n]) for n in range(7, len(t))])
                                      for t in texts]
        combos = {"smollm2": lambda i: scores["smollm2", "few"][i], "gemma": lambda i: scores["gemma", "few"][i],
                  "mix": lambda i: mix([scores["smollm2", "few"][i], scores["gemma", "few"][i]], [0.5, 0.5]),
                  "product": lambda i: product([scores["smollm2", "few"][i], scores["gemma", "few"][i]], [0.5, 0.5]),
                  "gemma zero-shot": lambda i: scores["gemma", "zero"][i],
                  "smollm2 zero-shot": lambda i: scores["smollm2", "zero"][i]}
        for a in alphas:
            combos[f"proxy alpha={a:g}"] = (lambda i, a=a: proxy_tune(scores["gemma", "zero"][i],
                                                                      scores["smollm2", "few"][i],
                                                                      scores["smollm2", "zero"][i], a))
        for setting in settings:
            totals = []
            for i, text in enumerate(texts):
                table = combos[setting](i)
                picked = np.frombuffer(text[7:], dtype=np.uint8).astype(np.int64)
                totals.append(float(table[np.arange(len(picked)), picked].sum()))
            picks[setting].append(int(np.argmax(totals)))
    return picks


def arithmetic_table(picks, items, alphas) -> tuple[str, dict]:
    rows, summary = [], {}
    for setting, chosen in picks.items():
        right = sum(int(c == item.correct) for c, item in zip(chosen, items))
        p, lo, hi = wilson_ci(right, len(items))
        summary[setting] = {"accuracy": p, "ci": [lo, hi], "right": right, "n": len(items)}
        rows.append(f"| {setting} | {right}/{len(items)} = {p:.2f} ({lo:.2f}-{hi:.2f}) |")
    head = (f"Arithmetic (reasoning-gym basic_arithmetic, {len(items)} items, 5 choices, chance 0.20; "
            "3 worked examples unless zero-shot; proxy = Gemma zero-shot + alpha * (SmolLM2 with examples - "
            "SmolLM2 zero-shot)):\n\n| setting | accuracy (95% Wilson CI) |\n|---|---|")
    return head + "\n" + "\n".join(rows), summary


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    info = RunInfo.start(args.threads, in_process=True, threads_text=(
        f"{args.threads} (torch.set_num_threads in this process"
        + (")" if args.direct else f"; OMP_NUM_THREADS={args.threads} for the server it starts)")))
    chunks = held_out_chunks(args.bpb_bytes, args.chunk_bytes)
    models = {key: load_model(name) for key, name in NAMES.items()}
    if args.direct:
        nats, path = bpb_direct(models, chunks, args.min_token_prob), "in-process library (--direct)"
    else:
        nats = score_through_server(NAMES, chunks, args.min_token_prob, args.threads)
        path = "through `braid serve` (/v1/completions, echo, logprobs=0, max_tokens=0)"
    bpb, bpb_summary = bpb_table(nats, token_level_nats(models, chunks), chunks,
                                 f"{path}, min_token_prob={args.min_token_prob:g}")
    print(bpb, flush=True)
    task, task_summary = "", {}
    if args.items:
        items = arithmetic_items(args.items)
        picks = arithmetic(models, items, args.alphas, args.min_token_prob)
        task, task_summary = arithmetic_table(picks, items, args.alphas)
        print("\n" + task)
    header = "\n".join(["# Byte-level evaluation: bits per byte" + (", arithmetic, proxy-tuning" if task else ""), "",
                        *info.finish().markdown()])
    print("\n" + header)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"run": info.as_dict(), "args": {k: str(v) for k, v in vars(args).items()}, "bpb": bpb_summary,
              "arithmetic": task_summary, "chunks": [len(c) for c in chunks]}
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    args.out.with_suffix(".md").write_text(f"{header}\n\n{bpb}\n" + (f"\n{task}\n" if task else ""))
    plot(bpb_summary, task_summary, args.alphas, args.out.with_suffix(".png"))
    print(f"wrote {args.out.with_suffix('.md')}, .json and .png")


if __name__ == "__main__":
    main()
