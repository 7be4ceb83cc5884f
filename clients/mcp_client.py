"""Connecting to MCP servers (Braid's or any) over stdio or streamable HTTP.

    async with connect_stdio(*braid_server_command("calculator")) as session:
        print(await call_tool(session, "calculate", {"expression": "1/3 + 1/6"}))

    async with connect_http("http://127.0.0.1:8765/mcp") as session:
        ...
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import get_default_environment, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

__all__ = ["McpToolError", "braid_server_command", "call_tool", "connect_http", "connect_stdio", "result_text"]


class McpToolError(RuntimeError):
    """The tool ran and reported an error (an `isError` result); the message is the server's."""

    def __init__(self, tool: str, message: str):
        super().__init__(f"tool {tool!r} failed: {message}")
        self.tool, self.message = tool, message


def braid_server_command(name: str, *options: str) -> tuple[str, list[str]]:
    """(command, args) that run `braid mcp serve NAME --transport stdio OPTIONS...` with this Python."""
    return sys.executable, ["-m", "braid.tools", "serve", name, "--transport", "stdio", *options]


@asynccontextmanager
async def connect_stdio(command: str, args: Sequence[str] = (), *, env: Mapping[str, str] | None = None,
                        cwd: str | os.PathLike[str] | None = None) -> AsyncIterator[ClientSession]:
    """Spawns the server and yields an initialized session; the server exits when this closes.

    The server gets the MCP SDK's minimal default environment (HOME, PATH, ...) plus `env`,
    not this process's whole environment.
    """
    params = StdioServerParameters(command=command, args=list(args), env={**get_default_environment(), **(env or {})},
                                   cwd=cwd)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


@asynccontextmanager
async def connect_http(url: str, *, headers: Mapping[str, str] | None = None,
                       timeout_s: float = 30.0, read_timeout_s: float = 300.0) -> AsyncIterator[ClientSession]:
    """Yields an initialized session with a streamable-HTTP server (e.g. http://127.0.0.1:8765/mcp)."""
    timeout = httpx.Timeout(timeout_s, read=read_timeout_s)
    async with httpx.AsyncClient(headers=dict(headers or {}), timeout=timeout) as http, \
            streamable_http_client(url, http_client=http) as (read, write, _), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def result_text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


async def call_tool(session: ClientSession, name: str, arguments: Mapping[str, Any] | None = None) -> Any:
    """Calls a tool; returns its structured result (or its text, parsed as JSON when it is JSON).

    Raises `McpToolError` with the server's message when the result is an error.
    """
    result = await session.call_tool(name, dict(arguments or {}))
    if result.isError:
        raise McpToolError(name, result_text(result))
    if result.structuredContent is not None:
        content = result.structuredContent
        # FastMCP wraps non-object return values as {"result": value}.
        return content["result"] if set(content) == {"result"} else content
    text = result_text(result)
    try:
        return json.loads(text)
    except ValueError:
        return text
