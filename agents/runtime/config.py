"""Validated settings of a workflow run: a model endpoint per role, MCP servers, and where runs are kept."""
from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Self

import platformdirs
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["ConfigError", "McpServer", "RoleModel", "RuntimeSettings", "WorkflowConfig", "load_config_file"]

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


class ConfigError(ValueError):
    """A workflow config that does not validate; the message names the field."""


def _default_base_url() -> str:
    return os.environ.get("BRAID_AGENT_BASE_URL", DEFAULT_BASE_URL)


class RoleModel(BaseModel):
    """One role's model: any OpenAI-compatible endpoint (Braid's own server by default).

    `extra_body` reaches Braid's decoding methods, e.g. `{"contrastive": {"method": "icd"}}`.
    """

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(default_factory=_default_base_url,
                          description="OpenAI-compatible base URL (env BRAID_AGENT_BASE_URL).")
    model: str | None = Field(None, description="Model id; default: the first model the server lists.")
    api_key: str | None = Field(None, description="Bearer token; default: env BRAID_API_KEY.")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(512, ge=1)
    seed: int | None = None
    timeout_s: float = Field(120.0, gt=0.0, description="Seconds per model request.")
    max_retries: int = Field(1, ge=0)
    extra_body: dict[str, Any] = Field(default_factory=dict,
                                       description="Extra request fields: Braid's decoding methods, top_k, min_p, ...")

    def resolved_api_key(self) -> str:
        return self.api_key or os.environ.get("BRAID_API_KEY") or "none"


class McpServer(BaseModel):
    """An MCP server a workflow's tools come from: one of Braid's (`braid`), a command (stdio) or a URL.

    The session is opened when a run starts and kept open for the whole run.
    """

    model_config = ConfigDict(extra="forbid")

    braid: str | None = Field(None, description="A Braid MCP server name (`braid mcp list`), run over stdio.")
    options: list[str] = Field(default_factory=list, description="Options for `braid mcp serve NAME`.")
    command: str | None = Field(None, description="Any stdio MCP server: the executable.")
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    url: str | None = Field(None, description="A streamable-HTTP MCP server, e.g. http://127.0.0.1:8765/mcp.")

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Self:
        kinds = [k for k in ("braid", "command", "url") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError("an MCP server needs exactly one of `braid` (a Braid server name), `command` (stdio) "
                             f"or `url` (streamable HTTP); got {kinds or 'none'}")
        return self

    def describe(self) -> str:
        if self.url:
            return self.url
        if self.braid:
            return " ".join(["braid mcp serve", self.braid, *self.options])
        return " ".join([self.command or "", *self.args])


class WorkflowConfig(BaseModel):
    """Base of every workflow's config: its roles' models and its MCP servers. Workflows add fields."""

    model_config = ConfigDict(extra="forbid")

    roles: dict[str, RoleModel] = Field(default_factory=dict)
    tools: dict[str, McpServer] = Field(default_factory=dict)
    recursion_limit: int = Field(50, ge=1, description="LangGraph's cap on steps per run.")

    def role(self, name: str) -> RoleModel:
        """The role's model settings; a role the config does not name uses the `default` role or the defaults."""
        return self.roles.get(name) or self.roles.get("default") or RoleModel()

    @classmethod
    def load(cls, source: str | os.PathLike[str] | dict[str, Any] | BaseModel | None = None,
             overrides: dict[str, Any] | None = None) -> Self:
        """From a dict, a YAML/JSON/TOML file, an instance, or nothing (the workflow's defaults)."""
        if isinstance(source, cls) and not overrides:
            return source
        if isinstance(source, BaseModel):
            data = source.model_dump()
        elif isinstance(source, (str, os.PathLike)):
            data = load_config_file(Path(source))
        else:
            data = dict(source or {})
        data = _deep_merge(data, overrides or {})
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, cls.__name__)) from None


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = _deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(
            merged.get(key), dict) else value
    return merged


def _describe(exc: ValidationError, what: str) -> str:
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in exc.errors())
    return f"invalid {what}: {problems}"


def load_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path} does not parse: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, not {type(data).__name__}")
    return data


class RuntimeSettings(BaseModel):
    """Where runs live. `checkpointer`: unset = SQLite under BRAID_HOME; a `postgres://` URL = a shared
    Postgres (several workers can resume each other's runs); `memory` = nothing kept."""

    model_config = ConfigDict(extra="forbid")

    home: Path
    checkpointer: str | None = None

    @classmethod
    def from_env(cls, **overrides: Any) -> "RuntimeSettings":
        values: dict[str, Any] = {
            "home": os.environ.get("BRAID_HOME") or platformdirs.user_cache_dir("braid"),
            "checkpointer": os.environ.get("BRAID_CHECKPOINTER") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    @property
    def agents_dir(self) -> Path:
        return Path(self.home) / "agents"

    @property
    def records_path(self) -> Path:
        return self.agents_dir / "runs.sqlite"

    @property
    def checkpoint_url(self) -> str:
        return self.checkpointer or str(self.agents_dir / "checkpoints.sqlite")

    def files_dir(self, thread_id: str) -> Path:
        return self.agents_dir / "files" / thread_id
