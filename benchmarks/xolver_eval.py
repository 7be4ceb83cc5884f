"""The whole Xolver eval, resumably: data, memory seed, then `braid eval xolver` per set with every arm.

    BRAID_AGENT_BASE_URL=http://127.0.0.1:8000/v1 python benchmarks/xolver_eval.py
    python benchmarks/xolver_eval.py --dry-run          # print the plan and the commands only
    python benchmarks/xolver_eval.py --estimate benchmarks/results/xolver-pilot   # time estimate.md

Steps (each skipped when already done, so stopping and rerunning the same command continues):
1. the data files under `$BRAID_HOME/eval-data/xolver` (`xolver_data.py build`, when missing);
2. the GSM8K-train experience memory `$BRAID_HOME/xolver-eval/seeded-memory` (`xolver_data.py
   seed-memory`, when the collection does not hold the whole seed corpus);
3. per set, into `benchmarks/results/xolver-SET[-TAG]/` (XOLVER_EVAL_SET=SET[-TAG], so
   `xolver-accum` gets a store of its own per set):
   a. calibration: `braid eval xolver` with every arm but `sc` on the first `--sc-calibration` items;
   b. sc's k: round(mean tokens/item of xolver-nomem / of single) there (one sc sample costs about
      one single pass), capped at XolverConfig's most agents; written once to OUT/arms/sc.yaml (and
      OUT/sc-budget.md) and kept on reruns, so the arm's config does not change mid-eval;
   c. `braid eval xolver` with every arm on `--limit N` items (resumable itself: finished (arm, item)
      pairs are skipped; arms run item by item, so a stopped eval still gives paired data);
4. per set, `xolver_rounds.py` (accuracy by round and by tokens: rounds.md, rounds.png).

The model: the roles' endpoint is env BRAID_AGENT_BASE_URL (and BRAID_API_KEY); `--model ID` writes
copies of the arm configs with `roles.default.model: ID` into OUT/arms and runs those (without it,
the first model the server lists). Give another model or endpoint a `--tag` so its results go to
folders of their own (braid eval warns when an arm's config changed under an existing results file).
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ARMS_DIR = HERE / "xolver_arms"
ARMS = ("direct", "single", "sc", "xolver-nomem", "xolver-seeded", "xolver-accum")
DEFAULT_SETS = ("basic-arithmetic=300", "gsm8k-test=300")
BUDGET_ARM, PER_SAMPLE_ARM = "xolver-nomem", "single"

sys.path.insert(0, str(HERE))
import xolver_data  # noqa: E402
from structured_common import RunInfo  # noqa: E402

ANALYSIS_THREADS = "none: an analysis of recorded results, no model runs"


def _sets(texts: list[str]) -> list[tuple[str, int | None]]:
    chosen = []
    for text in texts:
        name, _, n = text.partition("=")
        if name not in xolver_data.SETS:
            raise SystemExit(f"error: unknown set {name!r}; choose from {', '.join(xolver_data.SETS)}")
        chosen.append((name, int(n) if n else None))
    return chosen


def _seeded(store: Path, corpus: Path) -> bool:
    from braid.memory import HashingEmbedder, Store

    if not (store / "memory.sqlite3").exists():
        return False
    expected = sum(1 for line in corpus.open(encoding="utf-8") if line.strip())
    with Store.open(store, embedder=HashingEmbedder()) as opened:
        if xolver_data.COLLECTION not in opened.collections():
            return False
        return opened.collection(xolver_data.COLLECTION).count() >= expected


def most_agents() -> int:
    from braid.agents.xolver.config import XolverConfig

    return min(int(m.le) for m in XolverConfig.model_fields["agents"].metadata if getattr(m, "le", None))


def _mean_tokens(out: Path, arm: str) -> tuple[int, float]:
    from braid.agents.eval.results import read_results

    rows = [r for (name, _), r in read_results(out / "results.jsonl").items() if name == arm and r.status == "finished"]
    return len(rows), (sum(r.total_tokens for r in rows) / len(rows) if rows else 0.0)


def budget_k(out: Path) -> tuple[int, str]:
    """sc's k from the calibration results in `out`, and a line saying how."""
    (n_budget, budget), (n_sample, sample) = _mean_tokens(out, BUDGET_ARM), _mean_tokens(out, PER_SAMPLE_ARM)
    if not n_budget or not n_sample or not sample:
        raise SystemExit(f"error: no finished {BUDGET_ARM} and {PER_SAMPLE_ARM} results in {out} to set sc's k from")
    cap = most_agents()
    k = max(1, min(cap, round(budget / sample)))
    note = (f"{BUDGET_ARM}: {budget:.0f} tokens/item (n={n_budget}); {PER_SAMPLE_ARM}: {sample:.0f} tokens/item "
            f"(n={n_sample}); ratio {budget / sample:.2f}; k = {k}"
            + (f" (capped at XolverConfig's most agents, {cap}: sc runs under Xolver's budget)"
               if round(budget / sample) > cap else ""))
    return k, note


