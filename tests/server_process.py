"""Start a real `braid serve` process on 127.0.0.1 for tests, and stop it."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerHandle:
    base_url: str  # ends in /v1
    root_url: str
    api_key: str | None
    process: subprocess.Popen
    log_path: Path

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_server(settings: dict, workdir: Path, timeout: float = 240.0, env: dict | None = None) -> ServerHandle:
    port = free_port()
    settings = {"home": str(workdir / "home"), **settings, "port": port, "host": "127.0.0.1"}
    config = workdir / "braid.json"
    config.write_text(json.dumps(settings))
    log_path = workdir / "server.log"
    full_env = {**os.environ, **(env or {})}
    process = subprocess.Popen([sys.executable, "-m", "braid.clients.cli", "serve", "--config", str(config)],
                               stdout=log_path.open("w"), stderr=subprocess.STDOUT, env=full_env,
                               start_new_session=True)
    root = f"http://127.0.0.1:{port}"
    handle = ServerHandle(f"{root}/v1", root, settings.get("api_key"), process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{handle.log_tail()}")
        try:
            if httpx.get(f"{root}/health", timeout=2).status_code == 200:
                return handle
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(handle)
    raise RuntimeError(f"server did not become healthy in {timeout}s:\n{handle.log_tail()}")


def stop_server(handle: ServerHandle) -> None:
    if handle.process.poll() is None:
        os.killpg(handle.process.pid, signal.SIGTERM)
        try:
            handle.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(handle.process.pid, signal.SIGKILL)
            handle.process.wait()
