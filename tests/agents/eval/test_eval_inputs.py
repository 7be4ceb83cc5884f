"""What an eval reads: JSONL items (ids, inputs, answers, errors naming the line), arms from `--arm`
and `--arms`, and the default answer comparison."""
from __future__ import annotations

import json
import re

import pytest

from braid.agents.eval.arms import Arm, ArmError, resolve_arms
from braid.agents.eval.data import DataError, load_items
from braid.agents.eval.judge import same_answer


def _write(path, *rows) -> None:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))


def test_items_ids_inputs_and_selection(tmp_path):
    data = tmp_path / "d.jsonl"
    _write(data, {"question": "q one", "answer": 1}, "", {"id": 7, "problem": "p two", "answer": "x"},
           {"id": "s", "input": {"text": "t", "images": []}, "answer": [1, 2]}, {"input": "plain", "answer": None})
    dataset = load_items(data)
    assert [(i.id, i.input, i.answer) for i in dataset.items] == [
        ("1", "q one", 1), ("7", "p two", "x"), ("s", {"text": "t", "images": []}, [1, 2]), ("5", "plain", None)]
    assert dataset.total == 4 and dataset.selection == "items 1-4 of 4"
    part = load_items(data, offset=1, limit=2)
    assert [i.id for i in part.items] == ["7", "s"] and part.selection == "items 2-3 of 4"
    assert load_items(data, offset=9).items == []


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "line 2: "),
    ('["a list"]', "line 2: a line must hold a JSON object"),
    ('{"answer": 1}', "line 2: no input"),
    ('{"question": "q"}', "line 2: no expected `answer`"),
    ('{"input": 3, "answer": 1}', "line 2: `input` must be a string or an object"),
    ('{"id": "a", "question": "again", "answer": 1}', "line 2: id 'a' is already used on line 1"),
])
def test_bad_lines_are_named(tmp_path, line, message):
    data = tmp_path / "d.jsonl"
    _write(data, {"id": "a", "question": "q", "answer": 0}, line)
    with pytest.raises(DataError, match=re.escape("d.jsonl, " + message)):
        load_items(data)


def test_arms_from_options_and_file(tmp_path):
    (tmp_path / "a.yaml").write_text("temperature: 1\n")
    (tmp_path / "other.yaml").write_text("workflow: other-wf\nroles: {}\n")
    (tmp_path / "arms.yaml").write_text("inline:\n  workflow: third\n  config: {x: 1}\nfromfile:\n  config: a.yaml\n"
                                        "bare:\n")
    assert resolve_arms("wf", [], None) == [Arm("default", "wf")]
    arms = resolve_arms("wf", [f"one={tmp_path / 'a.yaml'}", f"two={tmp_path / 'other.yaml'}"], tmp_path / "arms.yaml")
    assert [(a.name, a.workflow, a.config) for a in arms] == [
        ("inline", "third", {"x": 1}), ("fromfile", "wf", {"temperature": 1}), ("bare", "wf", {}),
        ("one", "wf", {"temperature": 1}), ("two", "other-wf", {"roles": {}})]
    with pytest.raises(ArmError, match="repeated: one"):
        resolve_arms("wf", [f"one={tmp_path / 'a.yaml'}", f"one={tmp_path / 'a.yaml'}"], None)
    with pytest.raises(ArmError, match="arm name"):
        resolve_arms("wf", [f"bad name={tmp_path / 'a.yaml'}"], None)
    (tmp_path / "wrong.yaml").write_text("x:\n  cfg: {}\n")
    with pytest.raises(ArmError, match="arm 'x'"):
        resolve_arms("wf", [], tmp_path / "wrong.yaml")


@pytest.mark.parametrize(("answer", "expected", "same"), [
    ("42", 42, True), (" 42.0 ", "42", True), ("1,000", 1000, True), ("-3", -3.0, True), ("1e3", 1000, True),
    ("Paris", "paris", True), ("42", 43, False), ("12,34", 1234, False), ("forty-two", 42, False), ("", "", True)])
def test_default_comparison(answer, expected, same):
    assert same_answer(answer, expected) is same
