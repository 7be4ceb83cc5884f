"""Accuracy by round of an Xolver eval: the answer the team would give had it stopped after round r.

    python benchmarks/xolver_rounds.py benchmarks/results/xolver-basic-arithmetic [...]

For each (arm, item) of OUT/results.jsonl (written by `braid eval xolver`), the run is found by its
thread id under BRAID_HOME (the same BRAID_HOME the eval ran with):

* when the run's output has `best_by_round` (a proposed XolverOutput field: the store's best answer
  after each round) and `tokens_by_round`, those are read from the run record (runs.sqlite);
* else the rounds are replayed from the run's last checkpoint (checkpoints.sqlite, SQLite
  checkpointer only): its state keeps every response of every round (`responses`), and the judge
  is deterministic without the LLM judge, so scoring each round with `execution_score` and merging
  with `merge_store` gives the store the run had after each round; its first entry's answer is the
  answer after that round. Runs with `llm_judge: true` cannot be replayed and are left out.

A run that stopped early (all agents at the top score) keeps its last answer for later rounds, as
it would have. Round r's tokens: the tokens of the responses of rounds <= r plus the planner's (the
output's `tokens` less all responses' tokens; the verifier's, when it ran, are counted there too).
Correctness: Xolver's `is_correct`. Writes OUT/rounds.md (accuracy with 95% Wilson intervals per
arm and round, mean tokens) and OUT/rounds.png (accuracy against rounds and against tokens). The
final round's replayed answer is checked against the run's final answer; disagreements (the
verifier extracted one, or the replay is off) are counted in rounds.md.
"""
from __future__ import annotations

import argparse
import math
import sqlite3
import sys
from collections import defaultdict
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean

sys.path.insert(0, str(Path(__file__).resolve().parent))
from structured_common import RunInfo  # noqa: E402


@dataclass
class RunRounds:
    answers: list[str | None]
    """The answer after each round (the store's best)."""
    tokens: list[int]
    """Tokens spent by the end of each round."""
    final: str | None
    source: str


@dataclass
class ArmRounds:
    runs: list[tuple[list[bool], list[int]]] = field(default_factory=list)
    """Per run: correct after each round, tokens by the end of each round."""
    sources: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    skipped: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    mismatched: int = 0

    def by_round(self) -> list[tuple[list[bool], list[int]]]:
        """Per round 1..R (R: the most any run did): every run's correctness and tokens; a run that
        stopped earlier keeps its last round's values, as the team would have answered."""
        last = max((len(c) for c, _ in self.runs), default=0)
        rounds = []
        for number in range(last):
            correct = [c[min(number, len(c) - 1)] for c, _ in self.runs if c]
            tokens = [t[min(number, len(t) - 1)] for _, t in self.runs if t]
            rounds.append((correct, tokens))
        return rounds


def _checkpoint_state(path: Path, thread_id: str) -> dict | None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    with closing(sqlite3.connect(str(path), check_same_thread=False)) as conn:
        found = SqliteSaver(conn).get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
    return dict(found.checkpoint["channel_values"]) if found else None


def replay(responses: list[dict], agents: int, planner_tokens: int) -> tuple[list[str | None], list[int]]:
    """The store's best answer and the tokens spent after each round, recomputed as the judge did."""
    from braid.agents.xolver.scoring import execution_score
    from braid.agents.xolver.state import Response, merge_store

    by_round: dict[int, list[Response]] = defaultdict(list)
    for raw in responses:
        response = Response.model_validate(raw)
        by_round[response.round].append(response)
    store: list[Response] = []
    answers, tokens, spent = [], [], planner_tokens
    for number in sorted(by_round):
        current = sorted(by_round[number], key=lambda r: r.agent)
        judged = []
        for response in current:
            score, feedback = execution_score(response, [o for o in current if o.agent != response.agent])
            judged.append(response.model_copy(update={"score": score, "feedback": feedback}))
        store = merge_store(store, judged, agents)
        spent += sum(r.tokens for r in current)
        answers.append(store[0].answer if store else None)
        tokens.append(spent)
    return answers, tokens


def run_rounds(records, checkpoints: Path, thread_id: str) -> RunRounds | str:
    """The rounds of one run, or why they cannot be had."""
    record = records.get(thread_id)
    if record is None or record.output is None:
        return "no run record with an output (another BRAID_HOME?)"
    output, config = record.output, record.config
    if output.get("best_by_round"):
        return RunRounds(list(output["best_by_round"]), list(output.get("tokens_by_round") or []),
                         output.get("final_answer"), "output")
    if config.get("llm_judge"):
        return "llm_judge runs cannot be replayed"
    if not checkpoints.is_file():
        return f"no checkpoints at {checkpoints}"
    state = _checkpoint_state(checkpoints, thread_id)
    if not state or not state.get("responses"):
        return "no responses in the run's last checkpoint"
    planner = max(0, int(output.get("tokens") or 0) - sum(int(r.get("tokens") or 0) for r in state["responses"]))
    answers, tokens = replay(state["responses"], int(config.get("agents") or 3), planner)
    return RunRounds(answers, tokens, output.get("final_answer"), "checkpoint replay")


