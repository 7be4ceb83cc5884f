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

__all__ = ["ModelConfig", "Settings", "load_settings", "DEFAULT_MODEL"]

DEFAULT_MODEL = "smollm2-135m-instruct"
EngineName = Literal["vllm", "transformers"]


class ModelConfig(BaseModel):
    """One served model: its public id, where its weights come from, and which engine runs it."""

    model_config = {"extra": "forbid"}

    id: str = Field(description="Model id clients send in the `model` field.")
    source: str = Field(description="Bundled model name, local folder, or Hugging Face id.")
    engine: EngineName = Field("vllm", description="Engine that runs the model.")
    max_model_len: int | None = Field(None, gt=0, description="Context length cap (default: the model's).")
    dtype: str = Field("auto", description="Weights dtype: auto, float32, bfloat16, float16.")
    max_num_seqs: int = Field(32, gt=0, description="Sequences the engine runs at once.")
    engine_options: dict[str, Any] = Field(default_factory=dict, description="Passed to the engine as is.")


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

    @field_validator("models")
    @classmethod
    def _unique_ids(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        ids = [m.id for m in models]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"model ids must be unique; repeated: {sorted(dup)}")
        return models

    @model_validator(mode="after")
    def _default_model(self) -> "Settings":
        if not self.models:
            # float32: SmolLM2's de-quantized Q4 weights answer badly in bfloat16 (vLLM's CPU default).
            self.models = [ModelConfig(id=DEFAULT_MODEL, source=DEFAULT_MODEL, dtype="float32")]
        return self


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
