"""The eval report: its numbers are the counts of the results file (computed here independently),
and its plot is a valid PNG. The eval runs in this process, two arms, several runs at once."""
from __future__ import annotations

import json
import math
from pathlib import Path

from PIL import Image

from braid.agents.eval.arms import resolve_arms
from braid.agents.eval.data import load_items
from braid.agents.eval.harness import EvalPlan, load_arm_workflows, run_eval
from braid.agents.runtime.config import RuntimeSettings
from eval_workflows import write_dataset

Z = 1.959963984540054


def _wilson(k: int, n: int) -> tuple[float, float]:
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return centre - half, centre + half


def _mcnemar_p(b: int, c: int) -> float:
    n = b + c
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n) if n else 1.0


async def test_report_numbers_are_the_results_files_counts(tmp_path):
    data = tmp_path / "arith.jsonl"
    write_dataset(data, 25, seed=7)
    # An arms file: one arm inline, one from a config file that names the workflow itself.
    (tmp_path / "sloppy.yaml").write_text("workflow: eval_workflows:SPEC\ndelay_s: 0\nwrong_every: 4\n")
    (tmp_path / "arms.yaml").write_text("exact:\n  config: {delay_s: 0}\nsloppy:\n  config: sloppy.yaml\n")
    arms = resolve_arms("eval_workflows:SPEC", [], tmp_path / "arms.yaml")
    assert [(a.name, a.workflow, a.config) for a in arms] == [
        ("exact", "eval_workflows:SPEC", {"delay_s": 0}),
        ("sloppy", "eval_workflows:SPEC", {"delay_s": 0, "wrong_every": 4})]
    dataset = load_items(data)
    plan = EvalPlan("arith", dataset, arms, tmp_path / "out", concurrency=3, progress=False)
    outcome = await run_eval(plan, load_arm_workflows(arms, RuntimeSettings(home=tmp_path / "home")))

    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 27
    markdown = outcome.report_path.read_text()
    correct: dict[str, dict[str, bool]] = {}
    for arm in ("exact", "sloppy"):
        mine = [r for r in rows if r["arm"] == arm]
        n, k = len(mine), sum(r["correct"] for r in mine)
        failed = sum(r["status"] == "failed" for r in mine)
        assert failed == 2  # only the two items made to fail: no run failed from running 3 at once
        low, high = _wilson(k, n)
        tokens = sum(r["total_tokens"] for r in mine) / n
        prompt = sum(r["prompt_tokens"] for r in mine) / n
        completion = sum(r["completion_tokens"] for r in mine) / n
        assert tokens > 0
        row = next(line for line in markdown.splitlines() if line.startswith(f"| {arm} |"))
        assert (f"| {n} of 27 | {k} | {failed} | {k / n:.3f} | [{low:.3f}, {high:.3f}] | "
                f"{tokens:.1f} ({prompt:.1f} + {completion:.1f}) |") in row
        correct[arm] = {r["id"]: r["correct"] for r in mine}
    b = sum(correct["exact"][i] and not correct["sloppy"][i] for i in correct["exact"])
    c = sum(correct["sloppy"][i] and not correct["exact"][i] for i in correct["exact"])
    both = sum(correct["sloppy"][i] and correct["exact"][i] for i in correct["exact"])
    assert b > 0
    assert f"| exact | sloppy | 27 | {both} | {b} | {c} | {27 - both - b - c} | {_mcnemar_p(b, c):.4g} |" in markdown
    # Provenance, measured by the eval.
    for field in ("- command:", "- run:", "- machine:", "- threads:", "- load average", "- braid "):
        assert field in markdown

    image = Image.open(outcome.plot_path)
    assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100
    image.verify()
    assert not list(Path(tmp_path / "out").glob(".*tmp*"))  # reports are written whole, then renamed
