"""The weak ("process") sandbox fallback, tested on every host by forcing it.

Hosts without namespace isolation (no root or no util-linux `unshare`) are the ones that run
code with process limits only, and `test_sandbox_isolation.py` is skipped there. So this module
has no namespace skip: the `weak_host` fixture sets `sandbox._isolation_cache` to "process",
which is what `detect_isolation()` caches on such a host. Patching it simulates the *host*, not
the code under test: everything after detection (the refusal without `allow_weak_isolation`,
the runner's limits and socket blocking, the caller's kills and clean-up, the MCP server's
`--allow-weak-sandbox` gate) runs unpatched.

The MCP part uses the in-process server object with the official client over in-memory streams
(as tests/agents/surfaces does): a spawned server is a separate process that the patch cannot
reach, and neither the sandbox nor the CLI has a switch to force the mode.
"""
from __future__ import annotations

import os
import socket
import tempfile
import uuid
from pathlib import Path

import psutil
import pytest
from mcp.shared.memory import create_connected_server_and_client_session
from mcp_harness import error_text
from typer.testing import CliRunner

from braid.clients.mcp_client import call_tool
from braid.tools import sandbox
from braid.tools._serving import ServeOptions
from braid.tools.cli import mcp_app
from braid.tools.python_server import build_server
from braid.tools.sandbox import SandboxLimits, SandboxUnavailable, run_python

FAST = SandboxLimits(wall_seconds=5, cpu_seconds=2, memory_bytes=512 << 20, max_output_bytes=16 * 1024)


@pytest.fixture(autouse=True)
def weak_host(monkeypatch):
    """This host, as detection sees it where namespaces are unavailable."""
    monkeypatch.setattr(sandbox, "_isolation_cache", "process")


async def weak(code: str, limits: SandboxLimits = FAST) -> sandbox.SandboxResult:
    return await run_python(code, limits, allow_weak_isolation=True)


def _alive_with(pid: int, marker: str) -> bool:
    """Whether `pid` is still a running (not zombie) process whose command line holds `marker`."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and marker in " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


async def test_refused_without_allow_weak_isolation():
    with pytest.raises(SandboxUnavailable, match="allow_weak_isolation=True"):
        await run_python("print('ran')", FAST)


async def test_runs_code_and_reports_process_isolation():
    result = await weak("import sys\nprint('out'); print('err', file=sys.stderr)\n6 * 7")
    assert (result.stdout, result.stderr, result.value, result.error) == ("out\n", "err\n", "42", None)
    assert result.isolation == "process" and result.exit_code == 0 and not result.timed_out


async def test_weak_fallback_still_limits_and_blocks_sockets():
    result = await weak("import socket\nsocket.socket()")
    assert result.isolation == "process" and "network access is disabled" in result.error
    assert (await weak("x = bytearray(8 * 1024**3)")).error == "MemoryError"


async def test_sockets_are_blocked_even_to_a_host_loopback_listener():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        result = await weak(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)")
        assert (result.error or "").startswith("PermissionError") and "network access is disabled" in result.error
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing connected


async def test_busy_loop_hits_the_cpu_limit():
    result = await weak("while True: pass", SandboxLimits(wall_seconds=5, cpu_seconds=1))
    assert result.error and "CPU" in result.error and not result.timed_out
    assert result.duration_s < 4


async def test_sleeping_code_hits_the_wall_clock_limit_and_its_children_die():
    marker = f"60.{uuid.uuid4().int % 10**6}"  # a unique `sleep` argument
    code = (f"import subprocess, time\nchild = subprocess.Popen(['sleep', '{marker}'])\n"
            "print(child.pid, flush=True)\ntime.sleep(60)")
    result = await weak(code, SandboxLimits(wall_seconds=1, cpu_seconds=5))
    assert result.timed_out and "wall-clock" in result.error and result.duration_s < 5
    child_pid = int(result.stdout)
    assert child_pid != os.getpid() and not _alive_with(child_pid, marker)


async def test_huge_allocation_fails_with_memory_error():
    result = await weak("x = bytearray(8 * 1024**3)")
    assert result.error == "MemoryError" and result.exit_code == 1


async def test_huge_output_is_truncated():
    for _ in range(3):  # the pipe left unread once kept the process unreaped until a 5 s timeout, 1 run in 3
        result = await weak("while True: print('y' * 1000)")
        assert result.output_truncated and "output limit" in result.error and not result.timed_out
        assert 0 < len(result.stdout) <= FAST.max_output_bytes
        assert result.duration_s < FAST.wall_seconds, result.duration_s  # cut at the cap, not at the clock


async def test_code_runs_in_a_fresh_work_dir_that_is_removed_afterwards():
    code = "import os\nopen('mine.txt', 'w').write('ok')\nprint(os.getcwd())\nsorted(os.listdir('.'))"
    first, second = await weak(code), await weak(code)
    assert first.error is None and first.value == second.value == "['mine.txt']"  # nothing carried over
    first_dir, second_dir = Path(first.stdout.strip()), Path(second.stdout.strip())
    assert first_dir != second_dir and first_dir != Path.cwd()
    assert first_dir.parent == Path(tempfile.gettempdir()) and first_dir.name.startswith("braid-sandbox-")
    assert not first_dir.exists() and not second_dir.exists()


def test_mcp_python_server_refuses_weak_isolation_without_the_option():
    with pytest.raises(RuntimeError, match="--allow-weak-sandbox"):
        build_server(ServeOptions())
    cli = CliRunner().invoke(mcp_app, ["serve", "python"])
    assert cli.exit_code == 2 and "--allow-weak-sandbox" in cli.output


async def test_mcp_python_server_runs_code_under_weak_isolation():
    server = build_server(ServeOptions(allow_weak_sandbox=True,
                                       sandbox_limits={"wall_seconds": 3, "cpu_seconds": 2, "memory_bytes": 512 << 20}))
    async with create_connected_server_and_client_session(server) as session:
        out = await call_tool(session, "run_python", {"code": "print('hi')\n2 ** 10"})
        assert (out["stdout"], out["value"], out["error"]) == ("hi\n", "1024", None)
        blocked = await call_tool(session, "run_python", {"code": "import socket\nsocket.socket()"})
        assert "network access is disabled" in blocked["error"]  # only the weak runner says this
        slow = await call_tool(session, "run_python", {"code": "import time; time.sleep(30)", "timeout_s": 0.5})
        assert slow["timed_out"] and "wall-clock" in slow["error"]
        assert "timeout_s" in error_text(await session.call_tool("run_python", {"code": "1", "timeout_s": 99}))
