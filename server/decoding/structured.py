"""Structured outputs: what a request constrains its output to, checked before any engine sees it.

A `StructuredOutputPlan` is engine-independent. The vLLM engine hands vLLM its own
`StructuredOutputsParams` (`to_vllm`); the transformers engine compiles the plan with xgrammar
(`grammar.py`) using the options vLLM 0.32's xgrammar backend uses, so greedy constrained output
is the same on both. `validate_plan` runs where the request is parsed, so both engines refuse the
same plans, with a message that names the parameter and, for schemas, the keyword.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ._grammar_sources import JSON_OBJECT_SCHEMA, parse_plan, xgrammar_message
from ._json_schema_support import unenforceable_feature

__all__ = ["MAX_JSON_NESTING", "PlanKind", "StructuredOutputError", "StructuredOutputPlan", "validate_plan"]

PlanKind = Literal["json", "regex", "choice", "grammar", "structural_tag"]
# vLLM's MAX_STRUCTURED_OUTPUT_JSON_NESTING and STRUCTURAL_TAG_WRAPPER_NESTING.
MAX_JSON_NESTING = 64
_STRUCTURAL_TAG_WRAPPER_NESTING = 16
_LABELS = {"json": "JSON schema", "regex": "regex", "choice": "choice list", "grammar": "grammar",
           "structural_tag": "structural tag"}


@dataclass(frozen=True)
class StructuredOutputPlan:
    """One output constraint. ``spec`` is JSON text for ``json`` (the schema), ``choice`` (a list
    of strings) and ``structural_tag`` (xgrammar's ``{"type": "structural_tag", "format": ...}``
    or the legacy ``{"structures": [...], "triggers": [...]}``); a pattern for ``regex``; EBNF or
    Lark for ``grammar``."""

    kind: PlanKind
    spec: str

    @classmethod
    def from_json_schema(cls, schema: Mapping[str, Any]) -> StructuredOutputPlan:
        return cls("json", json.dumps(schema))

    @classmethod
    def for_json_object(cls) -> StructuredOutputPlan:
        """``response_format: {"type": "json_object"}``: any JSON object, as vLLM compiles it."""
        return cls("json", JSON_OBJECT_SCHEMA)

    @classmethod
    def from_regex(cls, pattern: str) -> StructuredOutputPlan:
        return cls("regex", pattern)

    @classmethod
    def from_choice(cls, options: Sequence[str]) -> StructuredOutputPlan:
        return cls("choice", json.dumps(list(options)))

    @classmethod
    def from_grammar(cls, grammar: str) -> StructuredOutputPlan:
        return cls("grammar", grammar)

    @classmethod
    def from_structural_tag(cls, tag: str | Mapping[str, Any]) -> StructuredOutputPlan:
        """``tag``: the ``structural_tag`` response_format itself, or the JSON text vLLM's
        ``structured_outputs.structural_tag`` takes."""
        return cls("structural_tag", tag if isinstance(tag, str) else json.dumps(tag))

    def to_vllm(self):
        """The ``StructuredOutputsParams`` vLLM's OpenAI server builds for the same request."""
        from vllm.sampling_params import StructuredOutputsParams

        if self.kind == "json":
            schema = json.loads(self.spec)
            if schema == json.loads(JSON_OBJECT_SCHEMA):
                return StructuredOutputsParams(json_object=True)
            return StructuredOutputsParams(json=schema)
        if self.kind == "choice":
            return StructuredOutputsParams(choice=json.loads(self.spec))
        return StructuredOutputsParams(**{self.kind: self.spec})


class StructuredOutputError(ValueError):
    """A plan the grammar engine cannot enforce exactly; ``param`` is the request field at fault."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


def validate_plan(plan: StructuredOutputPlan, param: str) -> None:
    """Raise `StructuredOutputError` unless ``plan`` compiles and every part of it is enforced."""
    if problem := _spec_problem(plan) or _compile_problem(plan):
        raise StructuredOutputError(problem, param)


def _spec_problem(plan: StructuredOutputPlan) -> str | None:
    if plan.kind in ("json", "grammar", "structural_tag") and not plan.spec.strip():
        return f"the {_LABELS[plan.kind]} cannot be empty"
    if plan.kind == "regex" and "\x00" in plan.spec:
        return "the regex must not contain a NUL character"
    if plan.kind == "regex" or plan.kind == "grammar":
        return None
    try:
        document = json.loads(plan.spec)
    except (json.JSONDecodeError, RecursionError) as error:
        return f"the {_LABELS[plan.kind]} is not valid JSON: {error}"
    limit = MAX_JSON_NESTING + (_STRUCTURAL_TAG_WRAPPER_NESTING if plan.kind == "structural_tag" else 0)
    if _nesting_exceeds(document, limit):
        return (f"the {_LABELS[plan.kind]} is nested too deeply: objects and arrays may nest at most "
                f"{MAX_JSON_NESTING} levels")
    if plan.kind == "choice":
        if isinstance(document, list) and document and all(isinstance(option, str) for option in document):
            return None
        return "the choices must be a non-empty list of strings"
    if plan.kind == "json":
        return _schema_problem(document, "")
    if not isinstance(document, dict):
        return "a structural tag must be a JSON object"
    return next(filter(None, (_schema_problem(schema, where) for schema, where in _tag_schemas(document, ""))), None)


def _compile_problem(plan: StructuredOutputPlan) -> str | None:
    try:
        parse_plan(plan)
    except Exception as error:  # xgrammar, pydantic and malformed legacy tags all mean an invalid spec
        return f"the {_LABELS[plan.kind]} cannot be compiled to a grammar: {xgrammar_message(error)}"
    return None


def _schema_problem(schema: Any, where: str) -> str | None:
    from jsonschema import exceptions, validators

    at = f" in `{where}`" if where else ""
    if not isinstance(schema, dict):
        return f"the JSON schema{at} must be a JSON object"
    try:
        validators.validator_for(schema, default=validators.Draft202012Validator).check_schema(schema)
    except exceptions.SchemaError as error:
        location = ".".join(map(str, error.absolute_path))
        return f"invalid JSON Schema{at}{f' at `{location}`' if location else ''}: {error.message}"
    problem = unenforceable_feature(schema)
    return problem + at if problem else None


def _tag_schemas(node: Any, path: str) -> Iterator[tuple[Any, str]]:
    """The JSON schemas inside a structural tag: ``json_schema`` contents and legacy ``schema`` items."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _tag_schemas(item, f"{path}.{i}" if path else str(i))
    elif isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else key
            if (key == "json_schema" and node.get("type") in ("json_schema", "qwen_xml_parameter")
                    or key == "schema" and "begin" in node):
                yield value, where
            else:
                yield from _tag_schemas(value, where)


def _nesting_exceeds(document: Any, limit: int) -> bool:
    """vLLM's ``check_json_nesting``: objects and arrays nested more than ``limit`` levels."""
    level = [document]
    for _ in range(limit):
        level = [child for node in level if isinstance(node, (dict, list))
                 for child in (node.values() if isinstance(node, dict) else node) if isinstance(child, (dict, list))]
        if not level:
            return False
    return True
