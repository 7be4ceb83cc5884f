"""The Xolver eval's data: eval sets as JSONL (`id`, `question`, `answer`) and the experience-memory seed.

    python benchmarks/xolver_data.py build                # the sets and the seed corpus (seconds)
    python benchmarks/xolver_data.py seed-memory          # index the seed corpus for `xolver-seeded`

`build` writes, into `--out` (default `$BRAID_HOME/eval-data/xolver`; BRAID_HOME defaults to
~/.cache/braid, as for the runtime: the data is not copied into the repository):

* `basic-arithmetic.jsonl`: reasoning-gym's `basic_arithmetic` generator (Apache-2.0), offline and
  deterministic from `--seed` (`Random(seed + index)` per item), `--size` items (default 400),
  `--terms`/`--digits` ranges, operators + - * / (its `/` divides exactly), parentheses, no `-( )`
  negation (single constants may be negative).
* `gsm8k-test.jsonl`: GSM8K test (openai/grade-school-math, MIT); answer = the number after `####`.
* `svamp.jsonl`: SVAMP (math-evaluation-harness copy, MIT); question = Body + " " + Question, a
  period added to a Body without one (the harness's convention); answer = Answer as a number.
* `gsm8k-train-seed.jsonl`: the experience-memory seed corpus, one record per GSM8K train problem:
  `text` = the question, metadata `solution` (the worked answer without the `<<a*b=c>>` calculator
  annotations and the `#### N` line), `final_answer` (N), and `code`: a Python program rebuilt from
  the annotations (`step1 = 48/2`, ..., `print(stepN)`) when they evaluate to N, so retrieved
  exemplars match the agents' executed-code format (Xolver shows `code`, then `solution`, then
  `\\boxed{final_answer}` as an earlier chat turn). `--seed-code none` leaves `code` out.

`seed-memory` indexes the seed corpus into collection `xolver-experience` of `--store` (default
`$BRAID_HOME/xolver-eval/seeded-memory`) with the hashing embedder, exactly as the memory MCP server
opens it (`braid mcp serve memory --store S --embedder hashing` -> `HashingEmbedder()`, 256-d). A
collection records its embedder's name (`hashing-256`) and refuses vectors or queries from another
one, so the store must be written with that embedder; `braid index add` only takes
sentence-transformers models (`--model`), hence this command. Ids are stable (`gsm8k-train-N`), so a
rerun replaces rather than duplicates; it ends with one search through the same code path the
server uses, as a check.
"""
from __future__ import annotations

import argparse
import ast
import json
import operator
import re
import sys
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "data" / "math"
COLLECTION = "xolver-experience"
SEED_FILE = "gsm8k-train-seed.jsonl"
SETS = ("basic-arithmetic", "gsm8k-test", "svamp")

_ANNOTATION = re.compile(r"<<([^<>]*)>>")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}


def braid_home() -> Path:
    from braid.agents.runtime.config import RuntimeSettings

    return Path(RuntimeSettings.from_env().home)


def number_text(value: str | float | int) -> str:
    """'1,234' -> '1234', 145.0 -> '145', '0.50' -> '0.5'."""
    text = str(value).strip().replace(",", "")
    number = Fraction(text)
    return str(number.numerator) if number.denominator == 1 else str(float(number))


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with temporary.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    temporary.replace(path)
    print(f"{path}: {len(rows)} items", file=sys.stderr)


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist (check --data-root)")
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def basic_arithmetic(size: int, seed: int, terms: tuple[int, int], digits: tuple[int, int]) -> list[dict]:
    import reasoning_gym

    dataset = reasoning_gym.create_dataset("basic_arithmetic", size=size, seed=seed, min_terms=terms[0],
                                           max_terms=terms[1], min_digits=digits[0], max_digits=digits[1],
                                           operators=("+", "-", "*", "/"), allow_parentheses=True,
                                           allow_negation=False)
    return [{"id": f"ba-{seed}-{i:04d}", "question": entry["question"], "answer": entry["answer"]}
            for i, entry in enumerate(dataset)]


def gsm8k_test(root: Path) -> list[dict]:
    return [{"id": f"gsm8k-test-{i:04d}", "question": row["question"],
             "answer": number_text(row["answer"].rsplit("####", 1)[1])}
            for i, row in enumerate(read_jsonl(root / "gsm8k" / "test.jsonl"))]


