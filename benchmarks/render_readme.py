"""Copy the result tables into README.md and benchmarks/README.md, between their markers.

A README shows a table from a result file as

    <!-- results: results/serve.md#table -->
    (the table, written by this script)
    <!-- /results -->

The path is relative to the README's folder; ``#table`` (or ``#table-1``) is the first markdown
table of the file, ``#table-N`` the N-th. The result files are written by the benchmark scripts
(with their run header), so every table a README shows is the one a script wrote. A table of a
README outside such a block must be marked ``<!-- static table -->`` on the line before it (one
that holds no measurement: a list of settings, say).

    .venv/bin/python benchmarks/render_readme.py           # rewrite the marked tables
    .venv/bin/python benchmarks/render_readme.py --check   # exit 1 if a README differs from its files

``--check`` also fails on a marker whose file or table is missing and on an unmarked table, and
warns (``--strict``: fails) about a result file shown in a README without a run header (the
``- command:`` line of ``structured_common.RunInfo``).
"""
from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
READMES = [REPO / "README.md", REPO / "benchmarks" / "README.md"]
BLOCK = re.compile(r"^(<!-- results: (?P<ref>[^#\s]+)#(?P<anchor>table(?:-\d+)?) -->\n)"
                   r"(?P<body>(?:(?!<!-- results:).)*?)^(<!-- /results -->)", re.S | re.M)
OPENING = re.compile(r"^<!-- results:", re.M)
STATIC = "<!-- static table -->"


class RenderError(Exception):
    pass


def rel(path: Path) -> Path:
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def tables(text: str) -> list[str]:
    """The markdown tables of a text: runs of lines starting with '|' whose second line is a separator row."""
    found, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line)
            continue
        if len(current) >= 2 and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", current[1].replace(" ", "")):
            found.append("\n".join(current))
        current = []
    return found


def table_of(path: Path, anchor: str) -> str:
    if not path.exists():
        raise RenderError(f"{rel(path)}: no such result file")
    index = int(anchor.split("-")[1]) if "-" in anchor else 1
    found = tables(path.read_text())
    if index > len(found):
        raise RenderError(f"{rel(path)}: {anchor} asked, the file has {len(found)} table(s)")
    return found[index - 1]


def render(readme: Path) -> tuple[str, list[Path], list[str]]:
    """The README with every marked block filled from its file (a block whose file or table is missing is left
    as it is); the files used; the problems."""
    used: list[Path] = []
    problems: list[str] = []

    def fill(match: re.Match) -> str:
        path = (readme.parent / match["ref"]).resolve()
        try:
            table = table_of(path, match["anchor"])
        except RenderError as error:
            problems.append(str(error))
            return match[0]
        used.append(path)
        return f"{match[1]}{table}\n{match[5]}"

    return BLOCK.sub(fill, readme.read_text()), used, problems


def unmarked_tables(text: str) -> list[str]:
    """First lines of tables outside results blocks and not marked static."""
    outside = BLOCK.sub(lambda m: m[1] + m[5], text)
    lines = outside.splitlines()
    bad = []
    for i, line in enumerate(lines):
        if line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|")):
            if i + 1 < len(lines) and lines[i + 1].startswith("|") and set(lines[i + 1].replace("|", "").strip()) \
                    <= set("-: "):
                previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
                if previous.strip() != STATIC:
                    bad.append(line[:100])
    return bad


def has_run_header(path: Path) -> bool:
    return any(line.startswith("- command: `") for line in path.read_text().splitlines())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a README differs from the "
                                                             "result files or has a table outside the markers")
    parser.add_argument("--strict", action="store_true", help="with --check, also fail on result files without a "
                                                              "run header")
    parser.add_argument("readmes", nargs="*", type=Path, default=READMES, help="default: README.md, benchmarks/README.md")
    args = parser.parse_args(argv)
    problems, warnings, changed = [], [], []
    for readme in args.readmes:
        readme = readme.resolve()
        name = rel(readme)
        text, used, missing = render(readme)
        problems += [f"{name}: {error}" for error in missing]
        old = readme.read_text()
        if args.check:
            if text != old:
                diff = "".join(difflib.unified_diff(old.splitlines(True), text.splitlines(True), f"{name} (as is)",
                                                    f"{name} (from the result files)", n=1))
                problems.append(f"{name}: tables differ from their result files "
                                f"(run benchmarks/render_readme.py):\n{diff}")
            problems += [f"{name}: a table outside <!-- results: ... --> markers (mark it '{STATIC}' if it holds no "
                         f"measurement): {first}" for first in unmarked_tables(old)]
            warnings += [f"{name}: {rel(path)} has no run header (no '- command:' line): re-run its script"
                         for path in dict.fromkeys(used) if not has_run_header(path)]
        elif text != old:
            readme.write_text(text)
            changed.append(str(name))
        if len(BLOCK.findall(old)) != len(OPENING.findall(old)):
            problems.append(f"{name}: a '<!-- results:' marker that does not parse or lacks its '<!-- /results -->'")
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    for line in problems:
        print(line, file=sys.stderr)
    if not args.check:
        print(f"rendered: {', '.join(changed) or 'nothing changed'}")
    return 1 if problems or (args.strict and warnings) else 0


if __name__ == "__main__":
    sys.exit(main())
