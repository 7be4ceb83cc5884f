"""Byte-level approximation error: how far the fast settings are from the exact next-byte distribution.

`bytelevel.py` measures how fast the approximate settings are; this measures how wrong they
are. On the bundled SmolLM2-135M-Instruct (float32, CPU, transformers), for short prefixes cut
from the speed benchmark's prompts (mid-word, right after a space, at a word end, or the whole
prompt), each read as the server reads a completion prompt (the bytes after the model's text
context, the prefix passed as ``always_check``), the next-byte distribution (256 bytes + END)
is computed

* exactly (``min_token_prob=0``, no ``max_branches``: every token of the vocabulary checked for
  canonicality at every branch), and
* under each ``--settings`` entry MIN_TOKEN_PROB[:MAX_BRANCHES[:SHARE]] (tokens below
  MIN_TOKEN_PROB are not checked: masked and the rest renormalized, or, with SHARE, kept with the
  model's probability while branches below SHARE x the most likely one are dropped; the cover
  keeps the MAX_BRANCHES most likely branches).

Two regimes, both run by default (``--regimes``): (a) ``prompt``, the above; (b)
``continuation``: the prompts are token context (as in `bytelevel.py`'s generation) and the
prefixes are the first ``--cut-bytes`` bytes of each prompt's token-level greedy continuation:
the regime the speed table measures, where the prefix is generated text rather than a prompt
read at byte level.

Per setting and regime: mean and max total variation distance to the exact distribution, mean
|log p_exact(b) - log p_approx(b)| (nats) for the byte b the exact distribution ranks first, how
often the most likely byte agrees, and seconds per prefix; then each prefix's distance. Written
(``--out``, default ``bytelevel_error``) to benchmarks/results/OUT.md (the run header, the
summary table of both regimes side by side, the per-regime tables with each prefix) and OUT.json.
The exact distribution costs seconds per byte of prefix (~7 s on a busy 2-core machine), so the
prefixes are short: the default run (both regimes) takes ~10-20 minutes there.

    .venv/bin/python benchmarks/bytelevel_error.py --help
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bytelevel import PROMPTS  # noqa: E402
from bytelevel_common import (BUNDLED_PAIR, KNOBS_HELP, Stopwatch, knobs_label, load_model, parse_knobs,  # noqa: E402
                              token_greedy)
from structured_common import RESULTS, RunInfo  # noqa: E402

from braid.server.decoding.bytelevel import END  # noqa: E402

# Cut from the speed benchmark's prompts, short because the exact distribution costs seconds per
# byte of prefix (a new cover at each byte, every token of the vocabulary checked at each new
# branch); prefixes of one prompt share the checker's cached answers.
PREFIXES = [("The capi", "mid-word"), ("def ", "after space"), ("Water boils at", "whole prompt"),
            ("The three ", "after space"), ("Water bo", "mid-word"), ("To make ", "after space"),
            ("def fibon", "mid-word"), ("Once upon", "word end"), ("The capital of ", "after space"),
            ("Once upon a ti", "mid-word"), ("def fibonacci(n):\n", "whole prompt"), ("To make a cup", "word end")]
assert all(any(p.startswith(text) for p in PROMPTS) for text, _ in PREFIXES)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--prefixes", type=int, default=8, help=f"how many prefixes (the first N of {len(PREFIXES)})")
    parser.add_argument("--settings", nargs="+", default=["1e-5", "1e-3", "1e-3:4", "1e-2:2", "1e-3::1e-4", "1e-3::1e-3"],
                        help="approximate settings " + KNOBS_HELP + " (those of the speed table)")
    parser.add_argument("--no-always-check", action="store_true",
                        help="don't pass the prefix as always_check (the server does; without it a prefix "
                             "whose tokens are all below MIN_TOKEN_PROB gets probability zero)")
    parser.add_argument("--regimes", default="prompt,continuation",
                        help="comma list: prompt (prefixes read at byte level), continuation (prompts as context "
                             "tokens; prefixes cut from the token-level greedy continuation)")
    parser.add_argument("--continuation", action="store_true", help="the same as --regimes continuation")
    parser.add_argument("--prompts", type=int, default=4, help="continuation regime: how many prompts")
    parser.add_argument("--cut-bytes", type=int, nargs="+", default=[3, 7],
                        help="continuation regime: prefix lengths in bytes of the greedy continuation")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadier on a shared machine)")
    parser.add_argument("--out", default="bytelevel_error", help="results/OUT.md and results/OUT.json ('': print only)")
    args = parser.parse_args(argv)
    if args.continuation:
        args.regimes = "continuation"
    args.regimes = args.regimes.split(",")
    if unknown := set(args.regimes) - set(REGIMES):
        parser.error(f"unknown regimes {sorted(unknown)}: choose from {', '.join(REGIMES)}")
    return args


REGIMES = {"prompt": "(a) prompt read at byte level", "continuation": "(b) generated text after a token-level prompt"}


def total_variation(p_log: np.ndarray, q_log: np.ndarray) -> float:
    return 0.5 * float(np.abs(np.exp(p_log) - np.exp(q_log)).sum())


class Tally:
    def __init__(self):
        self.tv: list[float] = []
        self.top_gap: list[float] = []  # |log p_exact(b*) - log p_approx(b*)|, b* = exact argmax
        self.agree = 0
        self.zero = 0  # prefixes the setting gives probability zero
        self.seconds = 0.0


def items(model, args, regime: str) -> list[tuple[tuple[int, ...], bytes, bytes, str, str]]:
    """(context ids, byte prefix, always_check, shown as, kind) for each prefix to measure."""
    if regime == "prompt":
        return [(model.text_context, text.encode("utf-8"), b"" if args.no_always_check else text.encode("utf-8"),
                 repr(text), kind) for text, kind in PREFIXES[: args.prefixes]]
    out = []
    for prompt in PROMPTS[: args.prompts]:
        context = model.text_context + model.encode(prompt)
        continuation = token_greedy(model, context, max(args.cut_bytes) + 4)[0].encode("utf-8")
        out += [(context, continuation[:n], b"", f"{prompt!r} + {continuation[:n]!r}", f"{n} bytes generated")
                for n in args.cut_bytes]
    return out


def run(model, args, regime: str):
    settings = [(s, parse_knobs(s)) for s in args.settings]
    tallies: dict[str, Tally] = defaultdict(Tally)
    detail: list[tuple[str, str, dict[str, float]]] = []
    for context, prefix, check, text, kind in tqdm(items(model, args, regime), desc=f"{regime} prefixes",
                                                   unit="prefix"):
        with Stopwatch() as watch:
            exact = model.byte_lm(context).next_byte_logprobs(prefix)
        tallies["exact"].seconds += watch.seconds
        best = int(np.argmax(exact))
        row = {}
        for name, knobs in settings:
            tally = tallies[name]
            with Stopwatch() as watch:
                try:
                    approx = model.byte_lm(context, always_check=check, **knobs).next_byte_logprobs(prefix)
                except ValueError:  # the approximation gives the prefix probability zero
                    approx = None
            tally.seconds += watch.seconds
            if approx is None:
                tally.zero += 1
                tally.tv.append(1.0)
                tally.top_gap.append(np.inf)
            else:
                tally.tv.append(total_variation(exact, approx))
                tally.top_gap.append(abs(float(exact[best] - approx[best])))
                tally.agree += int(np.argmax(approx)) == best
            row[name] = tally.tv[-1]
        detail.append((text, kind, row | {"best": best, "p_best": float(np.exp(exact[best]))}))
    return tallies, detail


def label(name: str) -> str:
    return knobs_label(name)


def byte_name(symbol: int) -> str:
    return "END" if symbol == END else repr(bytes([symbol]))[1:]


def summary(tally: Tally, n: int) -> dict:
    gaps = np.array(tally.top_gap)
    return {"tv_mean": float(np.mean(tally.tv)), "tv_max": float(np.max(tally.tv)),
            "top_gap": float(gaps.mean()) if np.isfinite(gaps).all() else None, "zero": tally.zero,
            "agree": tally.agree, "n": n, "s_per_prefix": tally.seconds / max(n, 1)}


def gap_cell(row: dict) -> str:
    if row["top_gap"] is None:
        return f"inf: {row['zero']}/{row['n']} prefixes get probability zero"
    return f"{row['top_gap']:.2g}"


def regime_text(regime: str, detail, args, exact_s: float) -> str:
    n = len(detail)
    kinds = ", ".join(f"{count} {kind}" for kind in dict.fromkeys(k for _, k, _ in detail)
                      if (count := sum(k == kind for _, k, _ in detail)))
    how = ("prompts as context tokens, prefixes generated" if regime == "continuation" else
           f"prefixes read at byte level after the text context, as always_check: {not args.no_always_check}")
    return f"{REGIMES[regime]}: {n} prefixes ({kinds}); {how}; exact took {exact_s / max(n, 1):.1f} s per prefix"


def report(results: dict, args, info: RunInfo) -> str:
    """``results``: regime -> (tallies, detail)."""
    regimes = list(results)
    names = list(args.settings)
    lines = ["# Byte-level approximation error: fast settings vs the exact next-byte distribution", "",
             "SmolLM2-135M-Instruct float32 on CPU (transformers), next-byte distribution over 256 bytes + END; exact ="
             " `min_token_prob=0`, no `max_branches`. TV = total variation distance to exact; log-prob error = "
             "|log p_exact(b) - log p_approx(b)| in nats for the byte b that exact ranks first.", "",
             *(f"- {regime_text(r, results[r][1], args, results[r][0]['exact'].seconds)}" for r in regimes), "",
             *info.markdown(), "",
             "| setting | " + " | ".join(f"{REGIMES[r].split(' ')[0]} {r}: TV mean | max | log-prob error of top byte | "
                                          "same top byte" for r in regimes) + " |",
             "|---|" + "---|---|---|---|" * len(regimes)]
    for name in names:
        cells = []
        for r in regimes:
            tallies, detail = results[r]
            row = summary(tallies[name], len(detail))
            cells.append(f"{row['tv_mean']:.2g} | {row['tv_max']:.2g} | {gap_cell(row)} | {row['agree']}/{row['n']}")
        lines.append(f"| {label(name)} | " + " | ".join(cells) + " |")
    for r in regimes:
        tallies, detail = results[r]
        lines += ["", f"## {REGIMES[r]}", "",
                  "| setting | total variation to exact, mean | max | mean abs. log-prob error of the exact top byte "
                  "(nats) | same top byte | s / prefix |", "|---|---|---|---|---|---|"]
        for name in names:
            row = summary(tallies[name], len(detail))
            lines.append(f"| {label(name)} | {row['tv_mean']:.2g} | {row['tv_max']:.2g} | {gap_cell(row)} | "
                         f"{row['agree']}/{row['n']} | {row['s_per_prefix']:.2f} |")
        lines += ["", "| prefix | cut | exact top byte (p) | " + " | ".join(f"TV {label(s)}" for s in names) + " |",
                  "|---|---|---|" + "---|" * len(names)]
        for text, kind, row in detail:
            lines.append(f"| `{text}` | {kind} | `{byte_name(row['best'])}` ({row['p_best']:.2f}) | "
                         + " | ".join(f"{row[s]:.2g}" for s in names) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    info = RunInfo.start(args.threads, in_process=True)
    model = load_model(BUNDLED_PAIR[0])
    results = {regime: run(model, args, regime) for regime in args.regimes}
    text = report(results, args, info.finish())
    print(text)
    if args.out:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{args.out}.md").write_text(text)
        data = {"run": info.as_dict(), "args": vars(args), "regimes": {
            r: {"exact_s": tallies["exact"].seconds,
                "settings": {name: {"label": label(name), **summary(tallies[name], len(detail)),
                                    "tv_each": tallies[name].tv,
                                    "top_gap_each": [g if np.isfinite(g) else None for g in tallies[name].top_gap]}
                             for name in args.settings},
                "prefixes": [{"prefix": text, "cut": kind, **row} for text, kind, row in detail]}
            for r, (tallies, detail) in results.items()}}
        (RESULTS / f"{args.out}.json").write_text(json.dumps(data, indent=1) + "\n")
        print(f"written: {RESULTS / args.out}.md, .json")


if __name__ == "__main__":
    main()
