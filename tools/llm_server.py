"""MCP surface for models behind Braid or any OpenAI-compatible server (`braid mcp serve llm`)."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.fastmcp import FastMCP
from pydantic import BaseModel, Field

from braid.clients.openai_client import AsyncOpenAIClient, OpenAIClientError

from ._serving import ServeOptions, new_fastmcp

__all__ = ["ChatMessage", "build_server"]

ModelArg = Annotated[str | None, Field(description="Served model id; defaults to the server's --model or the first served model")]
MaxTokens = Annotated[int, Field(ge=1, le=32_768, description="Most tokens to generate")]
Temperature = Annotated[float, Field(ge=0.0, le=2.0, description="Sampling temperature (0 = greedy)")]
TopP = Annotated[float, Field(gt=0.0, le=1.0, description="Nucleus sampling mass")]
Stop = Annotated[list[str] | None, Field(max_length=4, description="Strings that end generation")]


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class Generation(BaseModel):
    text: str
    finish_reason: str | None
    model: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def _usage(body: dict) -> dict:
    usage = body.get("usage") or {}
    return {"prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens")}


def build_server(options: ServeOptions) -> FastMCP:
    server = new_fastmcp("llm", f"Generate text with the models served at {options.base_url}.", options)
    client = AsyncOpenAIClient(options.base_url, options.api_key, timeout_s=options.request_timeout_s)

    async def resolve_model(model: str | None) -> str:
        if model or options.model:
            return model or options.model
        served = await client.models()
        if not served:
            raise ValueError(f"{client.base_url} serves no models")
        return served[0]

    async def call(fn, *args, **kwargs) -> dict:
        try:
            return await fn(*args, **kwargs)
        except OpenAIClientError as exc:  # becomes an isError tool result naming the server
            raise RuntimeError(f"model server {client.base_url}: {exc}") from exc

    @server.tool()
    async def llm_chat(messages: Annotated[list[ChatMessage], Field(min_length=1, description="The conversation so far")],
                       model: ModelArg = None, max_tokens: MaxTokens = 256, temperature: Temperature = 0.7,
                       top_p: TopP = 1.0, stop: Stop = None) -> Generation:
        """Chat completion: the assistant's reply to `messages`."""
        name = await resolve_model(model)
        body = await call(client.chat, [m.model_dump() for m in messages], name, max_tokens=max_tokens,
                          temperature=temperature, top_p=top_p, **({"stop": stop} if stop else {}))
        choice = body["choices"][0]
        return Generation(text=choice["message"].get("content") or "", finish_reason=choice.get("finish_reason"),
                          model=body.get("model", name), **_usage(body))

    @server.tool()
    async def llm_generate(prompt: Annotated[str, Field(min_length=1, description="Text to continue")],
                           model: ModelArg = None, max_tokens: MaxTokens = 256, temperature: Temperature = 0.7,
                           top_p: TopP = 1.0, stop: Stop = None) -> Generation:
        """Plain text completion: continues `prompt`."""
        name = await resolve_model(model)
        body = await call(client.complete, prompt, name, max_tokens=max_tokens, temperature=temperature,
                          top_p=top_p, **({"stop": stop} if stop else {}))
        choice = body["choices"][0]
        return Generation(text=choice.get("text", ""), finish_reason=choice.get("finish_reason"),
                          model=body.get("model", name), **_usage(body))

    @server.tool()
    async def llm_models() -> list[str]:
        """List the model ids the server serves."""
        return await call(client.models)

    return server
