"""A real OpenAI-compatible HTTP server on 127.0.0.1 whose chat replies come from a script (a test double
for the model only: the runtime, the python sandbox and the memory store stay real).

The script is a function of the request (`ChatRequest`: its messages, tools, tool_choice, seed and what
kind of request it is) that returns a reply: a text (`str`) or a tool call (`ToolCall`, sent in OpenAI's
shape with `finish_reason: tool_calls`). Every request is recorded, so tests assert on what the
workflow asked. A script may also return `Refusal(status, message)` for an OpenAI-style error reply.
"""
from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse

__all__ = ["MODEL", "ChatRequest", "Refusal", "ScriptedOpenAI", "ToolCall", "python_call", "running_scripted"]

MODEL = "scripted-model"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Refusal:
    """An error reply: the HTTP status and OpenAI's error body with `message`."""

    status: int
    message: str


def python_call(code: str) -> ToolCall:
    """The run_python call the Xolver agents make."""
    return ToolCall("run_python", {"code": code})


@dataclass
class ChatRequest:
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", [])

    @property
    def tools(self) -> list[str]:
        """Names of the offered tools."""
        return [t.get("function", {}).get("name", "") for t in self.body.get("tools") or []]

    @property
    def tool_choice(self) -> Any:
        return self.body.get("tool_choice")

    @property
    def seed(self) -> int | None:
        return self.body.get("seed")

    @property
    def temperature(self) -> float | None:
        return self.body.get("temperature")

    def contents(self, role: str | None = None) -> list[str]:
        return [_text(m.get("content")) for m in self.messages if role is None or m.get("role") == role]

    @property
    def last_user(self) -> str:
        users = self.contents("user")
        return users[-1] if users else ""

    @property
    def kind(self) -> str:
        """planner | recall | solver | answer | judge | verifier | other, from Xolver's prompts."""
        last = self.last_user
        if last.startswith("The code printed"):
            return "answer"
        if "run_python" in self.tools:
            return "solver"
        if "Influential Roles" in last:
            return "planner"
        if last.startswith("Recall from your own knowledge"):
            return "recall"
        if last.startswith("You are a judge"):
            return "judge"
        if "answer extractor" in last:
            return "verifier"
        if self.messages and self.messages[0].get("role") == "system":
            return "solver"  # code: none
        return "other"

    def agent_round(self, agents: int, base_seed: int = 0) -> tuple[int, int]:
        """(agent, round) of an agent's request: agent i of round r samples with base + r * agents + i."""
        assert self.seed is not None, "not an agent's request (no seed)"
        offset = self.seed - base_seed
        return offset % agents, offset // agents


Reply = str | ToolCall | Refusal


@dataclass
class ScriptedOpenAI:
    script: Callable[[ChatRequest], Reply]
    model: str = MODEL
    requests: list[ChatRequest] = field(default_factory=list)
    url: str = ""

    def of_kind(self, kind: str) -> list[ChatRequest]:
        return [r for r in self.requests if r.kind == kind]

    def _reply(self, request: ChatRequest) -> tuple[Reply, dict[str, int]]:
        reply = self.script(request)
        prompt = sum(len(c.split()) for c in request.contents()) + 1
        completion = len(reply.split()) + 1 if isinstance(reply, str) else 8
        return reply, {"prompt_tokens": prompt, "completion_tokens": completion,
                       "total_tokens": prompt + completion}

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/models")
        async def models():
            return {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "test"}]}

        @app.post("/v1/chat/completions")
        def chat(body: dict):  # sync: a slow script does not block the server's loop
            request = ChatRequest(body)
            self.requests.append(request)
            try:
                reply, usage = self._reply(request)
            except Exception as exc:  # noqa: BLE001 - a script bug shows up as a 500 naming it
                return JSONResponse({"error": {"message": f"script failed: {type(exc).__name__}: {exc}"}},
                                    status_code=500)
            if isinstance(reply, Refusal):
                return JSONResponse({"error": {"message": reply.message, "type": "invalid_request_error",
                                               "code": reply.status}}, status_code=reply.status)
            if isinstance(reply, ToolCall):
                message = {"role": "assistant", "content": None, "tool_calls": [
                    {"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                     "function": {"name": reply.name, "arguments": json.dumps(reply.arguments)}}]}
                finish = "tool_calls"
            else:
                message, finish = {"role": "assistant", "content": reply}, "stop"
            if body.get("stream"):
                return StreamingResponse(self._sse(body, message, finish, usage), media_type="text/event-stream")
            return {"id": f"chatcmpl-{uuid.uuid4().hex[:8]}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", self.model),
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}

        return app

    def _sse(self, body: dict, message: dict, finish: str, usage: dict):
        head = {"id": "chatcmpl-stream", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": body.get("model", self.model)}
        delta = {"role": "assistant", "content": message.get("content")}
        if message.get("tool_calls"):
            delta["tool_calls"] = [{"index": 0, **call} for call in message["tool_calls"]]
        chunks = [{**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
                  {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}]
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**head, "choices": [], "usage": usage})
        for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"


@contextmanager
def running_scripted(script: Callable[[ChatRequest], Reply]):
    """Serves a `ScriptedOpenAI` on 127.0.0.1 (a free port) in a background thread; yields it, `url` set."""
    scripted = ScriptedOpenAI(script)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(scripted.app(), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("scripted OpenAI server did not start")
        time.sleep(0.02)
    scripted.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield scripted
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
