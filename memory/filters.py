"""Metadata filters -> an SQL condition over the ``metadata`` JSON column.

``{"key": value}`` equality; ``{"key": [a, b]}`` any of; ``{"key": {"$gte": 3, "$lt": 9}}``
with ``$eq $ne $gt $gte $lt $lte $in $exists``. Several keys are ANDed. Special keys:
``labels`` (the record has every given label) and ``score`` (the record's own score).
"""
from __future__ import annotations

import json
from typing import Any

__all__ = ["filters_to_sql"]

_OPS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def _column(key: str) -> str:
    if key == "score":
        return "score"
    return "json_extract(metadata, '$.\"' || ? || '\"')"


def _one(key: str, cond: Any, params: list) -> str:
    if key == "labels":
        labels = cond if isinstance(cond, list) else [cond]
        parts = []
        for label in labels:
            parts.append("EXISTS (SELECT 1 FROM json_each(labels) WHERE value = ?)")
            params.append(label)
        return " AND ".join(parts) or "1"
    col = _column(key)

    def use(value: Any) -> str:
        if key != "score":
            params.append(key)
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        params.append(value)
        return col

    if isinstance(cond, list):
        cond = {"$in": cond}
    if not isinstance(cond, dict):
        cond = {"$eq": cond}
    parts = []
    for op, value in cond.items():
        if op in _OPS:
            if value is None:
                raise ValueError(f"filter {key!r}: use $exists for None, not {op}")
            parts.append(f"{use(value)} {_OPS[op]} ?")
        elif op == "$in":
            if not value:
                parts.append("0")
                continue
            ors = [f"{use(v)} = ?" for v in value]
            parts.append("(" + " OR ".join(ors) + ")")
        elif op == "$exists":
            if key != "score":
                params.append(key)
            parts.append(f"{col} IS {'NOT ' if value else ''}NULL")
        else:
            raise ValueError(f"filter {key!r}: unknown operator {op!r} "
                             f"(use one of {sorted(_OPS) + ['$in', '$exists']})")
    return " AND ".join(parts) or "1"


def filters_to_sql(filters: dict[str, Any] | None) -> tuple[str, list]:
    """``(condition, params)``; condition is "1" when there is nothing to filter."""
    if not filters:
        return "1", []
    params: list = []
    parts = [f"({_one(key, cond, params)})" for key, cond in filters.items()]
    return " AND ".join(parts), params
