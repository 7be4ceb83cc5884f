"""The server's own life: serving, then draining (SIGTERM), then exiting with a status.

``Lifecycle`` counts the API requests in flight (``AdmissionGate``, an ASGI middleware, so a
stream counts until its last byte is sent) and, while draining, the gate answers every new API
request with a 503. ``drain``
is what a SIGTERM starts: stop admitting, let requests in flight finish up to the drain timeout,
end the rest with an error (an error event for streams), then ask the HTTP server to exit.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Callable

from .errors import APIError
from ..models.registry import ModelRegistry

__all__ = ["AdmissionGate", "Lifecycle"]

log = logging.getLogger(__name__)

_UNCOUNTED = ("/health", "/metrics")  # probes: answered while draining, never waited for
_AFTER_ENDING_S = 5.0  # after ending the stragglers: time for their error events to reach the clients


class Lifecycle:
    def __init__(self, drain_timeout_s: float) -> None:
        self.drain_timeout_s = drain_timeout_s
        self.draining = False
        self.exit_code = 0
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._exit: Callable[[], None] | None = None  # set by the HTTP server that runs the app

    def on_exit(self, callback: Callable[[], None]) -> None:
        self._exit = callback

    def started(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def drain(self, registry: ModelRegistry, exit_code: int = 0) -> None:
        """Stop admitting; wait for requests in flight up to the drain timeout; end the rest; exit."""
        if self.draining:
            return
        self.draining, self.exit_code = True, exit_code
        registry.begin_drain()
        began = time.monotonic()
        log.info("draining: %d requests in flight, up to %.0f s", self.in_flight, self.drain_timeout_s)
        if not await self._wait_idle(self.drain_timeout_s):
            ended = registry.end_requests("the server is shutting down: the request did not finish within "
                                          f"the drain timeout ({self.drain_timeout_s:g} s)")
            log.warning("drain timeout: ended %d requests still running", ended)
            await self._wait_idle(_AFTER_ENDING_S)
        log.info("drained in %.1f s; exiting with status %d", time.monotonic() - began, exit_code)
        if self._exit is not None:
            self._exit()

    async def _wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False


class AdmissionGate:
    """ASGI middleware (outermost): counts API requests in flight; while draining, answers them 503."""

    def __init__(self, app, lifecycle: Lifecycle) -> None:
        self._app, self._lifecycle = app, lifecycle

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in _UNCOUNTED:
            return await self._app(scope, receive, send)
        if self._lifecycle.draining:
            return await _send_json(send, APIError(503, "the server is shutting down; send the request to another "
                                                        "replica, or retry once it is back", "service_unavailable_error"))
        self._lifecycle.started()
        try:
            await self._app(scope, receive, send)
        finally:
            self._lifecycle.finished()


async def _send_json(send, error: APIError) -> None:
    body = json.dumps(error.to_response().model_dump()).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
