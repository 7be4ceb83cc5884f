"""`braid eval` errors: one clear line naming what is wrong, exit code 2, no traceback."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from braid.clients.cli import app
from eval_workflows import write_dataset


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAID_HOME", str(tmp_path / "home"))
    return CliRunner()


def _fails_with(result, *parts: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for part in parts:
        assert part in result.stderr, result.stderr


def test_missing_data_file_as_a_user_sees_it(tmp_path):
    missing = tmp_path / "nope.jsonl"
    done = subprocess.run([sys.executable, "-m", "braid.clients.cli", "eval", "example", "--data", str(missing)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "BRAID_HOME": str(tmp_path / "home")})
    assert done.returncode == 2
    assert done.stderr == f"error: data file {missing} does not exist\n"


def test_unknown_workflow(runner, tmp_path):
    data = tmp_path / "d.jsonl"
    write_dataset(data, 2)
    _fails_with(runner.invoke(app, ["eval", "no-such-workflow", "--data", str(data)]),
                "unknown workflow 'no-such-workflow'", "example")
    _fails_with(runner.invoke(app, ["eval", "no_such_module:SPEC", "--data", str(data)]),
                "unknown workflow 'no_such_module:SPEC'")


def test_config_that_does_not_validate_names_the_arm_and_field(runner, tmp_path):
    data = tmp_path / "d.jsonl"
    write_dataset(data, 2)
    (tmp_path / "bad.yaml").write_text("delay_s: -1\nbogus: 3\n")
    _fails_with(runner.invoke(app, ["eval", "eval_workflows:SPEC", "--data", str(data), "--arm",
                                    f"broken={tmp_path / 'bad.yaml'}"]),
                "arm 'broken'", "delay_s", "bogus")
    _fails_with(runner.invoke(app, ["eval", "eval_workflows:SPEC", "--data", str(data), "--arm",
                                    f"gone={tmp_path / 'missing.yaml'}"]),
                "arm 'gone'", "missing.yaml", "does not exist")
    _fails_with(runner.invoke(app, ["eval", "eval_workflows:SPEC", "--data", str(data), "--arm", "no-equals-sign"]),
                "NAME=CONFIG_FILE")


def test_bad_data_line_is_named(runner, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "What is 1 + 1?", "answer": 2}\n{"question": "What is 2 + 2?"\n')
    _fails_with(runner.invoke(app, ["eval", "eval_workflows:SPEC", "--data", str(data)]), f"{data}, line 2")


def test_unreachable_model_server_stops_the_eval(runner, tmp_path):
    data = tmp_path / "d.jsonl"
    write_dataset(data, 3)
    (tmp_path / "far.yaml").write_text("roles:\n  default:\n    base_url: http://127.0.0.1:9/v1\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["eval", "eval_workflows:NEEDS_SERVER", "--data", str(data), "--out", str(out),
                                 "--arm", f"far={tmp_path / 'far.yaml'}", "--concurrency", "2", "-q"])
    _fails_with(result, "eval stopped", "http://127.0.0.1:9/v1", "not reachable", "rerun the same command")
    assert (out / "results.jsonl").read_text() == ""  # nothing recorded as a result: the items run again later
    assert (out / "report.md").is_file()


def test_help_explains_every_option(runner):
    result = runner.invoke(app, ["eval", "--help"], env={"COLUMNS": "200", "TERM": "dumb"})
    assert result.exit_code == 0
    for option in ("--data", "--arm", "--arms", "--limit", "--offset", "--concurrency", "--out", "--retry-failed",
                   "--quiet"):
        assert option in result.output
    assert "Resumable" in result.output
