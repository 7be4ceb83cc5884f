"""Runs Braid's MCP servers for real in tests: spawned over stdio, or as HTTP servers on 127.0.0.1."""
from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from contextlib import asynccontextmanager

from braid.clients.mcp_client import braid_server_command, connect_http, connect_stdio

TRANSPORTS = ["stdio", "http"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_listening(proc: subprocess.Popen, port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"MCP server exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise TimeoutError(f"MCP server did not listen on {port} within {timeout_s} s")


@asynccontextmanager
async def http_server(name: str, *options: str):
    """Runs `python -m braid.tools serve NAME --transport http` and yields its /mcp URL."""
    port = free_port()
    command, args = braid_server_command(name, *options)
    args = [a for a in args if a not in ("--transport", "stdio")] + ["--transport", "http", "--port", str(port)]
    proc = subprocess.Popen([command, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        await _wait_listening(proc, port)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@asynccontextmanager
async def mcp_session(transport: str, name: str, *options: str):
    """An initialized official-SDK client session with server NAME over `transport`."""
    if transport == "stdio":
        async with connect_stdio(*braid_server_command(name, *options)) as session:
            yield session
    else:
        async with http_server(name, *options) as url, connect_http(url) as session:
            yield session


def error_text(result) -> str:
    assert result.isError, f"expected an error result, got {result}"
    return result.content[0].text
