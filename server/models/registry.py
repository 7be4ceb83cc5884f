"""The model registry: served model ids -> started engines."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from .config import BYTE_KINDS, ModelConfig, Settings
from ..engines.base import Engine, EngineStats
from ..api.errors import not_found
from .supervisor import EngineHealth, SupervisedEngine
from .weights import resolve_source

if TYPE_CHECKING:
    from ..engines.bytelevel.prompt_boundary import HandOff, PromptBoundaryReader
    from ..engines.bytelevel.sources import SourcePool

__all__ = ["ModelRegistry", "ServedModel"]

log = logging.getLogger(__name__)


@dataclass
class ServedModel:
    config: ModelConfig
    engine: SupervisedEngine
    path: str
    boundary_reader: Callable[[], PromptBoundaryReader] = field(repr=False)  # the registry's, made on first use
    _renders_tools: bool | None = field(default=None, init=False, repr=False)

    @property
    def renders_tools(self) -> bool:
        """Whether the model's chat template renders ``tools`` itself (probed once: two renders)."""
        if self._renders_tools is None:
            from ..tool_calling import template_renders_tools

            self._renders_tools = template_renders_tools(self.engine.tokenizer)
        return self._renders_tools

    async def exact_boundary(self, prompt: str, seed: int | None, greedy: bool) -> HandOff:
        """Where a token-level model continues a prompt text that may end mid-token, read at byte
        level: the hand-off's token ids and the text they add. `EngineError` if the text is impossible."""
        return await self.boundary_reader().hand_off(self.path, self.config.dtype, prompt, seed, greedy)


def build_engine(config: ModelConfig, path: str, recipe=None, pool: SourcePool | None = None) -> Engine:
    """The engine for one entry; byte-level kinds take the ``recipe`` built by `build_recipe` and
    the `SourcePool` their models are loaded from."""
    if config.kind in BYTE_KINDS:
        from ..engines.bytelevel import ByteLevelEngine

        return ByteLevelEngine(config.id, recipe, pool, max_model_len=config.max_model_len,
                               max_num_seqs=config.max_num_seqs, max_backlog_s=config.max_backlog_s)
    common = dict(max_model_len=config.max_model_len, dtype=config.dtype, max_num_seqs=config.max_num_seqs,
                  disable_any_whitespace=config.disable_any_whitespace, **config.engine_options)
    if config.engine == "vllm":
        from ..engines.vllm.engine import VLLMEngine

        return VLLMEngine(config.id, path, **common)
    from ..engines.hf import HFEngine

    return HFEngine(config.id, path, **common)


class ModelRegistry:
    """``give_up(why)`` is called when a model's engine failed for good (restarts off or used up)."""

    def __init__(self, settings: Settings, give_up: Callable[[str], None] | None = None) -> None:
        self._settings = settings
        self._give_up = give_up or (lambda why: log.critical("%s; the server cannot restart it", why))
        self._models: dict[str, ServedModel] = {}
        self._source_pool: SourcePool | None = None  # models read at byte level, loaded once per (path, dtype)
        self._boundary_reader: PromptBoundaryReader | None = None

    async def start(self) -> None:
        by_id = {config.id: config for config in self._settings.models}
        for config in self._settings.models:
            recipe = None
            if config.kind in BYTE_KINDS:
                from ..engines.bytelevel import build_recipe, describe

                recipe = build_recipe(config, by_id, lambda source: resolve_source(source, self._settings.home))
                path = recipe.path if config.kind == "bytelevel" else describe(recipe)
            else:
                path = resolve_source(config.source, self._settings.home)
            log.info("loading model %s from %s on the %s engine", config.id, path, config.engine)
            engine = SupervisedEngine(config.id, self._launcher(config, path, recipe), self._settings.engine_restart,
                                      self._give_up)
            await engine.start()
            self._models[config.id] = ServedModel(config, engine, path, self._prompt_boundary_reader)
            log.info("model %s ready (max_model_len=%d)", config.id, engine.max_model_len)

    def _launcher(self, config: ModelConfig, path: str, recipe):
        """Builds and starts a fresh engine for ``config``: at start-up, and for each restart."""

        async def launch() -> Engine:
            pool = self._byte_level_sources() if recipe is not None else None
            # Off the event loop: engines read tokenizers and configs as they are built, and a
            # restart must not stall the other models' requests.
            engine = await asyncio.to_thread(build_engine, config, path, recipe, pool)
            engine.cache_home = self._settings.home
            await engine.start()
            if config.chat_template is not None:
                engine.tokenizer.chat_template = config.chat_template.read_text()
            return engine

        return launch

    async def shutdown(self) -> None:
        for served in self._models.values():
            await served.engine.shutdown()
        self._models.clear()
        if self._boundary_reader is not None:
            self._boundary_reader.close()
            self._boundary_reader = None
        self._source_pool = None

    def _byte_level_sources(self) -> SourcePool:
        if self._source_pool is None:
            from ..engines.bytelevel.sources import SourcePool

            self._source_pool = SourcePool()
        return self._source_pool

    def _prompt_boundary_reader(self) -> PromptBoundaryReader:
        """The byte-level reader behind `ServedModel.exact_boundary`, made on first use (it takes
        each model's byte-level copy from the registry's pool, shared with byte-level engines)."""
        if self._boundary_reader is None:
            from ..engines.bytelevel.prompt_boundary import PromptBoundaryReader

            self._boundary_reader = PromptBoundaryReader(self._byte_level_sources())
        return self._boundary_reader

    def get(self, model_id: str) -> ServedModel:
        try:
            return self._models[model_id]
        except KeyError:
            raise not_found(f"The model `{model_id}` does not exist. Served models: {sorted(self._models)}",
                            "model") from None

    def all(self) -> list[ServedModel]:
        return list(self._models.values())

    def stats(self) -> dict[str, EngineStats]:
        return {model_id: served.engine.stats() for model_id, served in self._models.items()}

    def health(self) -> dict[str, EngineHealth]:
        return {model_id: served.engine.health() for model_id, served in self._models.items()}

    async def ready(self, model_id: str) -> ServedModel:
        """The model, once its engine is ready: ``EngineUnavailable`` if it is restarting past ``wait_s``."""
        served = self.get(model_id)
        await served.engine.wait_ready()
        return served

    def begin_drain(self) -> None:
        for served in self._models.values():
            served.engine.begin_drain()

    def end_requests(self, message: str) -> int:
        """End every request in flight on every model with a 503; how many there were."""
        return sum(served.engine.end_requests(message) for served in self._models.values())