def _write_arm(name: str, out: Path, overrides: dict, note: str) -> Path:
    import yaml

    config = yaml.safe_load((ARMS_DIR / f"{name}.yaml").read_text())
    for key, value in overrides.items():
        if key == "model":
            config.setdefault("roles", {}).setdefault("default", {})["model"] = value
        else:
            config[key] = value
    path = out / "arms" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {ARMS_DIR.name}/{name}.yaml with {note} (written by {Path(__file__).name})\n"
                    + yaml.safe_dump(config, sort_keys=False))
    return path


def arm_options(arms: list[str], out: Path, model: str | None, write: bool) -> list[str]:
    """--arm NAME=FILE for each arm: the file under benchmarks/xolver_arms, or OUT/arms/NAME.yaml when
    that exists (sc with its k) or when `model` is set (copies that name it)."""
    options = []
    for name in arms:
        own = out / "arms" / f"{name}.yaml"
        if name == "sc" and (own.exists() or not write):  # its k, fixed once (a dry run: to be)
            path = own
        elif model:
            path = _write_arm(name, out, {"model": model}, f"roles.default.model: {model}") if write else own
        else:
            path = ARMS_DIR / f"{name}.yaml"
        options += ["--arm", f"{name}={path}"]
    return options


def _run(command: list[str], dry_run: bool, env: dict[str, str] | None = None) -> None:
    shown = " ".join(shlex.quote(part) for part in command)
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    print(f"$ {prefix + ' ' if prefix else ''}{shown}", file=sys.stderr, flush=True)
    if dry_run:
        return
    finished = subprocess.run(command, cwd=REPO, env={**os.environ, **(env or {})})
    if finished.returncode != 0:
        raise SystemExit(f"stopped: `{shown}` exited with {finished.returncode}; rerun this command to continue "
                         "(finished items are kept)")


def estimate(pilot: Path, sets: list[tuple[str, int | None]], arms: list[str]) -> Path:
    """PILOT/estimate.md: the plan's wall time from the pilot's results (tokens and seconds per item)."""
    from braid.agents.eval.results import read_results

    info = RunInfo.start(0, threads_text=ANALYSIS_THREADS)
    rows = list(read_results(pilot / "results.jsonl").values())
    measured = {}
    for arm in {r.arm for r in rows}:
        mine = [r for r in rows if r.arm == arm]
        measured[arm] = (len(mine), sum(r.total_tokens for r in mine) / len(mine),
                         sum(r.elapsed_s for r in mine) / len(mine))
    derived = {"xolver-seeded": (BUDGET_ARM, 1.0, f"as {BUDGET_ARM} (plus an exemplar's prompt tokens)"),
               "xolver-accum": (BUDGET_ARM, 1.0, f"as {BUDGET_ARM} (plus an exemplar's prompt tokens)")}
    if BUDGET_ARM in measured and PER_SAMPLE_ARM in measured:
        k, note = budget_k(pilot)
        derived["sc"] = (PER_SAMPLE_ARM, float(k), f"{k} x {PER_SAMPLE_ARM} ({note})")
    lines = [f"# Time estimate of the Xolver eval from `{pilot}`", "", *info.finish().markdown(), "",
             f"Written by `benchmarks/{Path(__file__).name} --estimate`. Per arm: tokens and seconds per item "
             "measured in the pilot (n items, concurrency 1), or derived from a measured arm. Sets other than "
             "the pilot's are assumed to cost the same per item (GSM8K problems are longer: more prompt "
             "tokens). The seconds are the pilot machine's, with whatever else ran on it at the time.", "",
             "| arm | from | tokens/item | s/item | " + " | ".join(f"h for {name} ({n or 'all'})" for name, n in sets)
             + " |", "|---|---|---:|---:|" + "---:|" * len(sets)]
    total = [0.0] * len(sets)
    for arm in arms:
        if arm in measured:
            n, tokens, seconds = measured[arm]
            source = f"measured, n={n}"
        elif arm in derived and derived[arm][0] in measured:
            base, factor, source = derived[arm]
            _, tokens, seconds = measured[base]
            tokens, seconds = tokens * factor, seconds * factor
        else:
            lines.append(f"| {arm} | not measured | - | - |" + " - |" * len(sets))
            continue
        hours = [seconds * (n or 0) / 3600 for _, n in sets]
        total = [t + h for t, h in zip(total, hours)]
        lines.append(f"| {arm} | {source} | {tokens:.0f} | {seconds:.0f} | " + " | ".join(f"{h:.1f}" for h in hours)
                     + " |")
    lines.append("| all | | | | " + " | ".join(f"{t:.1f}" for t in total) + " |")
    lines += ["", f"Total: {sum(total):.1f} h ({sum(total) / 24:.1f} days) at concurrency 1 on the pilot's machine."]
    path = pilot / "estimate.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines), file=sys.stderr)
    return path


