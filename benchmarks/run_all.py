"""Run every benchmark and eval script in sequence, unattended and resumable, then render the READMEs.

Each entry below is one command that writes its result files under ``benchmarks/results/`` (with
the run header: command line, time, machine, threads, load, versions, commit). The state file
``benchmarks/results/run_all_state.json`` records, per entry, when it started and finished, its
exit status and its log; a finished entry is skipped on the next call unless ``--force``, so after
an interruption (a crash, a reboot, Ctrl-C) the same command goes on where it stopped. An entry
that was interrupted is started again; one whose script is itself resumable (``bfcl``,
``structured_validity``, ``xolver``: they append JSONL lines and skip what is there) continues
from its lines. A new run of a finished entry (``--force``) first removes those lines, so the
numbers are all from the new run. A failed entry is recorded and the next one runs; the exit
status is 1 if any failed. Then ``render_readme.py`` copies the result tables into README.md and
benchmarks/README.md (``--no-render`` skips it).

Logs: ``benchmarks/run_all_logs/NAME.log`` (not committed). Run it in the background, e.g.

    nohup .venv/bin/python benchmarks/run_all.py > /tmp/run_all.out 2>&1 &
    .venv/bin/python benchmarks/run_all.py --status          # what finished, when, how long
    .venv/bin/python benchmarks/run_all.py --only retrieval,bytelevel_error
    .venv/bin/python benchmarks/run_all.py --from contrastive --skip serve
    .venv/bin/python benchmarks/run_all.py --force --only retrieval   # run a finished one again

Durations are rough, measured on the 2-core CPU these benchmarks were written on, quiet or
shared with other jobs; under heavy load they take longer (the runs with torch's default 2
threads far longer: their OpenMP threads spin under contention). Entries marked "not by
default" run only when named in ``--only``.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
STATE = RESULTS / "run_all_state.json"
LOGS = HERE / "run_all_logs"
PYTHON = ".venv/bin/python" if (REPO / ".venv/bin/python").exists() else sys.executable


@dataclass(frozen=True)
class Entry:
    name: str
    args: tuple[str, ...]  # after the python interpreter, from the repository root
    minutes: str  # rough duration on a 2-core CPU
    writes: str  # result files (under benchmarks/results/)
    fresh: tuple[str, ...] = ()  # files the script resumes from: removed before a new (not resumed) run
    default: bool = True
    note: str = ""
    env: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def command(self) -> list[str]:
        return [PYTHON, *self.args]


ENTRIES = [
    Entry("retrieval", ("benchmarks/retrieval.py",), "1", "retrieval.md, .json"),
    Entry("serve", ("benchmarks/serve.py", "--servers", "vllm,braid-vllm,braid-transformers", "--concurrency", "1,8,32",
                    "--max-tokens", "32", "--rounds", "2"), "8-45", "serve.md, .json"),
    Entry("serve_c8", ("benchmarks/serve.py", "--servers", "vllm,braid-vllm", "--concurrency", "8", "--rounds", "4",
                       "--requests-per-level", "48", "--max-tokens", "64", "--out", "serve_c8"), "16-25",
          "serve_c8.md, .json"),
    Entry("startup", ("benchmarks/startup.py",), "16-30", "startup.md, .json"),
    Entry("contrastive", ("benchmarks/contrastive.py", "--threads", "1", "--out", "contrastive_bench"), "17-25",
          "contrastive_bench.md (both engines)"),
    Entry("contrastive_hf", ("benchmarks/contrastive.py", "--engines", "transformers", "--threads", "1", "--out",
                             "contrastive_bench_hf"), "7-15", "contrastive_bench_hf.md"),
    Entry("contrastive_hf_2threads", ("benchmarks/contrastive.py", "--engines", "transformers", "--out",
                                      "contrastive_sbl"), "10-15", "contrastive_sbl.md (torch's default threads)"),
    Entry("faithfulness", ("benchmarks/eval_faithfulness.py", "--threads", "1"), "7-11", "faithfulness.md, .png, .jsonl"),
    Entry("faithfulness_sweep", ("benchmarks/eval_faithfulness.py", "--threads", "1", "--methods",
                                 "plain,cad:a=0.5,steer:s=2,ascd:a=0.5,ascd:a=1:s=2", "--out", "faithfulness_sweep"),
          "7-10", "faithfulness_sweep.md, .png, .jsonl"),
    Entry("bytelevel", ("benchmarks/bytelevel.py",), "6", "bytelevel_bench.md, .json (1 thread)"),
    Entry("bytelevel_2threads", ("benchmarks/bytelevel.py", "--threads", "2"), "6",
          "bytelevel_bench_2threads.md, .json"),
    Entry("bytelevel_error", ("benchmarks/bytelevel_error.py",), "9-20", "bytelevel_error.md, .json"),
    Entry("eval_bytelevel", ("benchmarks/eval_bytelevel.py", "--direct"), "10-16", "bytelevel_eval.md, .json, .png"),
    Entry("eval_bytelevel_server", ("benchmarks/eval_bytelevel.py", "--items", "0", "--out",
                                    "benchmarks/results/bytelevel_eval_server"), "38",
          "bytelevel_eval_server.md, .json, .png"),
    Entry("structured_speed", ("benchmarks/structured_speed.py",), "25", "structured_speed.md, .json"),
    Entry("structured_validity", ("benchmarks/structured_validity.py", "--max-tokens", "192"), "7",
          "structured_validity.md, .jsonl", fresh=("structured_validity.jsonl",)),
    Entry("bfcl", ("benchmarks/bfcl.py", "--engine", "transformers", "--limit", "15", "--concurrency", "2"), "31",
          "bfcl_smollm2-135m-instruct_transformers.md, .jsonl, .png",
          fresh=("bfcl_smollm2-135m-instruct_transformers.jsonl",)),
    Entry("bfcl_single", ("benchmarks/bfcl.py", "--engine", "transformers", "--limit", "15", "--concurrency", "2",
                          "--arms", "required-single", "--categories", "simple,multiple", "--out",
                          "bfcl_smollm2-135m-instruct_transformers_single"), "3",
          "bfcl_smollm2-135m-instruct_transformers_single.md, .jsonl, .png",
          fresh=("bfcl_smollm2-135m-instruct_transformers_single.jsonl",)),
    Entry("agents_overhead", ("benchmarks/agents_overhead.py", "--runs", "8"), "8", "agents_overhead.md, .json"),
    Entry("soak", ("benchmarks/soak.py",), "12", "soak/soak.md, .json, .png"),
    Entry("xolver_estimate", ("benchmarks/xolver_eval.py", "--estimate", "benchmarks/results/xolver-pilot"), "0.1",
          "xolver-pilot/estimate.md (from the pilot's results.jsonl)"),
    Entry("xolver", ("benchmarks/xolver_eval.py",), "30000",
          "xolver-SET/ (report.md, accuracy.png, results.jsonl, rounds.md)", default=False,
          note="needs a model server at BRAID_AGENT_BASE_URL; ~21 days at concurrency 1 on this CPU "
               "(xolver-pilot/estimate.md), meant for a GPU server"),
]
BY_NAME = {e.name: e for e in ENTRIES}


def entries_help() -> str:
    lines = ["entries, in the order they run (rough minutes on a 2-core CPU; results under benchmarks/results/):"]
    for e in ENTRIES:
        extra = "; ".join(filter(None, ["not by default" if not e.default else "", e.note]))
        lines.append(f"  {e.name:<24} {e.minutes:>6} min  {' '.join(e.command)}")
        lines.append(f"  {'':<24} {'':>6}      -> {e.writes}" + (f" ({extra})" if extra else ""))
    return "\n".join(lines)


def load_state() -> dict:
    if STATE.exists():
        return json.loads(STATE.read_text())
    return {"entries": {}}


def save_state(state: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    tmp = STATE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(tmp, STATE)


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def names(value: str) -> list[str]:
    chosen = [n for n in value.split(",") if n]
    if unknown := [n for n in chosen if n not in BY_NAME]:
        raise argparse.ArgumentTypeError(f"unknown entries {unknown}; known: {', '.join(BY_NAME)}")
    return chosen


def select(args) -> list[Entry]:
    chosen = [BY_NAME[n] for n in args.only] if args.only else [e for e in ENTRIES if e.default]
    chosen = sorted(chosen, key=ENTRIES.index)
    if args.start:
        chosen = [e for e in chosen if ENTRIES.index(e) >= ENTRIES.index(BY_NAME[args.start])]
    return [e for e in chosen if e.name not in args.skip]


def status(state: dict) -> str:
    lines = [f"state: {STATE.relative_to(REPO)}"]
    for e in ENTRIES:
        rec = state["entries"].get(e.name)
        if rec is None:
            lines.append(f"  {e.name:<24} not run")
            continue
        took = f", {rec['seconds'] / 60:.1f} min" if rec.get("seconds") is not None else ""
        lines.append(f"  {e.name:<24} {rec['status']:<11} started {rec['started']}"
                     + (f", ended {rec['ended']}" if rec.get("ended") else "") + took
                     + (f", exit {rec['rc']}" if rec.get("rc") not in (None, 0) else ""))
    return "\n".join(lines)


class Interrupted(Exception):
    pass


def run_entry(entry: Entry, state: dict, force: bool) -> int:
    rec = state["entries"].get(entry.name)
    resuming = rec is not None and rec["status"] in ("running", "interrupted", "failed") and not force
    if not resuming:
        for name in entry.fresh:
            path = RESULTS / name
            if path.exists():
                path.unlink()
                print(f"  removed {path.relative_to(REPO)} (a new run, not a resumed one)", flush=True)
    LOGS.mkdir(exist_ok=True)
    log_path = LOGS / f"{entry.name}.log"
    state["entries"][entry.name] = {"status": "running", "started": now(), "ended": None, "seconds": None,
                                    "rc": None, "command": " ".join(entry.command),
                                    "log": str(log_path.relative_to(REPO)), "resumed": resuming,
                                    "load_start": os.getloadavg()}
    save_state(state)
    print(f"[{now()}] {entry.name}: {' '.join(entry.command)} (~{entry.minutes} min; log {log_path.relative_to(REPO)})",
          flush=True)
    t0 = time.monotonic()
    with log_path.open("a") as log:
        log.write(f"\n===== {now()} {' '.join(entry.command)}\n")
        log.flush()
        process = subprocess.Popen(entry.command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **entry.env}, start_new_session=True)
        try:
            rc = process.wait()
        except (KeyboardInterrupt, Interrupted):
            os.killpg(process.pid, signal.SIGTERM)  # the scripts stop their servers on SIGTERM
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            state["entries"][entry.name].update(status="interrupted", ended=now(), seconds=time.monotonic() - t0)
            save_state(state)
            raise
    state["entries"][entry.name].update(status="finished" if rc == 0 else "failed", ended=now(),
                                        seconds=time.monotonic() - t0, rc=rc, load_end=os.getloadavg())
    save_state(state)
    print(f"[{now()}] {entry.name}: {'finished' if rc == 0 else f'FAILED (exit {rc}), see the log'} in "
          f"{(time.monotonic() - t0) / 60:.1f} min", flush=True)
    return rc


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__ + "\n" + entries_help(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=names, default=[], help="comma list of entries to run (any, also those not "
                                                               "run by default)")
    parser.add_argument("--skip", type=names, default=[], help="comma list of entries not to run")
    parser.add_argument("--from", dest="start", choices=list(BY_NAME), help="start at this entry (list order)")
    parser.add_argument("--force", action="store_true", help="run finished entries again (from scratch)")
    parser.add_argument("--stop-on-error", action="store_true", help="stop at the first failed entry")
    parser.add_argument("--no-render", action="store_true", help="don't run render_readme.py at the end")
    parser.add_argument("--dry-run", action="store_true", help="print what would run and exit")
    parser.add_argument("--status", action="store_true", help="print the state file's summary and exit")
    parser.add_argument("--list", action="store_true", help="print the entries and exit")
    args = parser.parse_args(argv)
    if args.list:
        print(entries_help())
        return 0
    state = load_state()
    if args.status:
        print(status(state))
        return 0
    todo = select(args)
    if not args.dry_run:
        RESULTS.mkdir(exist_ok=True)
        lock = open(STATE.with_suffix(".lock"), "w")  # held until this process exits
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("another run_all.py is running (it holds benchmarks/results/run_all_state.lock)", file=sys.stderr)
            return 2
        state = load_state()  # as that other run may have left it
    if args.dry_run:
        for e in todo:
            done = state["entries"].get(e.name, {}).get("status") == "finished" and not args.force
            print(f"{'skip (finished)' if done else 'run':<16} {e.name:<24} ~{e.minutes} min  {' '.join(e.command)}")
        return 0

    def on_term(*_):
        raise Interrupted()
    signal.signal(signal.SIGTERM, on_term)
    failed = []
    try:
        for e in todo:
            rec = state["entries"].get(e.name)
            if rec and rec["status"] == "finished" and not args.force:
                print(f"[{now()}] {e.name}: finished {rec['ended']} ({rec['seconds'] / 60:.1f} min), skipped "
                      "(--force runs it again)", flush=True)
                continue
            if run_entry(e, state, args.force) != 0:
                failed.append(e.name)
                if args.stop_on_error:
                    break
    except (KeyboardInterrupt, Interrupted):
        print(f"[{now()}] interrupted; the same command resumes", flush=True)
        return 130
    render_rc = 0
    if not args.no_render:
        render_rc = subprocess.run([PYTHON, "benchmarks/render_readme.py"], cwd=REPO).returncode
    print(status(state))
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed or render_rc else 0


if __name__ == "__main__":
    sys.exit(main())
