"""A minimal real OpenAI-compatible HTTP server on 127.0.0.1 for tests (a test double).

It stands in for the remote Braid server: deterministic replies, optional bearer auth, and a
queue of injected faults (an HTTP status, or a delay before answering) consumed one per request.
"""
from __future__ import annotations

import asyncio
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

MODEL = "fake-model"


@dataclass
class FakeOpenAI:
    api_key: str | None = None
    faults: list[int | float] = field(default_factory=list)
    """Per request, first in first out: an int is returned as that HTTP status; a float is a delay in seconds."""
    requests: list[str] = field(default_factory=list)
    url: str = ""

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def inject(request: Request, call_next):
            self.requests.append(request.url.path)
            if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
                return JSONResponse({"error": {"message": "bad api key"}}, status_code=401)
            fault = self.faults.pop(0) if self.faults else None
            if isinstance(fault, int):
                headers = {"Retry-After": "0"} if fault == 429 else {}
                return JSONResponse({"error": {"message": f"injected {fault}"}}, status_code=fault, headers=headers)
            if isinstance(fault, float):
                await asyncio.sleep(fault)
            return await call_next(request)

        @app.get("/v1/models")
        async def models():
            return {"object": "list", "data": [{"id": MODEL, "object": "model"}]}

        @app.post("/v1/chat/completions")
        async def chat(body: dict):
            last = body["messages"][-1]["content"]
            text = f"echo: {last}"[: body.get("max_tokens", 256)]
            return {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"], "created": 0,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": len(last.split()), "completion_tokens": len(text.split())}}

        @app.post("/v1/completions")
        async def completions(body: dict):
            text = body["prompt"].upper()
            return {"id": "cmpl-1", "object": "text_completion", "model": body["model"], "created": 0,
                    "choices": [{"index": 0, "text": text, "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1}}

        return app


@contextmanager
def running_fake_openai(fake: FakeOpenAI | None = None):
    """Serves `fake` on 127.0.0.1 (a free port) in a background thread; yields it with `url` set."""
    fake = fake or FakeOpenAI()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(fake.app(), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("fake OpenAI server did not start")
        time.sleep(0.02)
    fake.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