def collect(out: Path, home: Path, arms_wanted: set[str] | None) -> dict[str, ArmRounds]:
    from braid.agents.eval.results import read_results
    from braid.agents.runtime.records import RunRecords
    from braid.agents.xolver.answers import same_answer
    from braid.agents.xolver.workflow import XolverOutput, is_correct

    results = read_results(out / "results.jsonl")
    if not results:
        raise SystemExit(f"error: no results in {out / 'results.jsonl'}")
    records = RunRecords(home / "agents" / "runs.sqlite")
    checkpoints = home / "agents" / "checkpoints.sqlite"
    arms: dict[str, ArmRounds] = defaultdict(ArmRounds)
    for (arm, _item), row in sorted(results.items()):
        if row.workflow != "xolver" or (arms_wanted and arm not in arms_wanted):
            continue
        summary = arms[arm]
        if row.status != "finished" or not row.thread_id:
            summary.skipped["failed run"] += 1
            continue
        found = run_rounds(records, checkpoints, row.thread_id)
        if isinstance(found, str):
            summary.skipped[found] += 1
            continue
        summary.sources[found.source] += 1
        if found.answers and found.final is not None and not same_answer(found.answers[-1], found.final):
            summary.mismatched += 1
        summary.runs.append(([is_correct(XolverOutput.model_construct(final_answer=a), row.expected)
                               for a in found.answers], list(found.tokens)))
    return arms


def main(argv: list[str] | None = None) -> None:
    from braid.agents.eval.stats import wilson
    from braid.agents.runtime.config import RuntimeSettings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outs", type=Path, nargs="+", help="Eval result folders (each with results.jsonl).")
    parser.add_argument("--arm", action="append", default=None, help="Only these arms (repeatable).")
    parser.add_argument("--home", type=Path, default=None, help="BRAID_HOME the eval ran with (default: env).")
    args = parser.parse_args(argv)
    home = args.home or Path(RuntimeSettings.from_env().home)
    for out in args.outs:
        info = RunInfo.start(0, threads_text="none: an analysis of recorded runs, no model runs")
        arms = collect(out, home, set(args.arm) if args.arm else None)
        lines = [f"# Accuracy by round: `{out}`", "", *info.finish().markdown(), "",
                 "Written by `benchmarks/xolver_rounds.py` from results.jsonl and the runs under "
                 f"`{home}`. Round r: the answer had the team stopped after round r (a run that stopped "
                 "earlier keeps its answer). Tokens: mean spent by the end of round r (Xolver's own count).", "",
                 "| arm | round | n | correct | accuracy | 95% CI (Wilson) | tokens/item | source | left out | "
                 "final round != run's answer |", "|---|---:|---:|---:|---:|---|---:|---|---|---:|"]
        curves: dict[str, list[tuple[int, float, float, float, float]]] = {}
        for arm, summary in arms.items():
            sources = ", ".join(f"{k}: {v}" for k, v in summary.sources.items()) or "-"
            skipped = ", ".join(f"{k}: {v}" for k, v in summary.skipped.items()) or "-"
            rounds = summary.by_round()
            if not rounds:
                lines.append(f"| {arm} | - | 0 | - | - | - | - | {sources} | {skipped} | - |")
            for number, (correct, tokens) in enumerate(rounds, start=1):
                acc = wilson(sum(correct), len(correct))
                mean_tokens = fmean(tokens) if tokens else math.nan
                curves.setdefault(arm, []).append((number, acc.value, acc.low, acc.high, mean_tokens))
                lines.append(f"| {arm} | {number} | {acc.n} | {acc.successes} | {acc.value:.3f} | "
                             f"[{acc.low:.3f}, {acc.high:.3f}] | {mean_tokens:.1f} | {sources} | {skipped} | "
                             f"{summary.mismatched} |")
        (out / "rounds.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        _plot(curves, out / "rounds.png", str(out.name))
        print(f"{out / 'rounds.md'}\n{out / 'rounds.png'}", file=sys.stderr)


def _plot(curves: dict[str, list[tuple[int, float, float, float, float]]], path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    by_round, by_tokens = figure.subplots(1, 2, sharey=True)
    for index, (arm, points) in enumerate(curves.items()):
        rounds = [p[0] + 0.04 * (index - (len(curves) - 1) / 2) for p in points]  # arms side by side
        values = [p[1] for p in points]
        errors = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
        by_round.errorbar(rounds, values, yerr=errors, marker="o", capsize=3, label=arm)
        by_tokens.errorbar([p[4] for p in points], values, yerr=errors, marker="o", capsize=3, label=arm)
    by_round.set_xlabel("round (answer had the team stopped here)")
    by_round.set_ylabel("accuracy (95% Wilson CI)")
    by_tokens.set_xlabel("mean tokens per item by the end of the round")
    for axes in (by_round, by_tokens):
        axes.set_ylim(-0.02, 1.02)
        axes.grid(alpha=0.3)
    by_round.xaxis.get_major_locator().set_params(integer=True)
    if curves:
        by_round.legend(fontsize=8, loc="best")
    figure.suptitle(f"Xolver accuracy by round: {title}", fontsize=10)
    figure.savefig(path, dpi=120, format="png")


if __name__ == "__main__":
    main()
