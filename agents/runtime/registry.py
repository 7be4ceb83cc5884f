"""Workflows by name: Braid's own (imported when first asked for) and any registered at run time."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langgraph.graph import StateGraph

from .config import WorkflowConfig
from .errors import UnknownWorkflow
from .io import WorkflowInput, WorkflowOutput

__all__ = ["WorkflowSpec", "get_spec", "register", "workflow_names"]


@dataclass(frozen=True)
class WorkflowSpec:
    """Everything the runtime needs to run a workflow; nothing in it knows which surface runs it.

    `build(config)` returns an uncompiled `StateGraph` whose nodes take `runtime: Runtime[RunContext]`
    (models per role, MCP tools, progress); `start(input, config)` is the graph's first state;
    `output(state, context)` reads the final state into the workflow's output model.
    """

    name: str
    summary: str
    build: Callable[[Any], StateGraph]
    start: Callable[[Any, Any], dict[str, Any]]
    output: Callable[[dict[str, Any], Any], WorkflowOutput]
    config_model: type[WorkflowConfig] = WorkflowConfig
    input_model: type[WorkflowInput] = WorkflowInput
    output_model: type[WorkflowOutput] = WorkflowOutput
    roles: tuple[str, ...] = ("default",)
    """Roles whose model endpoints a run needs (checked before it starts)."""
    is_correct: Callable[[WorkflowOutput, Any], bool] | None = None
    """For evaluations: does an output match an item's expected answer."""
    metadata: dict[str, Any] = field(default_factory=dict)


_BUILTIN = {"example": "braid.agents.example.workflow", "xolver": "braid.agents.xolver.workflow"}
_registered: dict[str, WorkflowSpec] = {}


def register(spec: WorkflowSpec) -> WorkflowSpec:
    """Makes `spec` loadable by name on every surface of this process."""
    _registered[spec.name] = spec
    return spec


def workflow_names() -> list[str]:
    return sorted({*_BUILTIN, *_registered})


def get_spec(name: str) -> WorkflowSpec:
    """A registered or built-in name, or `package.module:ATTR` naming a WorkflowSpec anywhere."""
    if name in _registered:
        return _registered[name]
    if name in _BUILTIN:
        spec = importlib.import_module(_BUILTIN[name]).SPEC
        _registered[name] = spec
        return spec
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            spec = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise UnknownWorkflow(name, workflow_names()) from exc
        if not isinstance(spec, WorkflowSpec):
            raise UnknownWorkflow(name, workflow_names())
        return spec
    raise UnknownWorkflow(name, workflow_names())
