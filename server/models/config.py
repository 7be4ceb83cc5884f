"""Server settings: a config file (YAML/JSON/TOML), ``BRAID_*`` environment variables, CLI flags.

Precedence (highest first): CLI flags, environment, config file, defaults.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

__all__ = ["ModelConfig", "RestartPolicy", "ByteRef", "EnsembleMember", "WorkflowEntry", "Settings", "load_settings", "DEFAULT_MODEL",
           "BYTE_KINDS"]

DEFAULT_MODEL = "smollm2-135m-instruct"
EngineName = Literal["vllm", "transformers", "bytelevel"]
ModelKind = Literal["token", "bytelevel", "ensemble", "proxy"]
BYTE_KINDS = ("bytelevel", "ensemble", "proxy")
ToolCallFormatName = Literal["hermes", "llama3_json"]
_RECIPE_FIELDS = {"bytelevel": ("source",), "ensemble": ("members", "mode"),
                  "proxy": ("base", "expert", "anti_expert", "alpha")}
_BYTE_OPTIONS = ("min_token_prob", "max_branches", "unchecked_tokens", "min_branch_share", "max_backlog_s")


class ByteRef(BaseModel):
    """A part of a byte-level recipe: another served model (``model``: its id) or a ``source``."""

    model_config = {"extra": "forbid"}

    model: str | None = Field(None, description="Id of another entry in `models` (any kind).")
    source: str | None = Field(None, description="Bundled model name, local folder, or Hugging Face id.")

    @model_validator(mode="after")
    def _exactly_one(self) -> "ByteRef":
        if (self.model is None) == (self.source is None):
            raise ValueError("give exactly one of `model` (another entry's id) or `source` (a model to load)")
        return self


class EnsembleMember(ByteRef):
    weight: float = Field(1.0, ge=0.0, allow_inf_nan=False, description="Mixture weight or product exponent.")


class ModelConfig(BaseModel):
    """One served model: its public id, where its weights come from, and which engine runs it.

    ``kind`` ``token`` (default) serves ``source`` on ``engine``. The byte-level kinds run on
    Braid's byte-level engine: ``bytelevel`` reads ``source`` as an exact LM over bytes;
    ``ensemble`` combines ``members`` (``mode`` mix or product, with weights); ``proxy`` is
    ``base + alpha * (expert - anti_expert)``. Members may have different tokenizers.
    """

    model_config = {"extra": "forbid"}

    id: str = Field(description="Model id clients send in the `model` field.")
    kind: ModelKind = Field("token", description="token, bytelevel, ensemble or proxy.")
    source: str | None = Field(None, description="Bundled model name, local folder, or Hugging Face id.")
    engine: EngineName = Field("vllm", description="Engine that runs a token-level model (vllm or transformers).")
    max_model_len: int | None = Field(None, gt=0, description="Context length cap (default: the model's).")
    dtype: str = Field("auto", description="Weights dtype: auto, float32, float64, bfloat16, float16.")
    max_num_seqs: int = Field(32, gt=0, description="Sequences the engine runs at once.")
    engine_options: dict[str, Any] = Field(default_factory=dict, description="Passed to the engine as is.")
    chat_template: Path | None = Field(None, description="A Jinja chat template file that replaces the model's own.")
    disable_any_whitespace: bool = Field(
        False, description="Constrained JSON (response_format, tool calls) without optional whitespace, as "
                           "vLLM's structured_outputs_config option: small models otherwise may loop on it.")
    tool_call_format: ToolCallFormatName = Field(
        "hermes", description="How tool calls look in the text when the chat template does not render tools: "
                              "hermes (<tool_call>{...}</tool_call>) or llama3_json ({\"name\": ..., "
                              "\"parameters\": ...}).")
    # --- byte-level kinds ---
    members: list[EnsembleMember] | None = Field(None, description="ensemble: two or more members with weights.")
    mode: Literal["mix", "product"] | None = Field(None, description="ensemble: mix (default) or product.")
    base: ByteRef | None = Field(None, description="proxy: the model being steered.")
    expert: ByteRef | None = Field(None, description="proxy: the expert.")
    anti_expert: ByteRef | None = Field(None, description="proxy: the anti-expert.")
    alpha: float | None = Field(None, allow_inf_nan=False, description="proxy: steering strength (default 1).")
    min_token_prob: float = Field(0.0, ge=0.0, lt=1.0, description="Byte-level: skip the canonicality check of "
                                  "tokens below this probability (0 = exact; 1e-5 is fast on real vocabularies).")
    max_branches: int | None = Field(None, gt=0, description="Byte-level: cap on the cover size (default: exact).")
    unchecked_tokens: Literal["mask", "keep"] = Field("mask", description="Byte-level: what tokens below "
                                                      "min_token_prob become, unchecked: mask (not allowed) or keep "
                                                      "(allowed; far more accurate, pair it with min_branch_share).")
    min_branch_share: float = Field(0.0, ge=0.0, lt=1.0, description="Byte-level: drop cover branches less likely "
                                    "than this share of the most likely one (0 = exact; 1e-4 with keep is near-exact).")
    max_backlog_s: float | None = Field(60.0, gt=0, description="Byte-level: answer 503 with Retry-After, rather "
                                        "than queue, when the byte-level work already accepted plus this request's "
                                        "would take longer than this many seconds (estimated from the measured time "
                                        "per byte; null: never refuse). A request alone is always accepted.")

    @model_validator(mode="after")
    def _fields_fit_the_kind(self) -> "ModelConfig":
        given = self.model_fields_set
        allowed = set(_RECIPE_FIELDS.get(self.kind, ("source",)))
        recipe_fields = {f for fields in _RECIPE_FIELDS.values() for f in fields} | {"source"}
        for name in sorted(recipe_fields - allowed):
            if name in given and getattr(self, name) is not None:
                raise ValueError(f"{name}: not a field of kind {self.kind!r} (model {self.id!r}); "
                                 f"kind {self.kind!r} takes {sorted(allowed)}")
        if self.chat_template is not None and not self.chat_template.is_file():
            raise ValueError(f"chat_template: {self.chat_template} is not a file (model {self.id!r})")
        if self.kind == "token":
            for name in _BYTE_OPTIONS:
                if getattr(self, name) != type(self).model_fields[name].default:
                    raise ValueError(f"{name}: only byte-level kinds (bytelevel, ensemble, proxy) take it "
                                     f"(model {self.id!r})")
            if self.source is None:
                raise ValueError(f"source: model {self.id!r} needs a source (bundled name, folder or HF id)")
            if self.engine == "bytelevel":
                raise ValueError(f"engine: use `kind: bytelevel` to serve model {self.id!r} at byte level")
            return self
        if "engine" in given and self.engine != "bytelevel":
            raise ValueError(f"engine: model {self.id!r} is of kind {self.kind!r}, which runs on the byte-level "
                             "engine; remove `engine`")
        if self.engine_options:
            raise ValueError(f"engine_options: the byte-level engine takes none (model {self.id!r})")
        self.engine = "bytelevel"
        if self.kind == "bytelevel" and self.source is None:
            raise ValueError(f"source: model {self.id!r} (kind bytelevel) needs a source")
        if self.kind == "ensemble":
            self._check_ensemble()
        if self.kind == "proxy":
            missing = [n for n in ("base", "expert", "anti_expert") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"{missing[0]}: model {self.id!r} (kind proxy) needs base, expert and anti_expert")
            self.alpha = 1.0 if self.alpha is None else self.alpha
        return self

    def _check_ensemble(self) -> None:
        if not self.members or len(self.members) < 2:
            raise ValueError(f"members: model {self.id!r} (kind ensemble) needs at least 2 members, "
                             f"got {len(self.members or [])}")
        if sum(m.weight for m in self.members) <= 0:
            raise ValueError(f"members: model {self.id!r}: at least one member weight must be > 0")
        self.mode = self.mode or "mix"

    def references(self) -> list[tuple[str, ByteRef]]:
        """(field path, part) of every part of a byte-level recipe."""
        parts = [(f"members[{i}]", m) for i, m in enumerate(self.members or [])]
        parts += [(n, getattr(self, n)) for n in ("base", "expert", "anti_expert") if getattr(self, n) is not None]
        return parts


class WorkflowEntry(BaseModel):
    """A Braid workflow answered as a model id on /v1/chat/completions (``braid.agents``)."""

    model_config = {"extra": "forbid"}

    id: str = Field(min_length=1, description="Model id clients send in the `model` field.")
    workflow: str | None = Field(None, description="Workflow name (`braid.agents.workflow_names()`) or "
                                                   "`package.module:SPEC`; default: the id.")
    config: dict[str, Any] | Path | None = Field(
        None, description="The workflow's config, inline or a YAML/JSON/TOML file; roles without `base_url` use "
                          "this server (or env BRAID_AGENT_BASE_URL).")

    @property
    def name(self) -> str:
        return self.workflow or self.id


class RestartPolicy(BaseModel):
    """What the server does when a model's engine fails (its process dies, its step raises)."""

    model_config = {"extra": "forbid"}

    enabled: bool = Field(True, description="Restart a failed engine. Off: the server drains and exits with "
                                            "status 1, for a process supervisor to restart it.")
    max_attempts: int = Field(3, ge=1, description="Restarts in a row before giving up (then the server exits "
                                                   "with status 1). A restart whose engine fails again within "
                                                   "`stable_s` counts as one more in the row.")
    backoff_s: float = Field(1.0, ge=0, description="Wait before the first restart; doubled for each one in a row.")
    backoff_max_s: float = Field(30.0, ge=0, description="Longest wait between restarts.")
    stable_s: float = Field(60.0, ge=0, description="An engine up this long has recovered: the row starts again.")
    wait_s: float = Field(10.0, ge=0, description="How long a request that arrives while the engine restarts "
                                                  "waits for it; after that it gets 503 with Retry-After.")


