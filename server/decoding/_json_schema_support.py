"""JSON Schema features xgrammar 0.2.8 would silently drop, found before they loosen an output.

The rules mirror ``has_xgrammar_unsupported_json_features`` in vLLM 0.32 (its walk included:
every dict value and every dict in a list is checked), so anything vLLM's xgrammar backend
refuses is refused here, with a message naming the keyword. On top of vLLM's list, keywords
xgrammar ignores outright (``not``, ``if``, ``dependentRequired`` ...) are refused, and the
type-gated rules also apply when a schema declares no ``type``, since xgrammar ignores them
there too. Those extras are checked only at schema positions, so a property *named* ``not`` is
fine.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# xgrammar's json_schema_converter.cc, as listed by vLLM.
STRING_FORMATS = frozenset({
    "email", "date", "time", "date-time", "duration", "ipv4", "ipv6", "hostname", "uuid", "uri",
    "uri-reference", "uri-template", "json-pointer", "relative-json-pointer",
})
_IGNORED_KEYWORDS = ("not", "if", "then", "else", "dependentRequired", "dependentSchemas", "dependencies",
                     "$dynamicRef", "$recursiveRef")
_ARRAY_KEYWORDS = ("uniqueItems", "contains", "minContains", "maxContains")
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples"})


def unenforceable_feature(schema: dict[str, Any]) -> str | None:
    """A message naming the first feature of ``schema`` the grammar engine cannot enforce, else None."""
    for node, path, is_schema in _walk(schema, (), "schema"):
        problem = _vllm_rules(node) or (_extra_rules(node) if is_schema else None)
        if problem:
            where = ".".join(map(str, path))
            return f"{problem} cannot be enforced by the grammar engine" + (f" (at `{where}`)" if where else "")
    return None


def _walk(node: dict, path: tuple, role: str) -> Iterator[tuple[dict, tuple, bool]]:
    """Every dict under ``node`` as vLLM visits them; ``role`` tells schemas from name maps and data."""
    yield node, path, role == "schema"
    for key, value in node.items():
        if role == "schema":
            child = "map" if key in _SCHEMA_MAPS else "data" if key in _DATA_KEYWORDS else "schema"
        else:
            child = "schema" if role == "map" else "data"
        items = [(key, value)] if isinstance(value, dict) else \
            [(f"{key}.{i}", item) for i, item in enumerate(value)] if isinstance(value, list) else []
        for where, item in items:
            if isinstance(item, dict):
                yield from _walk(item, (*path, where), child)


def _types(node: dict) -> set[str]:
    declared = node.get("type")
    if isinstance(declared, str):
        return {declared}
    return {t for t in declared if isinstance(t, str)} if isinstance(declared, list) else set()


def _pattern_with_length(node: dict) -> str | None:
    if ("pattern" in node or "format" in node) and ("minLength" in node or "maxLength" in node):
        length = "minLength" if "minLength" in node else "maxLength"
        return f"`{length}` together with `{'pattern' if 'pattern' in node else 'format'}`"
    return None


def _vllm_rules(node: dict) -> str | None:
    """vLLM 0.32's rules, each gated on the declared ``type`` as vLLM gates it."""
    types = _types(node)
    if types & {"integer", "number"} and "multipleOf" in node:
        return "`multipleOf`"
    if "array" in types and (found := next((k for k in _ARRAY_KEYWORDS if k in node), None)):
        return f"`{found}`"
    if "string" in types:
        if "format" in node and node["format"] not in STRING_FORMATS:
            return f"`format: {node['format']}`"
        if problem := _pattern_with_length(node):
            return problem
    if "object" in types:
        if "propertyNames" in node and (problem := _property_names_rules(node)):
            return problem
        if isinstance(node.get("patternProperties"), dict) and (problem := _pattern_properties_rules(node)):
            return problem
    if isinstance(node.get("allOf"), list) and len(node["allOf"]) >= 2:
        return "`allOf` with more than one subschema"
    return None


def _property_names_rules(node: dict) -> str | None:
    names = node["propertyNames"]
    if isinstance(names, dict) and (problem := _pattern_with_length(names)):
        return f"`propertyNames` with {problem}"
    for other in ("patternProperties", "properties"):
        if other in node:
            return f"`propertyNames` together with `{other}`"
    if node.get("unevaluatedProperties", True) is not True:
        return "`propertyNames` together with `unevaluatedProperties`"
    return None


def _pattern_properties_rules(node: dict) -> str | None:
    if "properties" in node:
        return "`patternProperties` together with `properties`"
    if len(node["patternProperties"]) > 1:
        return "`patternProperties` with more than one pattern"
    return None


def _extra_rules(node: dict) -> str | None:
    """Keywords xgrammar ignores outright, and vLLM's type-gated rules where no type is declared."""
    if found := next((k for k in _IGNORED_KEYWORDS if k in node), None):
        return f"`{found}`"
    ref = node.get("$ref")
    if isinstance(ref, str) and not (ref == "#" or ref.startswith("#/")):
        return f"`$ref` to `{ref}` (only local `#/...` references resolve)"
    if _types(node):
        return None
    if "multipleOf" in node:
        return "`multipleOf`"
    if found := next((k for k in _ARRAY_KEYWORDS if k in node), None):
        return f"`{found}`"
    if "format" in node and node["format"] not in STRING_FORMATS:
        return f"`format: {node['format']}`"
    return _pattern_with_length(node)
