"""Runs untrusted Python code in an isolated, resource-limited process.

Isolation ("namespaces", needs root, as on Braid's hosts): util-linux `unshare` puts the code in
new network (no interfaces but a down loopback), mount, PID, IPC and UTS namespaces. Inside,
`_sandbox_runner.py` remounts every mount read-only, mounts a size-capped tmpfs over a fresh
working directory, sets rlimits (address space, CPU time, processes, file size, open files),
then drops to a fresh unprivileged uid/gid (one per call) with no capabilities and `no_new_privs`, and runs the code in a
child of the namespace's PID 1. The environment is scrubbed to an allowlist, a fresh /proc
hides the host's processes (and their environments), and when PID 1 exits the kernel kills
every process left in the namespace, so nothing outlives the call. The caller enforces the
wall-clock limit and the output cap by killing the whole process group.

Fallback ("process", only when explicitly allowed): a new session, rlimits, scrubbed
environment, a temporary directory and in-process blocking of socket audit events. This is
NOT a security boundary (no filesystem or process isolation); `detect_isolation()` says which
one this host supports.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

__all__ = ["SandboxLimits", "SandboxResult", "SandboxUnavailable", "detect_isolation", "run_python"]

Isolation = Literal["namespaces", "process"]
RUNNER = Path(__file__).with_name("_sandbox_runner.py")
SANDBOX_UID_BASE, SANDBOX_UID_COUNT = 2_000_000_000, 100_000_000
"""Each call runs as its own random unprivileged uid/gid (no passwd entry), so RLIMIT_NPROC and
file ownership are per call, and concurrent sandboxes cannot signal or read each other."""
UNSHARE_FLAGS = ["--net", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child", "--mount-proc"]
MASKED_DIRS = ["/root", "/home"]
"""Hidden behind empty tmpfs mounts (users' files and secrets), except the Python installation."""
ENV_ALLOWLIST = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PATH": "/usr/local/bin:/usr/bin:/bin"}


class SandboxUnavailable(RuntimeError):
    """Raised when strong isolation is required but this host cannot provide it."""


@dataclass(frozen=True)
class SandboxLimits:
    wall_seconds: float = 10.0
    """Wall-clock limit for the whole call; the process group is killed when it passes."""
    cpu_seconds: int = 10
    """CPU-time limit per process (RLIMIT_CPU)."""
    memory_bytes: int = 1 << 30
    """Address-space limit per process (RLIMIT_AS)."""
    max_processes: int = 32
    """Processes and threads the call may have (RLIMIT_NPROC of its own uid)."""
    max_output_bytes: int = 64 * 1024
    """Cap on stdout and on stderr each; the code is killed when it writes more."""
    workdir_bytes: int = 64 << 20
    """Size of the private tmpfs working directory."""
    max_file_bytes: int = 32 << 20
    """Largest file the code may write (RLIMIT_FSIZE)."""
    max_open_files: int = 256
    """RLIMIT_NOFILE."""
    repr_limit: int = 10_000
    """Characters kept of the last expression's repr."""

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value <= 0:
                raise ValueError(f"SandboxLimits.{name} must be positive, got {value}")


@dataclass
class SandboxResult:
    stdout: str
    stderr: str
    value: str | None
    """repr() of the last expression's value, if the code ended with an expression."""
    error: str | None
    """Exception, limit or kill that ended the run; None on success."""
    exit_code: int
    timed_out: bool
    output_truncated: bool
    duration_s: float
    isolation: Isolation


_isolation_cache: Isolation | None = None


def detect_isolation() -> Isolation:
    """'namespaces' if `unshare` can create the namespaces here (root), else 'process'."""
    global _isolation_cache
    if _isolation_cache is None:
        ok = False
        if shutil.which("unshare") and os.geteuid() == 0:
            probe = subprocess.run(["unshare", *UNSHARE_FLAGS, "true"], capture_output=True, timeout=10)
            ok = probe.returncode == 0
        _isolation_cache = "namespaces" if ok else "process"
    return _isolation_cache


async def run_python(code: str, limits: SandboxLimits | None = None, *, allow_weak_isolation: bool = False) -> SandboxResult:
    """Runs `code` in a fresh sandbox and returns its output, last value and error."""
    limits = limits or SandboxLimits()
    isolation = detect_isolation()
    if isolation != "namespaces" and not allow_weak_isolation:
        raise SandboxUnavailable(
            "namespace isolation is unavailable (needs root and util-linux unshare); "
            "pass allow_weak_isolation=True to run with process limits only"
        )
    workdir = tempfile.mkdtemp(prefix="braid-sandbox-")
    os.chmod(workdir, 0o700)
    try:
        return await _run(code, limits, isolation, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _command(limits: SandboxLimits, isolation: Isolation, workdir: str, result_fd: int) -> list[str]:
    uid = SANDBOX_UID_BASE + secrets.randbelow(SANDBOX_UID_COUNT)
    config = {
        "isolation": isolation, "workdir": workdir, "result_fd": result_fd, "uid": uid, "gid": uid,
        "memory_bytes": limits.memory_bytes, "cpu_seconds": limits.cpu_seconds,
        "max_processes": limits.max_processes, "max_file_bytes": limits.max_file_bytes,
        "max_open_files": limits.max_open_files, "workdir_bytes": limits.workdir_bytes,
        "repr_limit": limits.repr_limit, "masked_dirs": MASKED_DIRS, "exposed_paths": _python_installation(),
    }
    python = [sys.executable, "-I", "-B", str(RUNNER), json.dumps(config)]
    return ["unshare", *UNSHARE_FLAGS, *python] if isolation == "namespaces" else python


def _python_installation() -> list[str]:
    paths = {sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable))}
    return sorted({os.path.realpath(p) for p in paths})