class Settings(BaseSettings):
    """Braid server settings. Environment variables: BRAID_<FIELD>, e.g. BRAID_API_KEY."""

    model_config = SettingsConfigDict(env_prefix="BRAID_", extra="forbid")

    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8000, ge=0, le=65535, description="Port to bind (0 picks a free one).")
    api_key: str | None = Field(None, description="If set, requests need `Authorization: Bearer <key>`.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    home: Path = Field(
        default_factory=lambda: Path(platformdirs.user_cache_dir("braid")),
        description="Cache root for converted models and indexes.",
    )
    models: list[ModelConfig] = Field(default_factory=list, description="Models to serve.")
    max_queue: int = Field(256, ge=0, description="Requests allowed to wait beyond the running ones; more get 503.")
    max_n: int = Field(16, gt=0, description="Largest `n` accepted per request.")
    workflows: list[WorkflowEntry] = Field(default_factory=list, description="Workflows served as model ids.")
    agents_home: Path | None = Field(None, description="Where workflow runs are kept (agents/runs.sqlite, "
                                                       "checkpoints, files); default: `home`.")
    engine_restart: RestartPolicy = Field(default_factory=RestartPolicy,
                                          description="Restarting failed engines (env as JSON: "
                                                      "BRAID_ENGINE_RESTART='{\"enabled\": false}').")
    drain_timeout_s: float = Field(30.0, ge=0, description="On SIGTERM: how long requests in flight may take to "
                                                           "finish before they are ended with an error.")

    @field_validator("models")
    @classmethod
    def _unique_ids(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        ids = [m.id for m in models]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"model ids must be unique; repeated: {sorted(dup)}")
        _check_references(models)
        return models

    @model_validator(mode="after")
    def _default_model(self) -> "Settings":
        if not self.models and not self.workflows:  # workflows alone: a gateway in front of other servers
            # float32: SmolLM2's de-quantized Q4 weights answer badly in bfloat16 (vLLM's CPU default).
            self.models = [ModelConfig(id=DEFAULT_MODEL, source=DEFAULT_MODEL, dtype="float32")]
        return self

    @model_validator(mode="after")
    def _workflows_load(self) -> "Settings":
        if self.workflows:
            from .workflows import check_workflows  # imports braid.agents: only for servers that run workflows

            check_workflows(self)
        return self


