"""Running an eval: every arm on every item not finished yet, a bounded number at a time, each result
appended to the results file as it comes; then the report (markdown and plot) of the selected items'
results, earlier runs' included."""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from braid.agents.runtime.config import ConfigError, RuntimeSettings
from braid.agents.runtime.errors import ServiceUnreachable
from braid.agents.runtime.io import InputError
from braid.agents.runtime.runner import RunFailed, Workflow, load_workflow
from braid.agents.runtime.usage import Usage

from .arms import Arm
from .data import Dataset, EvalItem
from .judge import judge
from .provenance import Provenance
from .report import EvalReport, plot, render_markdown
from .results import ItemResult, ResultsFile

__all__ = ["EvalOutcome", "EvalPlan", "default_out", "load_arm_workflows", "run_eval"]


@dataclass(frozen=True)
class EvalPlan:
    workflow: str
    """The workflow the report is named after (arms may run others)."""
    dataset: Dataset
    arms: list[Arm]
    out: Path
    concurrency: int = 1
    retry_failed: bool = False
    progress: bool = True

    @property
    def results_path(self) -> Path:
        return self.out / "results.jsonl"


@dataclass(frozen=True)
class EvalOutcome:
    report: EvalReport
    results_path: Path
    report_path: Path
    plot_path: Path


def default_out(workflow_name: str, data: Path) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"eval-{workflow_name}-{data.stem}")
    return Path("benchmarks") / "results" / safe


def load_arm_workflows(arms: list[Arm], settings: RuntimeSettings) -> dict[str, Workflow]:
    """Each arm's workflow with its validated config (raises UnknownWorkflow, ConfigError naming the arm)."""
    workflows = {}
    for arm in arms:
        try:
            workflows[arm.name] = load_workflow(arm.workflow, arm.config, settings=settings)
        except ConfigError as exc:
            raise ConfigError(f"arm {arm.name!r} ({arm.source}): {exc}") from None
    return workflows


