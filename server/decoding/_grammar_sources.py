"""How each kind of plan becomes xgrammar input, exactly as vLLM 0.32's xgrammar backend does it.

`parse_plan` builds the tokenizer-free `xgrammar.Grammar` that vLLM's request validation builds
(``validate_xgrammar_grammar``); `compile_plan` calls the `GrammarCompiler` method, with the
options, that vLLM's ``XgrammarBackend.compile_grammar`` calls. Keeping both here keeps one
dispatch over the kinds, so validation and decoding cannot disagree about a plan.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, TimeoutError
from typing import TYPE_CHECKING, TypeVar

import xgrammar as xgr

if TYPE_CHECKING:
    from .structured import StructuredOutputPlan

T = TypeVar("T")

# vLLM's VLLM_REGEX_COMPILATION_TIMEOUT_S default: nested quantifiers can blow up the automaton.
REGEX_COMPILE_TIMEOUT_S = 5.0
# vLLM's json_object constraint is this schema, compiled like any other.
JSON_OBJECT_SCHEMA = '{"type": "object"}'
_EBNF_ESCAPES = {"\\": r"\\", '"': r"\"", "\n": r"\n", "\r": r"\r", "\t": r"\t"}
_XGRAMMAR_LOG_PREFIX = re.compile(r"^\[[\d:]+\] \S+:\d+: ")


def choice_ebnf(options: Sequence[str]) -> str:
    """The EBNF grammar vLLM compiles a ``choice`` list to (``choice_as_grammar``)."""
    def escape(ch: str) -> str:
        if ch in _EBNF_ESCAPES:
            return _EBNF_ESCAPES[ch]
        return f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch

    return "root ::= " + " | ".join('"' + "".join(map(escape, option)) + '"' for option in options)


def is_lark(grammar: str) -> bool:
    """vLLM's ``grammar_is_likely_lark``: Lark unless some non-comment line defines a rule with ``::=``."""
    for line in grammar.split("\n"):
        if "::=" in re.sub(r"(#|//).*$", "", line).strip():
            return False
    return bool(grammar)


def legacy_tag_items(tag: dict) -> tuple[list[xgr.StructuralTagItem], list[str]]:
    """The ``{"structures": [...], "triggers": [...]}`` structural tag form as xgrammar's items."""
    items = [xgr.StructuralTagItem(begin=s["begin"], schema=json.dumps(s["schema"]), end=s["end"])
             for s in tag["structures"]]
    return items, tag["triggers"]


def with_timeout(compile_fn: Callable[[str], T], source: str, seconds: float = REGEX_COMPILE_TIMEOUT_S) -> T:
    """``compile_fn(source)``, or ValueError after ``seconds`` (the native call keeps running detached)."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(compile_fn, source).result(timeout=seconds)
    except TimeoutError:
        raise ValueError(f"compiling the regex took over {seconds:g} s; simplify nested quantifiers") from None
    finally:
        pool.shutdown(wait=False)


def xgrammar_message(error: BaseException) -> str:
    """xgrammar's error text without its ``[time] file.cc:line:`` prefix."""
    return _XGRAMMAR_LOG_PREFIX.sub("", str(error).strip())


def parse_plan(plan: StructuredOutputPlan) -> xgr.Grammar:
    """The grammar vLLM's request validation parses for ``plan``; raises on an invalid spec."""
    if plan.kind == "json":
        return xgr.Grammar.from_json_schema(plan.spec)
    if plan.kind == "regex":
        return with_timeout(xgr.Grammar.from_regex, plan.spec)
    if plan.kind == "choice":
        return xgr.Grammar.from_ebnf(choice_ebnf(json.loads(plan.spec)))
    if plan.kind == "grammar":
        return xgr.Grammar.from_lark(plan.spec) if is_lark(plan.spec) else xgr.Grammar.from_ebnf(plan.spec)
    tag = json.loads(plan.spec)
    if "structures" in tag:
        return xgr.Grammar.from_structural_tag(*legacy_tag_items(tag))
    return xgr.Grammar.from_structural_tag(plan.spec)


def compile_plan(compiler: xgr.GrammarCompiler, plan: StructuredOutputPlan,
                 disable_any_whitespace: bool) -> xgr.CompiledGrammar:
    """``plan`` compiled with the options of vLLM's ``XgrammarBackend.compile_grammar``."""
    if plan.kind == "json":
        # vLLM passes both: xgrammar's any_whitespace alone still allows ", " and ": ".
        separators = (",", ":") if disable_any_whitespace else None
        return compiler.compile_json_schema(plan.spec, any_whitespace=not disable_any_whitespace,
                                            separators=separators)
    if plan.kind == "regex":
        return with_timeout(compiler.compile_regex, plan.spec)
    if plan.kind == "choice":
        return compiler.compile_grammar(choice_ebnf(json.loads(plan.spec)))
    if plan.kind == "grammar":
        return compiler.compile_lark(plan.spec) if is_lark(plan.spec) else compiler.compile_grammar(plan.spec)
    tag = json.loads(plan.spec)
    if "structures" in tag:
        return compiler.compile_structural_tag(*legacy_tag_items(tag))
    return compiler.compile_structural_tag(plan.spec)