def svamp(root: Path) -> list[dict]:
    rows = []
    for row in read_jsonl(root / "svamp" / "test.jsonl"):
        body = row["Body"].strip()
        body = body if body.endswith((".", "?", "!")) else body + "."
        rows.append({"id": f"svamp-{row['ID']}", "question": f"{body} {row['Question'].strip()}",
                     "answer": number_text(row["Answer"])})
    return rows


def _evaluate(node: ast.AST) -> Fraction:
    """Numbers and + - * / // % ** only (anything else raises ValueError)."""
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and (right.denominator != 1 or abs(right) > 10):
            raise ValueError("unsupported power")
        return Fraction(_OPS[type(node.op)](left, right))
    raise ValueError(f"unsupported expression {ast.dump(node)[:40]}")


def annotation_code(answer: str, final: str) -> str | None:
    """`step1 = 48/2` ... `print(stepN)` from GSM8K's `<<expr=result>>` annotations, when they parse and
    the last one evaluates to the final answer; else None."""
    lines, value = [], None
    for n, note in enumerate(_ANNOTATION.findall(answer), start=1):
        expression = note.split("=", 1)[0].strip()
        try:
            value = _evaluate(ast.parse(expression, mode="eval"))
        except (SyntaxError, ValueError, ZeroDivisionError, OverflowError):
            return None
        lines.append(f"step{n} = {expression}")
    if not lines or value is None or value != Fraction(final):
        return None
    return "\n".join([*lines, f"print(step{len(lines)})"])


def seed_corpus(root: Path, with_code: bool) -> list[dict]:
    rows = []
    for i, row in enumerate(read_jsonl(root / "gsm8k" / "train.jsonl")):
        worked, final = row["answer"].rsplit("####", 1)
        final = number_text(final)
        metadata = {"solution": _ANNOTATION.sub("", worked).strip(), "final_answer": final,
                    "dataset": "gsm8k-train"}
        code = annotation_code(worked, final) if with_code else None
        if code:
            metadata["code"] = code
        rows.append({"id": f"gsm8k-train-{i:04d}", "text": row["question"], "metadata": metadata})
    return rows


def build(args: argparse.Namespace) -> None:
    out, root = args.out, args.data_root
    chosen = set(args.sets)
    limit = slice(None, args.limit)
    if "basic-arithmetic" in chosen:
        write_jsonl(out / "basic-arithmetic.jsonl",
                    basic_arithmetic(args.size, args.seed, tuple(args.terms), tuple(args.digits))[limit])
    if "gsm8k-test" in chosen:
        write_jsonl(out / "gsm8k-test.jsonl", gsm8k_test(root)[limit])
    if "svamp" in chosen:
        write_jsonl(out / "svamp.jsonl", svamp(root)[limit])
    if args.seed_limit != 0:
        corpus = seed_corpus(root, args.seed_code == "annotations")[:args.seed_limit]
        with_code = sum("code" in r["metadata"] for r in corpus)
        write_jsonl(out / SEED_FILE, corpus)
        print(f"  {with_code} of {len(corpus)} seed records carry code rebuilt from the annotations",
              file=sys.stderr)
    print(f"data: {out}", file=sys.stderr)


def seed_memory(args: argparse.Namespace) -> None:
    from braid.memory import HashingEmbedder, Store, index_corpus
    from braid.tools._serving import ServeOptions
    from braid.tools._store_access import existing_collection, open_store

    corpus = args.corpus or args.out / SEED_FILE
    if not corpus.is_file():
        raise SystemExit(f"error: {corpus} does not exist; run `python {Path(__file__).name} build` first")
    with Store.open(args.store, embedder=HashingEmbedder()) as store:
        report = index_corpus(store, args.collection, [corpus], text_field="text", id_field="id",
                              batch_size=args.batch_size, progress=not args.quiet)
        total = store.collection(args.collection).count()
    print(f"{report.records} records into {args.collection!r} of {args.store} ({report.seconds:.1f} s); "
          f"it holds {total}", file=sys.stderr)
    # the check: the store as `braid mcp serve memory --store S --embedder hashing` opens it
    with open_store(ServeOptions(store=args.store, embedder="hashing")) as store:
        hits = existing_collection(store, args.collection).search(args.check_query, k=1, mode="hybrid")
    if not hits:
        raise SystemExit("error: the check search found nothing")
    print(f"check: {args.check_query!r} -> {hits[0].id} (dense cosine {hits[0].dense_score:.3f}, "
          f"final_answer {hits[0].metadata.get('final_answer')})", file=sys.stderr)
    print(f"store: {args.store}", file=sys.stderr)
    if args.coverage:
        coverage(args)


