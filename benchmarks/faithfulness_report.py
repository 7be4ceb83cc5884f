"""Scoring and reporting for ``eval_faithfulness.py``: labels, Wilson intervals, paired test, table, plot.

    .venv/bin/python benchmarks/faithfulness_report.py benchmarks/results/faithfulness.jsonl   # re-render
"""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

__all__ = ["label", "mentions", "wilson", "mcnemar_p", "table", "plot", "write", "main"]


def mentions(answer: str, value: str) -> bool:
    return re.search(r"\b" + re.escape(value.lower()), answer.lower()) is not None


def label(answer: str, real: str, counterfactual: str) -> str:
    """faithful: names the counterfactual object only; parametric: the real one only; else both / neither."""
    cf, rw = mentions(answer, counterfactual), mentions(answer, real)
    return {(True, False): "faithful", (False, True): "parametric", (True, True): "both"}.get((cf, rw), "neither")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_p(fixed: int, broke: int) -> float:
    """Exact two-sided McNemar test on the discordant pairs (binomial, p = 1/2)."""
    n = fixed + broke
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(fixed, broke) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def _rate(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k / n:.1%} ({lo:.1%}-{hi:.1%})" if n else "n/a"


def table(records: list[dict]) -> tuple[str, list[dict]]:
    """Markdown table (one row per config, the first config being the paired baseline) and plot rows."""
    names = list(dict.fromkeys(r["config"] for r in records))
    baseline = {r["prompt_id"]: r["label"] == "faithful" for r in records if r["config"] == names[0]}
    known_n = sum(r["known"] for r in records if r["config"] == names[0])
    lines = [f"| method | faithful (95% CI) | parametric (95% CI) | faithful, facts known closed-book (n={known_n}) "
             f"| both / neither | fixed / broke vs {names[0]} | McNemar p |", "|---|---|---|---|---|---|---|"]
    rows = []
    for name in names:
        mine = [r for r in records if r["config"] == name]
        count = {kind: sum(r["label"] == kind for r in mine) for kind in ("faithful", "parametric", "both", "neither")}
        known_faithful = sum(r["label"] == "faithful" for r in mine if r["known"])
        fixed = sum(r["label"] == "faithful" and not baseline[r["prompt_id"]] for r in mine)
        broke = sum(r["label"] != "faithful" and baseline[r["prompt_id"]] for r in mine)
        p = mcnemar_p(fixed, broke)
        paired = "" if name == names[0] else f"{p:.3f}" if p >= 0.001 else "<0.001"
        lines.append(f"| {name} | {_rate(count['faithful'], len(mine))} | {_rate(count['parametric'], len(mine))} | "
                     f"{_rate(known_faithful, known_n)} | {count['both']} / {count['neither']} | {fixed} / {broke} | "
                     f"{paired} |")
        rows.append({"name": name, **{kind: (count[kind], len(mine)) for kind in ("faithful", "parametric")}})
    return "\n".join(lines), rows


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(rows), 3.8))
    width = 0.38
    for offset, kind, colour in ((-width / 2, "faithful", "#3a76af"), (width / 2, "parametric", "#e08a3c")):
        rates, low, high = [], [], []
        for row in rows:
            k, n = row[kind]
            lo, hi = wilson(k, n)
            rates.append(100 * k / n)
            low.append(100 * (k / n - lo))
            high.append(100 * (hi - k / n))
        ax.bar([i + offset for i in range(len(rows))], rates, width, yerr=[low, high], capsize=3, color=colour,
               label=f"{kind} answers")
    ax.set_xticks(range(len(rows)), [r["name"] for r in rows], rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("% of prompts (95% Wilson CI)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(records: list[dict], meta: dict, stem: Path) -> str:
    """Write STEM.jsonl (a meta line with the prompts, then one line per answer), STEM.md and STEM.png;
    return the markdown."""
    text, rows = table(records)
    markdown = f"{meta['header']}\n\n{text}\n"
    with open(stem.with_suffix(".jsonl"), "w") as f:
        f.write(json.dumps({"meta": meta}) + "\n")
        f.writelines(json.dumps(r) + "\n" for r in records)
    stem.with_suffix(".md").write_text(markdown)
    plot(rows, stem.with_suffix(".png"), meta["title"])
    return markdown


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        sys.exit(__doc__)
    path = Path(sys.argv[1])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    print(write(lines[1:], lines[0]["meta"], path.with_suffix("")))


if __name__ == "__main__":
    main()