def _check_references(models: list[ModelConfig]) -> None:
    """Every ``model:`` reference names another entry, and no recipe refers back to itself."""
    by_id = {m.id: m for m in models}
    for i, config in enumerate(models):
        for path, part in config.references():
            if part.model is not None and part.model not in by_id:
                raise ValueError(f"models[{i}].{path}.model: no model with id {part.model!r} in this config "
                                 f"(ids: {sorted(by_id)})")

    def visit(model_id: str, trail: tuple[str, ...]) -> None:
        if model_id in trail:
            raise ValueError(f"models: the recipes refer to each other in a cycle: {' -> '.join(trail + (model_id,))}")
        for _, part in by_id[model_id].references():
            if part.model is not None:
                visit(part.model, trail + (model_id,))

    for config in models:
        visit(config.id, ())


def _file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    if path.suffix in (".yaml", ".yml"):
        return YamlConfigSettingsSource(settings_cls, yaml_file=path)
    if path.suffix == ".toml":
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    if path.suffix == ".json":
        return JsonConfigSettingsSource(settings_cls, json_file=path)
    raise ValueError(f"config file {path} must end in .yaml, .yml, .toml or .json")


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from (highest first) non-None ``overrides`` (CLI flags), BRAID_* env, the file."""
    if config_file is not None and not Path(config_file).is_file():
        raise FileNotFoundError(f"config file {config_file} does not exist")

    class _FromFile(Settings):
        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                       file_secret_settings):
            sources = [init_settings, env_settings]
            if config_file is not None:
                sources.append(_file_source(settings_cls, Path(config_file)))
            return tuple(sources)

    layered = _FromFile(**{k: v for k, v in overrides.items() if v is not None})
    return Settings.model_validate(layered.model_dump())
