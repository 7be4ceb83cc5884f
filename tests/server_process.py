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
        return log_tail(self.log_path, lines)


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
    try:
        wait_healthy(root, process, timeout, log_path)
    except TimeoutError:
        stop_server(handle)
        raise
    return handle


def log_tail(log_path: Path, lines: int = 60) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_healthy(root: str, process: subprocess.Popen, timeout: float, log_path: Path, poll_s: float = 0.5) -> None:
    """Poll ``root``/health until it answers 200. ``RuntimeError`` if the process exits first,
    ``TimeoutError`` after ``timeout`` s; both with the tail of the server's log."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log_tail(log_path)}")
        try:
            if httpx.get(f"{root}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server was not healthy within {timeout:.0f} s:\n{log_tail(log_path)}")
        time.sleep(poll_s)


def stop_server(handle: ServerHandle) -> None:
    if handle.process.poll() is None:
        os.killpg(handle.process.pid, signal.SIGTERM)
        try:
            handle.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(handle.process.pid, signal.SIGKILL)
            handle.process.wait()
