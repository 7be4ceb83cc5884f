"""The workflows a server answers as model ids (settings `workflows`): checked when the settings load,
then loaded with every role that names no `base_url` pointed at this server itself.

`braid.agents` (LangGraph, LangChain) is imported inside the functions: only a server with
workflows loads it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import Settings

if TYPE_CHECKING:
    from braid.agents.runtime.config import WorkflowConfig
    from braid.agents.runtime.runner import Workflow

__all__ = ["ServedWorkflow", "check_workflows", "load_workflows", "own_url"]

_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


@dataclass(frozen=True)
class ServedWorkflow:
    id: str
    workflow: "Workflow"


def own_url(settings: Settings) -> str:
    """This server's /v1 URL as seen from its own host (a wildcard bind address reads as loopback)."""
    host = _WILDCARDS.get(settings.host, settings.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.port}/v1"


def _roles_without_url(config: "WorkflowConfig", roles: tuple[str, ...]) -> list[str]:
    """The workflow's roles whose model endpoint its config leaves to the default."""
    missing = []
    for name in roles:
        role = config.roles.get(name) or config.roles.get("default")
        if role is None or "base_url" not in role.model_fields_set:
            missing.append(name)
    return missing


def check_workflows(settings: Settings) -> None:
    """A ValueError naming the field for: an id used twice or also a model id, an unknown workflow, a
    config that does not validate, and on a server with no model of its own, a role with nowhere to go."""
    from braid.agents.runtime.config import ConfigError
    from braid.agents.runtime.errors import UnknownWorkflow
    from braid.agents.runtime.registry import get_spec

    model_ids = {model.id for model in settings.models}
    seen: set[str] = set()
    for i, entry in enumerate(settings.workflows):
        where = f"workflows[{i}]"
        if entry.id in model_ids:
            raise ValueError(f"{where}.id: {entry.id!r} is also the id of a model in `models`; give the workflow "
                             "another id")
        if entry.id in seen:
            raise ValueError(f"{where}.id: {entry.id!r} is repeated; workflow ids must be unique")
        seen.add(entry.id)
        try:
            spec = get_spec(entry.name)
        except UnknownWorkflow as exc:
            raise ValueError(f"{where}.workflow: {exc}") from None
        try:
            config = spec.config_model.load(entry.config)
        except ConfigError as exc:
            raise ValueError(f"{where}.config: {exc}") from None
        if not settings.models and not os.environ.get("BRAID_AGENT_BASE_URL"):
            missing = _roles_without_url(config, spec.roles)
            if missing:
                raise ValueError(f"{where}.config.roles: role(s) {missing} set no base_url and this server serves no "
                                 "model of its own (no `models`): set each role's base_url, or serve a model here")


def _with_endpoint(config: "WorkflowConfig", base_url: str, api_key: str | None) -> "WorkflowConfig":
    """Every role entry without its own base_url, and the `default` role unnamed roles fall back to,
    on `base_url` (with `api_key` unless the role has one)."""
    from braid.agents.runtime.config import RoleModel

    roles = {}
    for name, role in config.roles.items():
        if "base_url" in role.model_fields_set:
            roles[name] = role
        else:
            roles[name] = role.model_copy(update={"base_url": base_url, "api_key": role.api_key or api_key})
    roles.setdefault("default", RoleModel(base_url=base_url, api_key=api_key))
    return config.model_copy(update={"roles": roles})


def load_workflows(settings: Settings) -> dict[str, ServedWorkflow]:
    """The settings' workflows by id. Runs are kept under `agents_home` (default: `home`). Roles without
    a base_url use env BRAID_AGENT_BASE_URL when set, else this server (with its API key)."""
    from braid.agents.runtime.config import RuntimeSettings
    from braid.agents.runtime.registry import get_spec
    from braid.agents.runtime.runner import Workflow

    runtime = RuntimeSettings.from_env(home=settings.agents_home or settings.home)
    elsewhere = os.environ.get("BRAID_AGENT_BASE_URL")
    base_url, api_key = (elsewhere, None) if elsewhere else (own_url(settings), settings.api_key)
    served = {}
    for entry in settings.workflows:
        spec = get_spec(entry.name)
        config = _with_endpoint(spec.config_model.load(entry.config), base_url, api_key)
        served[entry.id] = ServedWorkflow(entry.id, Workflow(spec, config, runtime))
    return served
