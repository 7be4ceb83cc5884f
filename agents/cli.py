"""`braid run WORKFLOW INPUT` and `braid runs list|show`: workflows from the command line, with live
progress on stderr and the final output on stdout."""
from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer

from .runtime.config import ConfigError, RuntimeSettings
from .runtime.errors import WorkflowError
from .runtime.events import NodeFinished, NodeStarted, Progress, RunFinished, RunResult, RunStarted
from .runtime.io import InputError
from .runtime.records import RunRecord, RunRecords
from .runtime.usage import usage_by_role_dicts

__all__ = ["run_command", "runs_app"]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _read_input(value: str | None) -> str | None:
    if value is None:
        return None
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        path = Path(value[1:])
        if not path.is_file():
            raise _fail(f"input file {path} does not exist")
        return path.read_text()
    return value


def _parse_sets(pairs: list[str]) -> dict:
    """`--set roles.assistant.temperature=0.7` -> nested dict (values read as JSON when they parse)."""
    out: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise _fail(f"--set takes KEY=VALUE (dots for nesting), got {pair!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def _tokens(usage: dict) -> int:
    return sum(u.total_tokens for u in usage.values())


class _ProgressPrinter:
    """One line per node and progress report on stderr: elapsed, node, seconds, tokens so far."""

    def __init__(self, quiet: bool):
        self.quiet, self.t0, self.tokens = quiet, time.perf_counter(), 0

    def __call__(self, event) -> None:
        if self.quiet:
            return
        stamp = f"[{time.perf_counter() - self.t0:7.1f}s]"
        if isinstance(event, RunStarted):
            what = "resuming" if event.resumed else "starting"
            typer.echo(f"{stamp} {what} {event.workflow} run {event.thread_id} (attempt {event.attempt})", err=True)
        elif isinstance(event, NodeStarted):
            typer.echo(f"{stamp} {event.node} ...", err=True)
        elif isinstance(event, NodeFinished):
            self.tokens += _tokens(event.usage)
            status = f"failed: {event.error}" if event.error else "done"
            typer.echo(f"{stamp} {event.node} {status} in {event.seconds:.1f} s, {_tokens(event.usage)} tokens "
                       f"(run: {self.tokens} tokens)", err=True)
        elif isinstance(event, Progress):
            details = ", ".join(f"{k}={v}" for k, v in event.data.items())
            typer.echo(f"{stamp} {event.node}: {details}"[:300], err=True)


def _result_json(result: RunResult) -> dict:
    return {"thread_id": result.thread_id, "workflow": result.workflow, "status": result.status,
            "output": result.output.model_dump(mode="json") if result.output else None,
            "usage": result.usage.as_dict(),
            "usage_by_role": usage_by_role_dicts(result.usage_by_role),
            "elapsed_s": result.elapsed_s, "model_s": result.usage.model_s, "model_wall_s": result.model_wall_s,
            "other_s": result.other_s}


def _deliver_files(result: RunResult, out: Path | None) -> None:
    if not result.output or not result.output.files:
        return
    for artifact in result.output.files:
        target = artifact.path
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            target = str(shutil.copy2(artifact.path, out / artifact.name))
        typer.echo(f"file: {target} ({artifact.media_type})", err=True)


def run_command(
    workflow: Annotated[str, typer.Argument(help="Workflow name (`braid runs workflows` lists them) or "
                                                 "package.module:SPEC.", show_default=False)],
    input: Annotated[Optional[str], typer.Argument(
        help="The input: text, a JSON object, @FILE, or - for stdin. Not needed with --resume.",
        show_default=False)] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Workflow config (YAML/JSON/TOML): "
                                                   "models per role, MCP tools, workflow settings.")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="Override one config field: KEY=VALUE, dots for "
                                            "nesting (roles.assistant.temperature=0.7). Repeatable.")] = [],
    thread: Annotated[Optional[str], typer.Option("--thread", help="Thread id of the run (default: a new one). "
                                                  "With --resume: the run to continue.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run --thread from its last "
                                         "checkpoint (finished nodes are not re-run).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result (output, usage per role, "
                                          "timings) as JSON instead of the answer.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Copy the files the run produced into this "
                                                "folder.")] = None,
    checkpointer: Annotated[Optional[str], typer.Option(
        envvar="BRAID_CHECKPOINTER", help="Where runs are checkpointed: a SQLite path (default "
        "$BRAID_HOME/agents/checkpoints.sqlite), postgres://... (shared by workers) or memory.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines on stderr.")] = False,
) -> None:
    """Run a workflow: live progress (node, round, tokens, elapsed) on stderr, the answer on stdout.

    Exit codes: 0 finished, 1 the run failed, 2 bad input/config or a server it needs is not reachable,
    130 interrupted (resume it with --thread ID --resume).
    """
    from .runtime.runner import load_workflow

    if resume and not thread:
        raise _fail("--resume needs --thread ID (`braid runs list` shows interrupted runs)")
    text = _read_input(input)
    if text is None and not resume:
        raise _fail("give the workflow an INPUT (text, @FILE or -)")
    try:
        wf = load_workflow(workflow, config, settings=RuntimeSettings.from_env(checkpointer=checkpointer),
                           overrides=_parse_sets(set_))
    except (ConfigError, WorkflowError) as exc:
        raise _fail(str(exc)) from None
    printer = _ProgressPrinter(quiet)

    async def go() -> RunResult:
        result = None
        async for event in wf.astream(text, thread_id=thread, resume=resume, surface="cli"):
            printer(event)
            if isinstance(event, RunFinished):
                result = event.result
        return result

    try:
        result = asyncio.run(go())
    except KeyboardInterrupt:
        raise _fail("interrupted; resume with --thread ID --resume (`braid runs list` shows the id)", 130) from None
    except InputError as exc:
        raise _fail(str(exc)) from None
    except WorkflowError as exc:
        code = 1 if type(exc).__name__ == "RunFailed" else 2
        raise _fail(str(exc), code) from None
    _deliver_files(result, out)
    if as_json:
        typer.echo(json.dumps(_result_json(result), indent=2))
    else:
        typer.echo(result.output.answer if result.output else "")
        if not quiet:
            typer.echo(f"[{result.status}] thread {result.thread_id}: {result.elapsed_s:.1f} s "
                       f"({result.usage.model_s:.1f} s in {result.usage.calls} model calls), "
                       f"{result.usage.total_tokens} tokens", err=True)


