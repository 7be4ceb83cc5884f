"""What the Xolver tests share: a config on a given model server with the real python sandbox and the
real memory server on a store of the test's own, and independent references for what the workflow
computes (Python's own `exec` for the sandbox's printed result, the judge's documented formula)."""
from __future__ import annotations

import contextlib
import io
from fractions import Fraction
from pathlib import Path

from braid.tools.sandbox import detect_isolation

__all__ = ["COLLECTION", "exec_printed", "exec_printed_isolated", "expected_score", "python_server",
           "xolver_config"]

COLLECTION = "xolver-experience"

def python_server(**extra) -> dict:
    """Braid's python MCP server; it needs namespaces (root), else runs with process limits only."""
    options = [] if detect_isolation() == "namespaces" else ["--allow-weak-sandbox"]
    return {"braid": "python", "options": options, **extra}


def xolver_config(base_url: str, store: Path, *, model: str | None = None, role: dict | None = None,
                  **overrides) -> dict:
    """Every role on `base_url`; the experience memory in `store` (hashing embedder, as the default)."""
    settings = {"base_url": base_url, **({"model": model} if model else {}), **(role or {})}
    tools = {"python": python_server(),
             "memory": {"braid": "memory", "options": ["--store", str(store), "--embedder", "hashing"]}}
    return {"roles": {"default": settings}, "tools": tools, **overrides}


def run_reference(code: str) -> str | None:
    """What the sandbox reports as the code's result, computed by this Python's own `exec`: the last
    non-blank printed line, else the repr of a final expression's value (None: neither). Raises what
    the code raises."""
    import ast

    out = io.StringIO()
    tree = ast.parse(code)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    scope: dict = {"__name__": "__main__"}
    with contextlib.redirect_stdout(out):
        exec(compile(tree, "<reference>", "exec"), scope)
        value = eval(compile(ast.Expression(last.value), "<reference>", "eval"), scope) if last else None
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    if lines:
        return lines[-1].strip()
    return repr(value) if value is not None else None


def exec_printed(code: str) -> str | None:
    """`run_reference`, None when the code raises."""
    try:
        return run_reference(code)
    except Exception:  # noqa: BLE001 - the code's own error
        return None


def exec_printed_isolated(code: str, timeout_s: float = 10.0) -> tuple[bool, str | None]:
    """`exec_printed` of code a model wrote, in a child Python (in a temporary folder, with a time
    limit) so it cannot hang or disturb the test: (ran without error, printed result)."""
    import json
    import subprocess
    import sys
    import tempfile

    runner = ("import json, sys; sys.path.insert(0, sys.argv[1]); from xolver_setup import run_reference\n"
              "code = sys.stdin.read()\n"
              "try:\n    result = {'ok': True, 'printed': run_reference(code)}\n"
              "except BaseException as exc:\n    result = {'ok': False, 'printed': repr(exc)}\n"
              "print('\\n' + json.dumps(result))")
    with tempfile.TemporaryDirectory() as folder:
        try:
            done = subprocess.run([sys.executable, "-c", runner, str(Path(__file__).parent)], input=code,
                                  capture_output=True, text=True, timeout=timeout_s, cwd=folder)
        except subprocess.TimeoutExpired:
            return False, None
    if not done.stdout.strip():
        return False, None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["ok"], result["printed"] if result["ok"] else None


def as_number(text: str | None) -> Fraction | None:
    if text is None:
        return None
    try:
        return Fraction(text.strip().replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def expected_score(*, computes: bool, executed: str | None, answer: str | None, others: list[str | None]) -> float:
    """The documented execution-based score (scoring.py's docstring), written out independently:
    0.4 if the code computed and printed a number; 0.3 if the stated answer equals that number;
    0.3 x the share of the other agents whose answer agrees (alone: 0.3 when the code ran)."""
    ran = computes and as_number(executed) is not None
    score = 0.4 if ran else 0.0
    if ran and answer is not None and as_number(answer) == as_number(executed):
        score += 0.3
    if others:
        agree = sum(1 for other in others if other is not None and answer is not None
                    and as_number(other) == as_number(answer))
        score += 0.3 * agree / len(others)
    elif ran:
        score += 0.3
    return round(score, 6)