def main(argv: list[str] | None = None) -> None:
    home = xolver_data.braid_home()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS), metavar="SET[=N]",
                        help="Sets in order, each with its item count (default: %(default)s; no =N: all).")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS, help="Arms (default: all).")
    parser.add_argument("--model", default=None, help="Model id for every role (default: the server's first).")
    parser.add_argument("--tag", default="", help="Suffix of the result folders and accumulating stores.")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="Runs in flight (default 1; more lets an xolver-accum item miss what items in flight "
                             "beside it write).")
    parser.add_argument("--sc-calibration", type=int, default=20, metavar="N",
                        help="Items that set sc's k (its token budget) before sc runs (default %(default)s).")
    parser.add_argument("--sc-k", type=int, default=None, help="Fix sc's k instead.")
    parser.add_argument("--data", type=Path, default=home / "eval-data" / "xolver", help="Data folder.")
    parser.add_argument("--results", type=Path, default=HERE / "results", help="Parent of the result folders.")
    parser.add_argument("--dry-run", action="store_true", help="Print the commands, run nothing.")
    parser.add_argument("--estimate", type=Path, default=None, metavar="PILOT_DIR",
                        help="Only write PILOT_DIR/estimate.md: the plan's time from a pilot's results.")
    args = parser.parse_args(argv)
    sets = _sets(args.sets)
    if args.estimate:
        estimate(args.estimate, sets, args.arms)
        return
    python, data_script = sys.executable, str(HERE / "xolver_data.py")
    suffix = f"-{args.tag}" if args.tag else ""
    print(f"endpoint: {os.environ.get('BRAID_AGENT_BASE_URL', 'http://127.0.0.1:8000/v1 (default)')}; model: "
          f"{args.model or 'the first the server lists'}; BRAID_HOME: {home}", file=sys.stderr)

    if any(not (args.data / f"{name}.jsonl").is_file() for name, _ in sets) \
            or not (args.data / xolver_data.SEED_FILE).is_file():
        _run([python, data_script, "build", "--out", str(args.data)], args.dry_run)
    store = home / "xolver-eval" / "seeded-memory"
    if "xolver-seeded" in args.arms and (args.dry_run or not _seeded(store, args.data / xolver_data.SEED_FILE)):
        _run([python, data_script, "seed-memory", "--out", str(args.data), "--store", str(store)], args.dry_run)

    outs = []
    for name, n in sets:
        out = args.results / f"xolver-{name}{suffix}"
        outs.append(out)
        env = {"XOLVER_EVAL_SET": f"{name}{suffix}"}
        print(f"\n== {name}: {n or 'all'} items x {len(args.arms)} arms -> {out}", file=sys.stderr)
        accum = home / "xolver-eval" / f"accum-memory-{name}{suffix}"
        if "xolver-accum" in args.arms and accum.exists() and not (out / "results.jsonl").exists():
            print(f"warning: {accum} exists but {out} has no results: xolver-accum starts from an earlier run's "
                  "memory; delete that store to start it empty", file=sys.stderr)

        def eval_command(arms: list[str], limit: int | None) -> list[str]:
            return [python, "-m", "braid.clients.cli", "eval", "xolver", "--data", str(args.data / f"{name}.jsonl"),
                    *arm_options(arms, out, args.model, write=not args.dry_run),
                    *(["--limit", str(limit)] if limit else []), "--concurrency", str(args.concurrency),
                    "--out", str(out)]

        if "sc" in args.arms and not (out / "arms" / "sc.yaml").exists():
            if args.sc_k is not None:
                k, note = args.sc_k, f"k = {args.sc_k} (--sc-k)"
            else:
                if not {BUDGET_ARM, PER_SAMPLE_ARM} <= set(args.arms):
                    raise SystemExit(f"error: sc's k comes from {BUDGET_ARM} and {PER_SAMPLE_ARM}: add them to "
                                     "--arms, or give --sc-k")
                calibration = min(n or args.sc_calibration, args.sc_calibration)
                _run(eval_command([a for a in args.arms if a != "sc"], calibration), args.dry_run, env)
                k, note = budget_k(out) if not args.dry_run else (0, "k from the calibration")
            print(f"sc: {note}", file=sys.stderr)
            if not args.dry_run:
                overrides = {"agents": k, **({"model": args.model} if args.model else {})}
                _write_arm("sc", out, overrides, f"agents: {k} (Xolver's token budget)"
                           + (f", roles.default.model: {args.model}" if args.model else ""))
                (out / "sc-budget.md").write_text(f"# sc's k\n\nWritten by `benchmarks/{Path(__file__).name}` "
                                                  f"from `{out / 'results.jsonl'}`: {note}.\n", encoding="utf-8")
        _run(eval_command(args.arms, n), args.dry_run, env)
        _run([python, str(HERE / "xolver_rounds.py"), str(out)], args.dry_run)
    print("\nresults (report.md, accuracy.png, rounds.md, rounds.png, results.jsonl):", file=sys.stderr)
    for out in outs:
        print(f"  {out}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit("stopped: rerun the same command to continue (finished items are kept)") from None
