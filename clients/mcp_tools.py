"""Braid's MCP tools as LangChain tools (for LangGraph agents) through `langchain-mcp-adapters`.

    tools = await load_braid_tools({
        "calculator": stdio_connection("calculator"),
        "memory": http_connection("http://127.0.0.1:8765/mcp"),
    })
    graph.add_node("tools", ToolNode(tools))

Each tool call opens a fresh MCP session (a stdio server is spawned per call); for many calls,
serve over HTTP or keep one session open and use `tools_from_session`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.tools import BaseTool
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.sessions import Connection, StdioConnection, StreamableHttpConnection
from langchain_mcp_adapters.tools import load_mcp_tools
from mcp import ClientSession
from mcp.client.stdio import get_default_environment

from .mcp_client import braid_server_command

__all__ = ["http_connection", "load_braid_tools", "stdio_connection", "tools_from_session"]


def stdio_connection(name: str, *options: str, env: Mapping[str, str] | None = None) -> StdioConnection:
    """Connection that spawns `braid mcp serve NAME OPTIONS...` over stdio for each session."""
    command, args = braid_server_command(name, *options)
    return {"transport": "stdio", "command": command, "args": args,
            "env": {**get_default_environment(), **(env or {})}}


def http_connection(url: str, headers: Mapping[str, str] | None = None, timeout_s: float = 30.0) -> StreamableHttpConnection:
    """Connection to a server already listening with streamable HTTP (e.g. http://127.0.0.1:8765/mcp)."""
    return {"transport": "streamable_http", "url": url, "headers": dict(headers or {}), "timeout": timeout_s}


async def load_braid_tools(connections: Mapping[str, Connection], *, prefix_with_server: bool = False,
                           **client_options: Any) -> list[BaseTool]:
    """LangChain tools for every tool of every server in `connections` (keyed by server name).

    Tool errors come back to the model as error ToolMessages (the adapters' default), so an
    agent can correct bad arguments instead of crashing.
    """
    client = MultiServerMCPClient(dict(connections), tool_name_prefix=prefix_with_server, **client_options)
    return await client.get_tools()


async def tools_from_session(session: ClientSession, server_name: str | None = None) -> list[BaseTool]:
    """LangChain tools bound to an open session (no new session per call)."""
    return await load_mcp_tools(session, server_name=server_name)
