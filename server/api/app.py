"""Building and running the FastAPI app from settings."""
from __future__ import annotations

import contextlib
import logging

from fastapi import FastAPI

from ..models.config import Settings
from .metrics import Metrics
from ..models.registry import ModelRegistry
from .routes import install_routes
from .serving_chat import ChatServing
from .serving_completion import CompletionServing

__all__ = ["build_app", "run_server"]

log = logging.getLogger("braid.server")


def build_app(settings: Settings) -> FastAPI:
    registry = ModelRegistry(settings)
    metrics = Metrics(registry.stats)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await registry.start()
        for served in registry.all():
            metrics.add_model(served.config.id)
            served.engine.cache_home = settings.home
        log.info("serving %s", [m.config.id for m in registry.all()])
        try:
            yield
        finally:
            await registry.shutdown()

    app = FastAPI(title="Braid", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = registry
    app.state.metrics = metrics
    app.state.completion_serving = CompletionServing(registry, settings, metrics)
    app.state.chat_serving = ChatServing(registry, settings, metrics)
    install_routes(app)
    return app


def run_server(settings: Settings) -> None:
    import uvicorn

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings.home.mkdir(parents=True, exist_ok=True)
    uvicorn.run(build_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                timeout_graceful_shutdown=5)