async def _read_capped(stream: asyncio.StreamReader, cap: int, sink: bytearray, on_overflow) -> None:
    """Keep the first ``cap`` bytes; past them call ``on_overflow`` (it kills the code; calling it again
    is harmless) and read on to the end, discarding: a pipe left unread never reports its end, and
    the process is never reaped."""
    while chunk := await stream.read(65536):
        room = max(cap - len(sink), 0)
        sink += chunk[:room]
        if len(chunk) > room:
            on_overflow()


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def _run(code: str, limits: SandboxLimits, isolation: Isolation, workdir: str) -> SandboxResult:
    env = dict(ENV_ALLOWLIST, HOME=workdir, TMPDIR=workdir, PYTHONDONTWRITEBYTECODE="1")
    started = time.monotonic()
    result_read, result_write = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *_command(limits, isolation, workdir, result_write),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=env, cwd=workdir, pass_fds=(result_write,), start_new_session=True,
        )
    except BaseException:
        os.close(result_read)
        raise
    finally:
        os.close(result_write)
    stdout, stderr, result_bytes = bytearray(), bytearray(), bytearray()
    timed_out = truncated = False
    result_reader = asyncio.StreamReader()
    result_transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(result_reader), os.fdopen(result_read, "rb", 0))

    async def drive() -> None:
        proc.stdin.write(code.encode())
        await proc.stdin.drain()
        proc.stdin.close()
        await asyncio.gather(
            _read_capped(proc.stdout, limits.max_output_bytes, stdout, overflow),
            _read_capped(proc.stderr, limits.max_output_bytes, stderr, overflow),
            _read_capped(result_reader, limits.repr_limit * 4 + 4096, result_bytes, overflow),
        )
        await proc.wait()

    def overflow() -> None:
        nonlocal truncated
        truncated = True
        _kill_group(proc)

    try:
        await asyncio.wait_for(drive(), timeout=limits.wall_seconds)
    except asyncio.TimeoutError:
        timed_out = True
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        _kill_group(proc)
        await _reap(proc)
        result_transport.close()
    returncode = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    return _assemble(limits, isolation, returncode, bytes(stdout), bytes(stderr), bytes(result_bytes),
                     timed_out, truncated, time.monotonic() - started)


async def _reap(proc) -> None:
    """Wait for the killed process, bounded: a SIGCHLD handler elsewhere in the host process (an
    in-process vLLM engine, say) can reap it before asyncio's child watcher sees it exit, and
    then ``proc.wait()`` never returns."""
    try:
        await asyncio.wait_for(proc.wait(), timeout=5)
    except asyncio.TimeoutError:
        pass


def _assemble(limits: SandboxLimits, isolation: Isolation, returncode: int, stdout: bytes, stderr: bytes,
              result_bytes: bytes, timed_out: bool, truncated: bool, duration: float) -> SandboxResult:
    try:
        reported = json.loads(result_bytes) if result_bytes else {}
    except ValueError:
        reported = {}
    if not isinstance(reported, dict):
        reported = {}
    if "lockdown_error" in reported:
        raise SandboxUnavailable(f"sandbox lock-down failed, code not run: {reported['lockdown_error']}")
    exit_code = reported.get("exit_code", returncode)
    error = reported.get("error")
    if timed_out:
        error = f"wall-clock time limit exceeded ({limits.wall_seconds:g} s); the process was killed"
    elif truncated:
        error = f"output limit exceeded ({limits.max_output_bytes} bytes per stream); the process was killed"
    elif error is None and not reported:
        error = _describe_abnormal_exit(returncode, limits)
    return SandboxResult(
        stdout=stdout.decode(errors="replace"), stderr=stderr.decode(errors="replace"),
        value=reported.get("value") if isinstance(reported.get("value"), str) else None, error=error,
        exit_code=exit_code if isinstance(exit_code, int) else returncode, timed_out=timed_out,
        output_truncated=truncated, duration_s=round(duration, 3), isolation=isolation,
    )


def _describe_abnormal_exit(returncode: int, limits: SandboxLimits) -> str | None:
    signum = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    if signum == signal.SIGXCPU:
        return f"killed by SIGXCPU: CPU time limit ({limits.cpu_seconds} s) exceeded"
    if signum == signal.SIGKILL:
        return f"killed by SIGKILL (the CPU time hard limit, {limits.cpu_seconds + 1} s, or out of memory)"
    if signum > 0:
        try:
            return f"killed by signal {signal.Signals(signum).name}"
        except ValueError:
            return f"killed by signal {signum}"
    return None if returncode == 0 else f"process exited with status {returncode}"
