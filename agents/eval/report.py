"""What an eval found, per arm and per pair of arms, as markdown and as a plot of accuracy (95%
Wilson interval) against mean tokens per item."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from .arms import Arm
from .data import Dataset
from .provenance import Provenance
from .results import ItemResult
from .stats import McNemar, Proportion, mcnemar, wilson

__all__ = ["ArmSummary", "EvalReport", "plot", "render_markdown", "summarize"]


@dataclass(frozen=True)
class ArmSummary:
    arm: Arm
    accuracy: Proportion
    failed: int
    mean_prompt_tokens: float
    mean_completion_tokens: float
    mean_calls: float
    mean_seconds: float
    mean_model_s: float

    @property
    def mean_tokens(self) -> float:
        return self.mean_prompt_tokens + self.mean_completion_tokens

    @property
    def mean_other_s(self) -> float:
        return max(0.0, self.mean_seconds - self.mean_model_s)


def _mean(values: list[float]) -> float:
    return fmean(values) if values else math.nan


def summarize(arm: Arm, rows: list[ItemResult]) -> ArmSummary:
    return ArmSummary(arm, wilson(sum(r.correct for r in rows), len(rows)), sum(r.status == "failed" for r in rows),
                      _mean([r.prompt_tokens for r in rows]), _mean([r.completion_tokens for r in rows]),
                      _mean([r.calls for r in rows]), _mean([r.elapsed_s for r in rows]),
                      _mean([r.model_s for r in rows]))


@dataclass(frozen=True)
class EvalReport:
    workflow: str
    data: Path
    selection: str
    """Which items of the data file, e.g. "items 1-40 of 100"."""
    items: int
    results_path: Path
    arms: list[ArmSummary]
    comparisons: list[McNemar]
    provenance: Provenance
    written_now: int
    resumed: int

    @classmethod
    def build(cls, workflow: str, dataset: Dataset, arms: list[Arm], results: dict[tuple[str, str], ItemResult],
              results_path: Path, provenance: Provenance, written_now: int, resumed: int) -> "EvalReport":
        """From the results of the selected items and arms only (the file may hold others)."""
        item_ids = [item.id for item in dataset.items]
        rows = {arm.name: [results[(arm.name, i)] for i in item_ids if (arm.name, i) in results] for arm in arms}
        correct = {name: {r.id: r.correct for r in arm_rows} for name, arm_rows in rows.items()}
        pairs = [mcnemar(a.name, correct[a.name], b.name, correct[b.name]) for a, b in itertools.combinations(arms, 2)]
        return cls(workflow, dataset.path, dataset.selection, len(item_ids), results_path,
                   [summarize(a, rows[a.name]) for a in arms], pairs, provenance, written_now, resumed)


def _f(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def render_markdown(report: EvalReport) -> str:
    lines = [f"# Eval of `{report.workflow}` on `{report.data.name}`", "",
             "Written by `braid eval` (numbers from the results file; provenance measured by this run).", "",
             *report.provenance.markdown(),
             f"- data: `{report.data}`, {report.selection}",
             f"- results: `{report.results_path}` ({report.written_now} written by this run, {report.resumed} "
             "from earlier runs; the last line per arm and item counts)", "",
             "## Accuracy", "",
             "Failed runs count as incorrect. Tokens and seconds are means per item; model s is time waiting for "
             "model calls, other s the rest.", "",
             "| arm | workflow | config | n | correct | failed | accuracy | 95% CI (Wilson) | tokens/item "
             "(prompt + completion) | model calls/item | s/item | model s/item | other s/item |",
             "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for s in report.arms:
        acc = s.accuracy
        lines.append(f"| {s.arm.name} | {s.arm.workflow} | {s.arm.source} | {acc.n} of {report.items} | "
                     f"{acc.successes} | {s.failed} | {_f(acc.value, 3)} | [{_f(acc.low, 3)}, {_f(acc.high, 3)}] | "
                     f"{_f(s.mean_tokens)} ({_f(s.mean_prompt_tokens)} + {_f(s.mean_completion_tokens)}) | "
                     f"{_f(s.mean_calls, 2)} | {_f(s.mean_seconds, 2)} | {_f(s.mean_model_s, 2)} | "
                     f"{_f(s.mean_other_s, 2)} |")
    if report.comparisons:
        lines += ["", "## Paired comparisons (exact McNemar)", "",
                  "On the items both arms have a result for; b: only A correct, c: only B correct; p: two-sided "
                  "exact binomial test of b against b + c at 1/2.", "",
                  "| A | B | items | both correct | only A (b) | only B (c) | neither | p |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for c in report.comparisons:
            lines.append(f"| {c.arm_a} | {c.arm_b} | {c.n} | {c.both} | {c.only_a} | {c.only_b} | {c.neither} | "
                         f"{c.p_value:.4g} |")
    return "\n".join(lines) + "\n"


def plot(report: EvalReport, path: Path) -> None:
    """Accuracy with its CI against mean tokens per item, one point per arm (Agg, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    for s in (s for s in report.arms if s.accuracy.n):
        acc = s.accuracy
        x = 0.0 if math.isnan(s.mean_tokens) else s.mean_tokens
        axes.errorbar([x], [acc.value], yerr=[[acc.value - acc.low], [acc.high - acc.value]], fmt="o", capsize=4,
                      label=f"{s.arm.name} ({acc.successes}/{acc.n})")
        axes.annotate(s.arm.name, (x, acc.value), textcoords="offset points", xytext=(6, 4), fontsize=8)
    axes.set_xlabel("mean tokens per item (prompt + completion)")
    axes.set_ylabel("accuracy (95% Wilson CI)")
    axes.set_ylim(-0.02, 1.08)  # room for the labels of points at 1.0
    axes.set_title(f"{report.workflow} on {report.data.name}", fontsize=10)
    axes.grid(alpha=0.3)
    if any(s.accuracy.n for s in report.arms):
        axes.legend(fontsize=8, loc="best")
    figure.savefig(path, dpi=120, format="png")
