"""`braid mcp ...`: serve Braid's MCP servers (also `python -m braid.tools ...`)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._serving import SERVERS, ServeOptions, build_server, run_server

__all__ = ["mcp_app"]

mcp_app = typer.Typer(
    help="Braid's MCP servers (memory, search, python, calculator, llm, agents) over stdio or streamable HTTP.",
    no_args_is_help=True, add_completion=False,
)

ServerName = Enum("ServerName", {name: name for name in SERVERS}, type=str)
STORE_PANEL, LLM_PANEL, PYTHON_PANEL = "memory / search options", "llm options", "python options"
AGENTS_PANEL = "agents options"


class TransportName(str, Enum):
    stdio = "stdio"
    http = "http"


class EmbedderName(str, Enum):
    minilm = "minilm"
    hashing = "hashing"


def parse_workflow_configs(values: list[str] | None) -> dict[str, Path]:
    """NAME=FILE pairs -> {NAME: FILE}; a malformed or repeated pair is a usage error (exit 2)."""
    configs: dict[str, Path] = {}
    for value in values or []:
        name, sep, file = value.partition("=")
        name, file = name.strip(), file.strip()
        if not sep or not name or not file:
            raise typer.BadParameter(f"{value!r} is not NAME=FILE, e.g. example=example.yaml",
                                     param_hint="--workflow-config")
        if name in configs:
            raise typer.BadParameter(f"workflow {name!r} is given a config twice", param_hint="--workflow-config")
        configs[name] = Path(file).expanduser()
    return configs


@mcp_app.command("list")
def list_servers() -> None:
    """List the MCP servers that `serve` can run."""
    width = max(map(len, SERVERS))
    for spec in SERVERS.values():
        typer.echo(f"{spec.name:<{width}}  {spec.summary}")


@mcp_app.command()
def serve(
    name: Annotated[ServerName, typer.Argument(help="Which server to run (see `list`).", show_default=False)],
    transport: Annotated[TransportName, typer.Option(
        help="stdio (spawned by an MCP host) or http (streamable HTTP at http://HOST:PORT/mcp).")] = TransportName.stdio,
    host: Annotated[str, typer.Option(help="Interface to bind with --transport http.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to bind with --transport http.")] = 8765,
    store: Annotated[Optional[Path], typer.Option(
        help="Memory store directory (required by memory and search).", rich_help_panel=STORE_PANEL)] = None,
    embedder: Annotated[EmbedderName, typer.Option(
        help="Embeddings for dense/hybrid search: minilm (bundled all-MiniLM-L6-v2) or hashing (no model; lexical).",
        rich_help_panel=STORE_PANEL)] = EmbedderName.minilm,
    collection: Annotated[Optional[str], typer.Option(
        help="Default collection searched by the search server.", rich_help_panel=STORE_PANEL)] = None,
    base_url: Annotated[str, typer.Option(
        help="Braid or other OpenAI-compatible server; '/v1' is added to a URL without a path.",
        rich_help_panel=LLM_PANEL)] = "http://127.0.0.1:8000/v1",
    api_key: Annotated[Optional[str], typer.Option(
        envvar="BRAID_API_KEY", help="Bearer token for --base-url.", rich_help_panel=LLM_PANEL)] = None,
    model: Annotated[Optional[str], typer.Option(
        help="Default model id (else the first model the server lists).", rich_help_panel=LLM_PANEL)] = None,
    request_timeout: Annotated[float, typer.Option(
        min=0.1, help="Seconds per model request.", rich_help_panel=LLM_PANEL)] = 120.0,
    timeout: Annotated[float, typer.Option(
        min=0.1, help="Wall-clock seconds per code run.", rich_help_panel=PYTHON_PANEL)] = 10.0,
    cpu_time: Annotated[int, typer.Option(min=1, help="CPU seconds per process.", rich_help_panel=PYTHON_PANEL)] = 10,
    memory_mb: Annotated[int, typer.Option(
        min=32, help="Address-space limit per process, MiB.", rich_help_panel=PYTHON_PANEL)] = 1024,
    max_output_kb: Annotated[int, typer.Option(
        min=1, help="Cap on stdout and on stderr, KiB.", rich_help_panel=PYTHON_PANEL)] = 64,
    allow_weak_sandbox: Annotated[bool, typer.Option(
        help="Run code even where namespaces are unavailable (process limits only: NOT a security boundary).",
        rich_help_panel=PYTHON_PANEL)] = False,
    workflow_config: Annotated[Optional[list[str]], typer.Option(
        metavar="NAME=FILE", show_default=False,
        help="Config file (YAML, JSON or TOML: roles' models, MCP tools, workflow fields) for workflow NAME; "
             "repeat for several workflows. Workflows not named run with their defaults (model server at "
             "BRAID_AGENT_BASE_URL or http://127.0.0.1:8000/v1). Runs are recorded under BRAID_HOME.",
        rich_help_panel=AGENTS_PANEL)] = None,
) -> None:
    """Run one MCP server until stopped (stdio: until the host closes the pipe)."""
    limits = {"wall_seconds": timeout, "cpu_seconds": cpu_time, "memory_bytes": memory_mb << 20,
              "max_output_bytes": max_output_kb << 10}
    workflow_configs = parse_workflow_configs(workflow_config)
    try:
        options = ServeOptions(transport=transport.value, host=host, port=port, store=store, embedder=embedder.value,
                               collection=collection, base_url=base_url, api_key=api_key, model=model,
                               request_timeout_s=request_timeout, sandbox_limits=limits,
                               allow_weak_sandbox=allow_weak_sandbox, workflow_configs=workflow_configs)
        server = build_server(name.value, options)
    except (ValueError, RuntimeError) as exc:
        typer.echo(f"error: cannot start the {name.value} server: {exc}", err=True)
        raise typer.Exit(2) from None
    if transport is TransportName.http:
        typer.echo(f"braid-{name.value} MCP server on http://{host}:{port}/mcp", err=True)
    run_server(server, options.transport)


if __name__ == "__main__":
    mcp_app()
