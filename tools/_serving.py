"""What every Braid MCP server shares: its options, the registry of servers, and running one."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the SDK loads when a server is built, not when `braid --help` runs
    from mcp.server.fastmcp import FastMCP

__all__ = ["SERVERS", "ServeOptions", "ServerSpec", "build_server", "new_fastmcp", "run_server"]

Transport = Literal["stdio", "http"]


@dataclass(frozen=True)
class ServeOptions:
    transport: Transport = "stdio"
    host: str = "127.0.0.1"
    port: int = 8765
    store: Path | None = None
    """Memory store directory (memory, search)."""
    embedder: Literal["minilm", "hashing"] = "minilm"
    """Embedder for dense and hybrid search (memory, search)."""
    collection: str | None = None
    """Default collection (search)."""
    base_url: str = "http://127.0.0.1:8000/v1"
    """OpenAI-compatible server (llm)."""
    api_key: str | None = None
    model: str | None = None
    request_timeout_s: float = 120.0
    sandbox_limits: dict[str, float] = field(default_factory=dict)
    """Overrides of SandboxLimits fields (python)."""
    allow_weak_sandbox: bool = False
    workflow_configs: Mapping[str, Path] = field(default_factory=dict)
    """Config file per workflow name; a workflow not named runs with its defaults (agents)."""

    def __post_init__(self) -> None:
        if self.transport not in ("stdio", "http"):
            raise ValueError(f"transport must be 'stdio' or 'http', not {self.transport!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")


@dataclass(frozen=True)
class ServerSpec:
    name: str
    module: str
    summary: str


SERVERS: dict[str, ServerSpec] = {spec.name: spec for spec in [
    ServerSpec("memory", "braid.tools.memory_server", "add / search / get / delete records in named collections of a store"),
    ServerSpec("search", "braid.tools.search_server", "BM25 / dense / hybrid search over an indexed corpus (a store's collection)"),
    ServerSpec("python", "braid.tools.python_server", "run Python code in an isolated sandbox (no network, limits, read-only system)"),
    ServerSpec("calculator", "braid.tools.calculator_server", "exact arithmetic and math functions over a safe expression parser"),
    ServerSpec("llm", "braid.tools.llm_server", "generate / chat through a Braid or any OpenAI-compatible server"),
    ServerSpec("agents", "braid.agents.surfaces.mcp_server",
               "each Braid workflow as a tool (progress, structured result, cancellation)"),
]}


def new_fastmcp(name: str, instructions: str, options: ServeOptions,
                factory: Callable[..., FastMCP] | None = None) -> FastMCP:
    """`factory` (FastMCP or a subclass) with Braid's name, instructions and network settings."""
    if factory is None:
        from mcp.server.fastmcp import FastMCP as factory
    return factory(name=f"braid-{name}", instructions=instructions, host=options.host, port=options.port,
                   log_level="WARNING")


def build_server(name: str, options: ServeOptions) -> FastMCP:
    """Builds (and validates the options of) the server called `name`."""
    if name not in SERVERS:
        raise ValueError(f"unknown MCP server {name!r}; available: {', '.join(SERVERS)}")
    module = importlib.import_module(SERVERS[name].module)
    return module.build_server(options)


def run_server(server: FastMCP, transport: Transport) -> None:
    """Serves until the client disconnects (stdio) or the process is stopped (http, at /mcp)."""
    server.run("stdio" if transport == "stdio" else "streamable-http")