def coverage(args: argparse.Namespace) -> None:
    """How many items of each eval set in OUT would get a seeded exemplar: Xolver's retrieval (hybrid
    search, k=1) whose top hit's dense cosine reaches min_similarity; the others self-retrieve."""
    from braid.tools._serving import ServeOptions
    from braid.tools._store_access import existing_collection, open_store

    lines = [f"# Seeded-memory coverage: `{args.store}`", "",
             f"Written by `benchmarks/xolver_data.py seed-memory --coverage`: per eval set, the items whose "
             f"top hit (hybrid search, k=1, as Xolver retrieves) has a dense cosine >= {args.min_similarity} "
             "(they get a GSM8K-train exemplar; the others self-retrieve).", "",
             "| set | items | with an exemplar | share | median top cosine |", "|---|---:|---:|---:|---:|"]
    with open_store(ServeOptions(store=args.store, embedder="hashing")) as store:
        collection = existing_collection(store, args.collection)
        for name in SETS:
            path = args.out / f"{name}.jsonl"
            if not path.is_file():
                continue
            rows = read_jsonl(path)[:args.coverage]
            cosines = sorted((hits[0].dense_score or 0.0) if hits else 0.0 for hits in
                             (collection.search(row["question"], k=1, mode="hybrid") for row in rows))
            covered = sum(c >= args.min_similarity for c in cosines)
            lines.append(f"| {name} | {len(rows)} | {covered} | {covered / len(rows):.2f} | "
                         f"{cosines[len(cosines) // 2]:.3f} |")
    text = "\n".join(lines) + "\n"
    if args.coverage_out:
        args.coverage_out.parent.mkdir(parents=True, exist_ok=True)
        args.coverage_out.write_text(text, encoding="utf-8")
        print(f"coverage: {args.coverage_out}", file=sys.stderr)
    print(text, file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    home = braid_home()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, default=home / "eval-data" / "xolver",
                        help="Folder of the data files (default: %(default)s).")
    commands = parser.add_subparsers(dest="command", required=True)

    make = commands.add_parser("build", parents=[common], help="Write the eval sets and the seed corpus.")
    make.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT,
                      help="Folder with gsm8k/ and svamp/ (default: %(default)s).")
    make.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    make.add_argument("--limit", type=int, default=None, help="At most this many items per eval set.")
    make.add_argument("--size", type=int, default=400, help="basic-arithmetic items generated.")
    make.add_argument("--seed", type=int, default=42, help="basic-arithmetic generator seed.")
    make.add_argument("--terms", type=int, nargs=2, default=[2, 4], metavar=("MIN", "MAX"))
    make.add_argument("--digits", type=int, nargs=2, default=[1, 2], metavar=("MIN", "MAX"))
    make.add_argument("--seed-limit", type=int, default=None,
                      help="At most this many seed records (0: no seed corpus; default: all 7,473).")
    make.add_argument("--seed-code", choices=("annotations", "none"), default="annotations",
                      help="Give seed records `code` rebuilt from GSM8K's calculator annotations.")
    make.set_defaults(run=build)

    seed = commands.add_parser("seed-memory", parents=[common], help="Index the seed corpus for the memory MCP server.")
    seed.add_argument("--store", type=Path, default=home / "xolver-eval" / "seeded-memory",
                      help="Memory store directory (default: %(default)s).")
    seed.add_argument("--collection", default=COLLECTION)
    seed.add_argument("--corpus", type=Path, default=None, help=f"Seed JSONL (default: OUT/{SEED_FILE}).")
    seed.add_argument("--batch-size", type=int, default=512)
    seed.add_argument("--check-query", default="Natalia sold clips to 48 of her friends in April, and then she "
                      "sold half as many clips in May. How many clips did she sell in total?")
    seed.add_argument("--coverage", type=int, default=0, metavar="N",
                      help="Then report how many of the first N items of each eval set get an exemplar.")
    seed.add_argument("--min-similarity", type=float, default=0.3, help="As the arms' min_similarity.")
    seed.add_argument("--coverage-out", type=Path, default=None, help="Write the coverage table here (markdown).")
    seed.add_argument("--quiet", "-q", action="store_true", help="No progress bar.")
    seed.set_defaults(run=seed_memory)

    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