def config_digest(arm: Arm) -> str:
    """Of the arm's config as given, API keys left out (a new key is the same arm, and no key is hashed)."""
    config = dict(arm.config)
    if isinstance(config.get("roles"), dict):
        config["roles"] = {name: {k: v for k, v in role.items() if k != "api_key"} if isinstance(role, dict) else role
                           for name, role in config["roles"].items()}
    text = json.dumps({"workflow": arm.workflow, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _row(workflow: Workflow, arm: Arm, item: EvalItem, digest: str, started: float, usage: Usage,
         model_s: float | None = None, **outcome: Any) -> ItemResult:
    """`model_s`: the time a model call was in flight (parallel calls once); else the calls' summed time."""
    return ItemResult(arm=arm.name, id=item.id, workflow=workflow.name, expected=item.answer, config_digest=digest,
                      prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                      total_tokens=usage.total_tokens, calls=usage.calls,
                      model_s=usage.model_s if model_s is None else model_s,
                      elapsed_s=time.perf_counter() - started, written_at=_utc(), **outcome)


async def _run_item(workflow: Workflow, arm: Arm, item: EvalItem, digest: str) -> ItemResult:
    """One arm on one item; a run that fails is a result (incorrect, with its error), not an exception."""
    started = time.perf_counter()
    try:
        result = await workflow.ainvoke(item.input, surface="eval")
    except (RunFailed, InputError) as exc:
        thread_id = exc.thread_id if isinstance(exc, RunFailed) else None
        record = workflow.records.get(thread_id) if thread_id else None  # the tokens it spent before failing
        return _row(workflow, arm, item, digest, started, record.usage if record else Usage(), status="failed",
                    correct=False, thread_id=thread_id, error=exc.reason if isinstance(exc, RunFailed) else str(exc))
    answer = result.output.answer if result.output else None
    try:
        correct = judge(workflow.spec, result.output, item.answer) if result.output else False
    except Exception as exc:  # noqa: BLE001 - a judge that raises on one output must not stop an eval of hours
        return _row(workflow, arm, item, digest, started, result.usage, status="failed", correct=False,
                    answer=answer, thread_id=result.thread_id, error=f"is_correct raised {type(exc).__name__}: {exc}")
    return _row(workflow, arm, item, digest, started, result.usage, result.model_wall_s, status="finished",
                correct=correct, answer=answer, thread_id=result.thread_id)


class _Tally:
    """Running accuracy per arm over the selected items, for the progress bar."""

    def __init__(self, arms: list[Arm], done: dict[tuple[str, str], ItemResult], selected: set[tuple[str, str]]):
        self.counts = {arm.name: [0, 0] for arm in arms}
        for key in selected & done.keys():
            self.add(done[key])

    def add(self, row: ItemResult, replaced: ItemResult | None = None) -> None:
        counts = self.counts[row.arm]
        if replaced is not None:
            counts[0] -= replaced.correct
            counts[1] -= 1
        counts[0] += row.correct
        counts[1] += 1

    def postfix(self) -> str:
        return " ".join(f"{arm}={c / n:.2f}" if n else f"{arm}=-" for arm, (c, n) in self.counts.items())


def _check_earlier(plan: EvalPlan, results: ResultsFile, digests: dict[str, str],
                   warn: Callable[[str], None]) -> None:
    """Warns when the results this eval resumes from may not be comparable with what it runs now."""
    if results.repaired_bytes:
        warn(f"{plan.results_path}: removed a torn last line ({results.repaired_bytes} bytes) left by a stopped "
             "run; its item runs again")
    if results.bad_lines:
        warn(f"warning: {results.bad_lines} lines of {plan.results_path} do not parse and are ignored")
    earlier = [(arm, item, results.done[(arm.name, item.id)]) for item in plan.dataset.items for arm in plan.arms
               if (arm.name, item.id) in results.done]
    changed = sorted({arm.name for arm, _, row in earlier if row.config_digest != digests[arm.name]})
    if changed:
        warn(f"warning: the config of arm(s) {', '.join(changed)} differs from the one their earlier results in "
             f"{plan.results_path} were run with; use another --out to keep them apart")
    stale = sum(row.expected != item.answer for _, item, row in earlier)
    if stale:
        warn(f"warning: {stale} earlier results in {plan.results_path} expected another answer than the data file "
             "gives now: did the data or its ids change? (ids default to line numbers)")


async def run_eval(plan: EvalPlan, workflows: dict[str, Workflow], *, argv: list[str] | None = None,
                   warn: Callable[[str], None] = lambda text: print(text, file=sys.stderr)) -> EvalOutcome:
    """Runs what is left of `plan`, then writes its report. A ServiceUnreachable stops the eval (after
    writing the report of what is done) and is raised: with a server gone no item can succeed."""
    provenance = Provenance.start(argv)
    digests = {arm.name: config_digest(arm) for arm in plan.arms}
    selected = {(arm.name, item.id) for item in plan.dataset.items for arm in plan.arms}
    with ResultsFile(plan.results_path) as results:
        _check_earlier(plan, results, digests, warn)
        jobs = [(arm, item) for item in plan.dataset.items for arm in plan.arms
                if (arm.name, item.id) not in results.done
                or (plan.retry_failed and results.done[(arm.name, item.id)].status == "failed")]
        resumed = len(selected) - len(jobs)
        tally = _Tally(plan.arms, results.done, selected)
        # Not on a terminal (a log file), a line every 30 s rather than a redraw per item.
        bar = tqdm(total=len(selected), initial=resumed, unit="run", desc=f"eval {plan.workflow}",
                   disable=not plan.progress, dynamic_ncols=True, file=sys.stderr,
                   mininterval=0.2 if sys.stderr.isatty() else 30.0, postfix=tally.postfix())
        gate = asyncio.Semaphore(plan.concurrency)
        written = 0

        async def one(arm: Arm, item: EvalItem) -> None:
            nonlocal written
            async with gate:
                row = await _run_item(workflows[arm.name], arm, item, digests[arm.name])
            tally.add(row, results.done.get(row.key))
            results.append(row)
            written += 1
            bar.set_postfix_str(tally.postfix(), refresh=False)
            bar.update(1)

        try:
            async with asyncio.TaskGroup() as group:
                for arm, item in jobs:
                    group.create_task(one(arm, item))
        except* ServiceUnreachable as failures:
            bar.close()
            _write_report(plan, results.done, provenance, written, resumed)
            raise failures.exceptions[0] from None
        bar.close()
        return _write_report(plan, results.done, provenance, written, resumed)


def _replace(path: Path, write: Callable[[Path], None]) -> None:
    """Writes through a temporary file, so a stopped run never leaves half a report."""
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    write(temporary)
    os.replace(temporary, path)


def _write_report(plan: EvalPlan, done: dict[tuple[str, str], ItemResult], provenance: Provenance, written: int,
                  resumed: int) -> EvalOutcome:
    report = EvalReport.build(plan.workflow, plan.dataset, plan.arms, done, plan.results_path, provenance.finish(),
                              written, resumed)
    report_path, plot_path = plan.out / "report.md", plan.out / "accuracy.png"
    _replace(report_path, lambda p: p.write_text(render_markdown(report), encoding="utf-8"))
    _replace(plot_path, lambda p: plot(report, p))
    return EvalOutcome(report, plan.results_path, report_path, plot_path)
