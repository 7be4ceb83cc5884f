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

With ``--continuation`` the prompts are instead token context (as in `bytelevel.py`'s
generation) and the prefixes are the first ``--cut-bytes`` bytes of each prompt's token-level
greedy continuation: the regime the speed table measures, where the prefix is generated text
rather than a prompt read at byte level.

Printed (markdown), per setting: mean and max total variation distance to the exact
distribution, mean |log p_exact(b) - log p_approx(b)| (nats) for the byte b the exact
distribution ranks first, how often the most likely byte agrees, and seconds per prefix. With
``--detail`` also each prefix's distance. The exact distribution costs seconds per byte of prefix
(~7 s on a busy 2-core machine), so the prefixes are short: the default run took ~6 minutes there.

    .venv/bin/python benchmarks/bytelevel_error.py --help
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bytelevel import PROMPTS  # noqa: E402
from bytelevel_common import (BUNDLED_PAIR, KNOBS_HELP, Stopwatch, knobs_label, load_model, machine_line,  # noqa: E402
                              parse_knobs, token_greedy)

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
    parser.add_argument("--continuation", action="store_true",
                        help="prompts as context tokens; prefixes cut from the token-level greedy continuation")
    parser.add_argument("--prompts", type=int, default=4, help="with --continuation: how many prompts")
    parser.add_argument("--cut-bytes", type=int, nargs="+", default=[3, 7],
                        help="with --continuation: prefix lengths in bytes of the greedy continuation")
    parser.add_argument("--detail", action="store_true", help="also print each prefix's distance per setting")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadier on a shared machine)")
    return parser.parse_args(argv)


def total_variation(p_log: np.ndarray, q_log: np.ndarray) -> float:
    return 0.5 * float(np.abs(np.exp(p_log) - np.exp(q_log)).sum())


class Tally:
    def __init__(self):
        self.tv: list[float] = []
        self.top_gap: list[float] = []  # |log p_exact(b*) - log p_approx(b*)|, b* = exact argmax
        self.agree = 0
        self.zero = 0  # prefixes the setting gives probability zero
        self.seconds = 0.0


def items(model, args) -> list[tuple[tuple[int, ...], bytes, bytes, str, str]]:
    """(context ids, byte prefix, always_check, shown as, kind) for each prefix to measure."""
    if not args.continuation:
        return [(model.text_context, text.encode("utf-8"), b"" if args.no_always_check else text.encode("utf-8"),
                 repr(text), kind) for text, kind in PREFIXES[: args.prefixes]]
    out = []
    for prompt in PROMPTS[: args.prompts]:
        context = model.text_context + model.encode(prompt)
        continuation = token_greedy(model, context, max(args.cut_bytes) + 4)[0].encode("utf-8")
        out += [(context, continuation[:n], b"", f"{prompt!r} + {continuation[:n]!r}", f"{n} bytes generated")
                for n in args.cut_bytes]
    return out


def run(args):
    torch.set_num_threads(args.threads)
    model = load_model(BUNDLED_PAIR[0])
    settings = [(s, parse_knobs(s)) for s in args.settings]
    tallies: dict[str, Tally] = defaultdict(Tally)
    detail: list[tuple[str, str, dict[str, float]]] = []
    for context, prefix, check, text, kind in tqdm(items(model, args), desc="prefixes", unit="prefix"):
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


def table(tallies: dict[str, Tally], detail, args) -> str:
    n = len(detail)
    kinds = ", ".join(f"{count} {kind}" for kind in dict.fromkeys(k for _, k, _ in detail)
                      if (count := sum(k == kind for _, k, _ in detail)))
    lines = [f"Byte-level approximation error ({machine_line()}); SmolLM2-135M-Instruct float32 on CPU; "
             f"{n} prefixes ({kinds}); "
             + ("prompts as context tokens, prefixes generated; " if args.continuation else
                f"prefixes read at byte level, as always_check: {not args.no_always_check}; ")
             + "exact: "
             f"{tallies['exact'].seconds / max(n, 1):.1f} s per prefix.", "",
             "| setting | total variation to exact, mean | max | mean abs. log-prob error of the exact top byte "
             "(nats) | same top byte | s / prefix |",
             "|---|---|---|---|---|---|"]
    for name, t in tallies.items():
        if name == "exact":
            continue
        gaps = np.array(t.top_gap)
        gap = f"{gaps.mean():.2g}" if np.isfinite(gaps).all() else f"inf ({t.zero} zero-probability prefixes)"
        lines.append(f"| {label(name)} | {np.mean(t.tv):.2g} | {np.max(t.tv):.2g} | {gap} | {t.agree}/{n} "
                     f"| {t.seconds / n:.2f} |")
    if args.detail:
        names = [name for name in tallies if name != "exact"]
        lines += ["", "| prefix | cut | exact top byte (p) | " + " | ".join(f"TV {label(s)}" for s in names) + " |",
                  "|---|---|---|" + "---|" * len(names)]
        for text, kind, row in detail:
            lines.append(f"| `{text}` | {kind} | `{byte_name(row['best'])}` ({row['p_best']:.2f}) | "
                         + " | ".join(f"{row[s]:.2g}" for s in names) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    tallies, detail = run(args)
    print(table(tallies, detail, args))


if __name__ == "__main__":
    main()
