"""`braid eval WORKFLOW --data FILE.jsonl [--arm NAME=CONFIG ...]`: evaluate a workflow's arms on a
dataset. Heavy imports wait until the command runs, so `braid --help` stays quick."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

__all__ = ["eval_command"]


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def eval_command(
    workflow: Annotated[str, typer.Argument(
        help="The workflow: a built-in name (e.g. example) or package.module:ATTR naming a WorkflowSpec.",
        show_default=False)],
    data: Annotated[Path, typer.Option(
        "--data", help="JSONL dataset, one item per line: `input` (text or object) or `question`/`problem` "
        "text, the expected `answer`, and an optional `id` (default: the line number; keep ids stable, results "
        "are keyed by them).", show_default=False)],
    arm: Annotated[Optional[list[str]], typer.Option(
        "--arm", help="An arm as NAME=CONFIG_FILE (YAML/JSON/TOML workflow config; a top-level `workflow:` key "
        "runs another workflow). Repeat for several arms.", show_default=False)] = None,
    arms: Annotated[Optional[Path], typer.Option(
        "--arms", help="YAML file mapping arm names to {workflow: optional, config: mapping or config file}. "
        "Without --arm/--arms: one arm `default` with the workflow's defaults.", show_default=False)] = None,
    limit: Annotated[Optional[int], typer.Option(
        "--limit", min=1, help="Evaluate at most this many items (after --offset).", show_default=False)] = None,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many items first.")] = 0,
    concurrency: Annotated[int, typer.Option(
        "--concurrency", min=1, help="Runs in flight at once (all arms together).")] = 1,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Folder for results.jsonl, report.md and accuracy.png; default: "
        "benchmarks/results/eval-WORKFLOW-DATASTEM under the current folder.", show_default=False)] = None,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="Run again the items whose run failed (a new line is appended; the last line "
        "per arm and item counts).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Evaluate a workflow on a JSONL dataset, comparing arms (configs) on the same items.

    Resumable: each result is appended to OUT/results.jsonl as it finishes; run the same command again
    after a stop and it skips the finished items. The report (OUT/report.md: accuracy with 95% Wilson
    intervals, tokens and seconds per item, exact McNemar tests between arms; OUT/accuracy.png) is
    written when the eval ends. A failed run counts as incorrect; an unreachable model or tool server
    stops the eval (exit code 2). Runs are recorded under BRAID_HOME like every other run.
    """
    import asyncio

    from braid.agents.runtime.config import ConfigError, RuntimeSettings
    from braid.agents.runtime.errors import ServiceUnreachable, UnknownWorkflow
    from braid.agents.runtime.registry import get_spec

    from .arms import ArmError, resolve_arms
    from .data import DataError, load_items
    from .harness import EvalPlan, default_out, load_arm_workflows, run_eval
    from .results import ResultsBusy

    try:
        dataset = load_items(data, offset=offset, limit=limit)
        spec = get_spec(workflow)
        arm_list = resolve_arms(workflow, arm or [], arms)
        workflows = load_arm_workflows(arm_list, RuntimeSettings.from_env())
    except (DataError, ArmError, ConfigError, UnknownWorkflow) as exc:
        _fail(str(exc))
    if not dataset.items:
        _fail(f"{data}: {dataset.selection} (check --offset and --limit)")
    plan = EvalPlan(spec.name, dataset, arm_list, out or default_out(spec.name, data), concurrency, retry_failed,
                    progress=not quiet)
    try:
        outcome = asyncio.run(run_eval(plan, workflows))
    except ResultsBusy as exc:
        _fail(str(exc))
    except ServiceUnreachable as exc:
        _fail(f"eval stopped: {exc}. Finished items are kept in {plan.results_path}; rerun the same command "
              "to continue")
    except KeyboardInterrupt:
        typer.echo(f"stopped: finished items are kept in {plan.results_path}; rerun the same command to continue",
                   err=True)
        raise typer.Exit(130) from None
    for summary in outcome.report.arms:
        acc = summary.accuracy
        ci = f"[{acc.low:.3f}, {acc.high:.3f}]" if acc.n else "n/a"
        typer.echo(f"{summary.arm.name}: {acc.successes}/{acc.n} correct ({acc.value:.3f}, 95% CI {ci}), "
                   f"{summary.failed} failed, {summary.mean_tokens:.1f} tokens/item")
    typer.echo(f"report: {outcome.report_path}\nplot: {outcome.plot_path}\nresults: {outcome.results_path}")
