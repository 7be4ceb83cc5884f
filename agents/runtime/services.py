"""The outside services a run needs, checked and opened before its first node: each role's model
server (and its model id), and one MCP session per tool server, kept open for the whole run."""
from __future__ import annotations

import asyncio
import os
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from langchain_core.tools import BaseTool
from mcp import ClientSession

from braid.clients.mcp_client import braid_server_command, connect_http, connect_stdio
from braid.clients.mcp_tools import tools_from_session

from .config import McpServer, RoleModel, WorkflowConfig
from .errors import ServiceUnreachable

__all__ = ["OpenServers", "open_tools", "resolve_roles"]


async def _served_models(settings: RoleModel) -> list[str]:
    url = settings.base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {settings.resolved_api_key()}"}
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0)) as http:
            response = await http.get(url, headers=headers)
    except httpx.HTTPError as exc:
        raise ServiceUnreachable("the model server", settings.base_url,
                                 f"{type(exc).__name__}; start one (`braid serve`) or set the role's base_url "
                                 "(env BRAID_AGENT_BASE_URL)") from None
    if response.status_code == 401:
        raise ServiceUnreachable("the model server", settings.base_url, "it refused the API key (401): set api_key "
                                 "in the role's config or BRAID_API_KEY")
    if response.status_code != 200:
        raise ServiceUnreachable("the model server", settings.base_url,
                                 f"GET {url} answered {response.status_code}: is it an OpenAI-compatible /v1 URL?")
    return [card["id"] for card in response.json().get("data", [])]


async def resolve_roles(config: WorkflowConfig, roles: tuple[str, ...]) -> WorkflowConfig:
    """Checks each role's server answers and serves its model; fills in a missing model id with the
    server's first model. Returns the config with every used role explicit."""
    resolved = dict(config.roles)
    cache: dict[tuple[str, str | None], list[str]] = {}
    for role in roles:
        settings = config.role(role)
        key = (settings.base_url, settings.api_key)
        if key not in cache:
            cache[key] = await _served_models(settings)
        served = cache[key]
        if settings.model is None:
            if not served:
                raise ServiceUnreachable("the model server", settings.base_url, "it serves no model")
            settings = settings.model_copy(update={"model": served[0]})
        elif settings.model not in served:
            raise ServiceUnreachable(f"model {settings.model!r} (role {role!r})", settings.base_url,
                                     f"the server serves {served}; fix the role's `model`")
        resolved[role] = settings
    return config.model_copy(update={"roles": resolved})


@dataclass
class OpenServers:
    sessions: dict[str, ClientSession] = field(default_factory=dict)
    tools: dict[str, list[BaseTool]] = field(default_factory=dict)


def _expand(value: str, home: Path) -> str:
    """`${BRAID_HOME}` is the runtime's home (set or not in the environment); other `$VARS` as the shell."""
    return os.path.expandvars(value.replace("${BRAID_HOME}", str(home)).replace("$BRAID_HOME", str(home)))


async def _open_one(stack: AsyncExitStack, server: McpServer, home: Path) -> ClientSession:
    env = {key: _expand(value, home) for key, value in server.env.items()}
    if server.url:
        return await stack.enter_async_context(connect_http(_expand(server.url, home)))
    if server.braid:
        command, args = braid_server_command(server.braid, *(_expand(o, home) for o in server.options))
        return await stack.enter_async_context(connect_stdio(command, args, env=env))
    return await stack.enter_async_context(connect_stdio(_expand(server.command or "", home),
                                                         [_expand(a, home) for a in server.args], env=env))


async def open_tools(stack: AsyncExitStack, servers: dict[str, McpServer], home: Path,
                     timeout_s: float = 60.0) -> OpenServers:
    """One session per server on `stack` (closed with it), and its tools; a server that does not start
    is named."""
    opened = OpenServers()
    for name, server in servers.items():
        try:
            async with asyncio.timeout(timeout_s):  # same task: the session's cancel scopes stay in it
                session = await _open_one(stack, server, home)
                opened.sessions[name] = session
                opened.tools[name] = await tools_from_session(session, server_name=name)
        except Exception as exc:  # noqa: BLE001 - any start failure is reported as one
            hint = ("start it with `braid mcp serve NAME --transport http`" if server.url
                    else "check that the command runs")
            raise ServiceUnreachable(f"MCP server {name!r}", server.describe(),
                                     f"{type(exc).__name__}: {exc}; {hint}") from None
    return opened
