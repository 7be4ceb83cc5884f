"""Building and running the FastAPI app from settings."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from fastapi import FastAPI

from ..models.config import Settings
from .lifecycle import AdmissionGate, Lifecycle
from .metrics import Metrics
from ..models.registry import ModelRegistry
from .routes import install_routes
from .serving_chat import ChatServing
from .serving_completion import CompletionServing

__all__ = ["build_app", "run_server"]

log = logging.getLogger("braid.server")


def build_app(settings: Settings) -> FastAPI:
    lifecycle = Lifecycle(settings.drain_timeout_s)

    def give_up(why: str) -> None:  # a model's engine failed for good: drain, then exit 1 (a supervisor restarts us)
        log.critical("%s; draining, then exiting with status 1", why)
        asyncio.get_running_loop().create_task(lifecycle.drain(registry, exit_code=1))

    registry = ModelRegistry(settings, give_up)
    metrics = Metrics(registry.stats, registry.health)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await registry.start()
        for served in registry.all():
            metrics.add_model(served.config.id)
        log.info("serving %s", [m.config.id for m in registry.all()])
        try:
            yield
        finally:
            await registry.shutdown()

    app = FastAPI(title="Braid", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = registry
    app.state.lifecycle = lifecycle
    app.state.metrics = metrics
    app.state.completion_serving = CompletionServing(registry, settings, metrics)
    app.state.chat_serving = ChatServing(registry, settings, metrics)
    app.state.workflow_serving = None
    if settings.workflows:
        from .serving_workflows import WorkflowServing  # braid.agents: only for servers that run workflows

        app.state.workflow_serving = WorkflowServing(settings)
    install_routes(app)
    app.add_middleware(AdmissionGate, lifecycle=lifecycle)
    return app


def run_server(settings: Settings) -> None:
    import uvicorn

    from .http_server import DrainingServer

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings.home.mkdir(parents=True, exist_ok=True)
    sockets = None
    if settings.port == 0 and settings.workflows:
        # Workflows' roles default to this server's own URL: bind first to know the port.
        sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((settings.host, 0))
        sockets = [sock]
        settings = settings.model_copy(update={"port": sock.getsockname()[1]})
    app = build_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            timeout_graceful_shutdown=5)
    server = DrainingServer(config, app.state.lifecycle, app.state.registry)
    server.run(sockets=sockets)
    if not server.started:
        raise SystemExit(3)  # as uvicorn.run: start-up (model loading) failed
    if app.state.lifecycle.exit_code:
        raise SystemExit(app.state.lifecycle.exit_code)
