"""uvicorn's server with a graceful SIGTERM (or Ctrl-C): the first signal drains the app
(``Lifecycle.drain``) and the process then exits 0; a second signal stops at once, as uvicorn's
own handling does."""
from __future__ import annotations

import asyncio
import logging

import uvicorn

from ..models.registry import ModelRegistry
from .lifecycle import Lifecycle

__all__ = ["DrainingServer"]

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, registry: ModelRegistry) -> None:
        super().__init__(config)
        self._lifecycle, self._registry = lifecycle, registry
        self._loop: asyncio.AbstractEventLoop | None = None
        lifecycle.on_exit(self._exit)

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def _exit(self) -> None:
        self.should_exit = True

    def handle_exit(self, sig, frame) -> None:
        if self._loop is None or not self.started or self._lifecycle.draining or self.should_exit:
            self.force_exit = self.should_exit
            self.should_exit = True
            return
        log.info("received signal %d: draining before exit (send it again to stop at once)", sig)
        # Not recorded as a captured signal: uvicorn would raise it again after serving, and the
        # exit status would be the signal's rather than 0.
        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(self._lifecycle.drain(self._registry)))
