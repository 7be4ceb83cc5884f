"""The result tables in README.md and benchmarks/README.md are the ones the benchmark scripts wrote (issue 16).

``benchmarks/render_readme.py`` copies each table from its file under ``benchmarks/results/`` into the
marked block of a README; ``--check`` fails when a README's table differs from its file (a hand-edited
number), when a marked file or table is missing, and when a README has a table outside the markers.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load(name: str):
    """A script of benchmarks/ as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def render_readme():
    return load("render_readme")


def test_readme_tables_are_the_result_files(render_readme, capsys):
    assert render_readme.main(["--check"]) == 0, capsys.readouterr().err


RESULT = """# A benchmark

- command: `python bench.py`

| setting | ms |
|---|---:|
| a | 1.5 |

Per item:

| item | ms |
|---|---|
| x | 2 |
"""


def write_readme(tmp_path: Path, body: str) -> Path:
    (tmp_path / "results").mkdir(exist_ok=True)
    (tmp_path / "results" / "bench.md").write_text(RESULT)
    readme = tmp_path / "README.md"
    readme.write_text(body)
    return readme


def test_render_fills_the_blocks_and_check_catches_an_edit(render_readme, tmp_path, capsys):
    readme = write_readme(tmp_path, "Intro.\n\n<!-- results: results/bench.md#table -->\n<!-- /results -->\n\n"
                                    "<!-- results: results/bench.md#table-2 -->\nold\n<!-- /results -->\n")
    assert render_readme.main(["--check", str(readme)]) == 1  # empty / stale blocks
    assert render_readme.main([str(readme)]) == 0
    text = readme.read_text()
    assert "<!-- results: results/bench.md#table -->\n| setting | ms |\n|---|---:|\n| a | 1.5 |\n<!-- /results -->" in text
    assert "<!-- results: results/bench.md#table-2 -->\n| item | ms |\n|---|---|\n| x | 2 |\n<!-- /results -->" in text
    assert render_readme.main(["--check", str(readme)]) == 0
    readme.write_text(text.replace("| a | 1.5 |", "| a | 1.4 |"))  # a hand-edited number
    capsys.readouterr()
    assert render_readme.main(["--check", str(readme)]) == 1
    assert "-| a | 1.4 |" in capsys.readouterr().err


def test_check_fails_on_missing_files_tables_and_unmarked_tables(render_readme, tmp_path, capsys):
    for body, message in [
        ("<!-- results: results/nope.md#table -->\n<!-- /results -->\n", "no such result file"),
        ("<!-- results: results/bench.md#table-3 -->\n<!-- /results -->\n", "the file has 2 table(s)"),
        ("<!-- results: results/bench.md#table -->\nno closing marker\n", "lacks its"),
        ("Typed by hand:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n", "a table outside"),
    ]:
        readme = write_readme(tmp_path, body)
        capsys.readouterr()
        assert render_readme.main(["--check", str(readme)]) == 1, body
        assert message in capsys.readouterr().err, body
    readme = write_readme(tmp_path, "Settings:\n\n<!-- static table -->\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert render_readme.main(["--check", str(readme)]) == 0


def test_strict_needs_a_run_header(render_readme, tmp_path, capsys):
    readme = write_readme(tmp_path, "<!-- results: results/bench.md#table -->\n<!-- /results -->\n")
    assert render_readme.main([str(readme)]) == 0
    assert render_readme.main(["--check", "--strict", str(readme)]) == 0
    (tmp_path / "results" / "bench.md").write_text(RESULT.replace("- command: `python bench.py`\n", ""))
    assert render_readme.main(["--check", str(readme)]) == 0  # a warning only
    assert render_readme.main(["--check", "--strict", str(readme)]) == 1
    assert "no run header" in capsys.readouterr().err


@pytest.fixture
def run_all(tmp_path, monkeypatch):
    """benchmarks/run_all.py with three tiny entries and its state, logs and results under tmp_path."""
    module = load("run_all")
    results = tmp_path / "results"
    results.mkdir()
    count = ("import pathlib, sys; p = pathlib.Path('results') / (sys.argv[1] + '.runs'); "
             "p.write_text(p.read_text() + 'x' if p.exists() else 'x')")
    entries = [module.Entry("a", ("-c", count, "a"), "1", "a.runs"),
               module.Entry("b", ("-c", count + "; sys.exit(3)", "b"), "1", "b.runs"),
               module.Entry("c", ("-c", count + "; (pathlib.Path('results') / 'c.jsonl').open('a').write('line\\n')", "c"),
                            "1", "c.runs", fresh=("c.jsonl",)),
               module.Entry("d", ("-c", count, "d"), "1", "d.runs", default=False)]
    monkeypatch.setattr(module, "ENTRIES", entries)
    monkeypatch.setattr(module, "BY_NAME", {e.name: e for e in entries})
    monkeypatch.setattr(module, "PYTHON", sys.executable)
    monkeypatch.setattr(module, "REPO", tmp_path)
    monkeypatch.setattr(module, "RESULTS", results)
    monkeypatch.setattr(module, "STATE", results / "run_all_state.json")
    monkeypatch.setattr(module, "LOGS", tmp_path / "logs")
    return module


def runs(run_all, name: str) -> int:
    path = run_all.RESULTS / f"{name}.runs"
    return len(path.read_text()) if path.exists() else 0


def test_run_all_records_skips_finished_and_resumes(run_all):
    assert run_all.main(["--no-render"]) == 1  # b fails; the others still run; d is not run by default
    state = run_all.load_state()["entries"]
    assert {k: v["status"] for k, v in state.items()} == {"a": "finished", "b": "failed", "c": "finished"}
    assert state["b"]["rc"] == 3 and state["a"]["seconds"] >= 0 and state["a"]["ended"]
    assert (runs(run_all, "a"), runs(run_all, "b"), runs(run_all, "c"), runs(run_all, "d")) == (1, 1, 1, 0)

    assert run_all.main(["--no-render"]) == 1  # finished ones skipped, the failed one resumed
    assert (runs(run_all, "a"), runs(run_all, "b"), runs(run_all, "c")) == (1, 2, 1)

    assert run_all.main(["--no-render", "--only", "c,d"]) == 0  # c finished: skipped; d named: run
    assert (runs(run_all, "c"), runs(run_all, "d")) == (1, 1)
    assert (run_all.RESULTS / "c.jsonl").read_text() == "line\n"
    assert run_all.main(["--no-render", "--only", "c", "--force"]) == 0  # a new run starts its JSONL afresh
    assert runs(run_all, "c") == 2 and (run_all.RESULTS / "c.jsonl").read_text() == "line\n"

    assert run_all.main(["--no-render", "--force", "--from", "b", "--skip", "b"]) == 0  # only c
    assert (runs(run_all, "a"), runs(run_all, "b"), runs(run_all, "c")) == (1, 2, 3)


def test_run_all_lists_every_entry_with_its_command_and_duration():
    module = load("run_all")
    listed = module.entries_help()
    scripts = {p.name for p in (REPO / "benchmarks").glob("*.py")}
    for entry in module.ENTRIES:
        assert entry.name in listed and " ".join(entry.args) in listed and entry.minutes in listed
        assert Path(entry.args[0]).name in scripts, entry