runs_app = typer.Typer(help="Runs of workflows: list them, show one (per node timings and tokens).",
                       no_args_is_help=True, add_completion=False)


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _records() -> RunRecords:
    return RunRecords(RuntimeSettings.from_env().records_path)


@runs_app.command("list")
def list_runs(
    limit: Annotated[int, typer.Option(min=1, help="Most recent runs to show.")] = 20,
    workflow: Annotated[Optional[str], typer.Option(help="Only runs of this workflow.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="As JSON lines.")] = False,
) -> None:
    """Recent runs, newest first: thread id, workflow, status, started (UTC), seconds, tokens."""
    for record in _records().list(limit, workflow):
        if as_json:
            typer.echo(json.dumps(_record_json(record)))
        else:
            typer.echo(f"{record.thread_id}  {record.workflow:<12} {record.status:<11} {_when(record.created_at)}  "
                       f"{record.elapsed_s:7.1f} s  {record.usage.total_tokens:7d} tokens  ({record.surface})")


def _record_json(record: RunRecord) -> dict:
    return {"thread_id": record.thread_id, "workflow": record.workflow, "status": record.status,
            "surface": record.surface, "attempts": record.attempts, "created_at": _when(record.created_at),
            "elapsed_s": record.elapsed_s, "usage": record.usage.as_dict(),
            "usage_by_role": usage_by_role_dicts(record.usage_by_role),
            "config": record.config, "input": record.input, "output": record.output, "error": record.error,
            "nodes": [{"attempt": n.attempt, "node": n.node, "status": n.status, "seconds": n.seconds,
                       "usage": usage_by_role_dicts(n.usage), "error": n.error}
                      for n in record.nodes]}


@runs_app.command("show")
def show_run(
    thread_id: Annotated[str, typer.Argument(help="The run's thread id (see `braid runs list`).",
                                             show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="The whole record as JSON.")] = False,
) -> None:
    """One run: status, input, per node (attempt, seconds, tokens per role), totals, output."""
    record = _records().get(thread_id)
    if record is None:
        raise _fail(f"no run with thread id {thread_id!r} (see `braid runs list`)")
    if as_json:
        typer.echo(json.dumps(_record_json(record), indent=2))
        return
    typer.echo(f"run {record.thread_id}: {record.workflow}, {record.status}, {record.attempts} attempt(s), "
               f"via {record.surface}, started {_when(record.created_at)} UTC")
    typer.echo(f"input: {json.dumps(record.input)[:300]}")
    for node in record.nodes:
        roles = ", ".join(f"{r}: {u.prompt_tokens}+{u.completion_tokens} tokens in {u.calls} call(s)"
                          for r, u in node.usage.items()) or "no model calls"
        seconds = f"{node.seconds:.2f} s" if node.seconds is not None else "-"
        typer.echo(f"  [{node.attempt}] {node.node:<16} {node.status:<11} {seconds:>9}  {roles}")
    typer.echo(f"total: {record.elapsed_s:.1f} s, {record.usage.total_tokens} tokens "
               f"({record.usage.prompt_tokens} prompt + {record.usage.completion_tokens} completion), "
               f"{record.usage.model_s:.1f} s in {record.usage.calls} model calls")
    if record.error:
        typer.echo(f"error: {record.error}")
    if record.output:
        typer.echo(f"answer: {record.output.get('answer', '')}")


@runs_app.command("workflows")
def list_workflows() -> None:
    """The workflows this installation can run."""
    from .runtime.registry import get_spec, workflow_names  # LangGraph: only when needed

    for name in workflow_names():
        typer.echo(f"{name:<12} {get_spec(name).summary}")
