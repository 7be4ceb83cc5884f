"""Attacks on the Python sandbox: each must be contained, and the host must be unchanged."""
from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from braid.tools.sandbox import SandboxLimits, detect_isolation, run_python

pytestmark = pytest.mark.skipif(detect_isolation() != "namespaces",
                                reason="namespace isolation needs root and util-linux unshare")

FAST = SandboxLimits(wall_seconds=5, cpu_seconds=2, memory_bytes=512 << 20, max_output_bytes=16 * 1024)
REPO = Path(__file__).parents[2]


def _host_processes_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(pid))
    return found


async def test_output_last_value_and_errors():
    result = await run_python("import sys\nprint('out'); print('err', file=sys.stderr)\n6 * 7", FAST)
    assert (result.stdout, result.stderr, result.value, result.error) == ("out\n", "err\n", "42", None)
    failed = await run_python("x = 1\nraise ValueError('boom')", FAST)
    assert failed.error == "ValueError: boom" and "Traceback" in failed.stderr and failed.exit_code == 1


async def test_no_network_even_to_the_host_loopback():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = f"""
import socket
results = []
for addr in [("127.0.0.1", {port}), ("1.1.1.1", 53)]:
    try:
        socket.create_connection(addr, timeout=1); results.append("connected")
    except OSError as e:
        results.append(type(e).__name__)
results"""
        result = await run_python(code, FAST)
    assert result.error is None and "connected" not in result.value, result


async def test_secrets_in_the_server_environment_are_not_visible(monkeypatch):
    secret = f"s3cret-{uuid.uuid4().hex}"
    monkeypatch.setenv("BRAID_TEST_SECRET", secret)
    code = f"""
import os
seen = [str(dict(os.environ))]
for pid in [p for p in os.listdir('/proc') if p.isdigit()] + ['{os.getpid()}', '{os.getppid()}']:
    try:
        seen.append(open(f'/proc/{{pid}}/environ', 'rb').read().decode(errors='replace'))
    except OSError:
        pass
print('\\n'.join(seen))"""
    result = await run_python(code, FAST)
    assert result.error is None
    assert secret not in result.stdout and "BRAID_TEST_SECRET" not in result.stdout


async def test_nothing_is_written_outside_the_fresh_work_dir(tmp_path):
    marker = uuid.uuid4().hex
    targets = [REPO / f"pwned-{marker}", Path("/tmp") / f"pwned-{marker}", tmp_path / "pwned",
               Path("/dev/shm") / f"pwned-{marker}", Path.home() / f"pwned-{marker}"]
    code = f"""
import os
outcomes = {{}}
for path in {[str(t) for t in targets]!r}:
    try:
        open(path, 'w').write('x'); outcomes[path] = 'written'
    except OSError as e:
        outcomes[path] = type(e).__name__
open('mine.txt', 'w').write('ok')
sorted(set(outcomes.values())), os.listdir('.')"""
    result = await run_python(code, FAST)
    assert result.error is None, result
    assert result.value == "(['OSError', 'PermissionError'], ['mine.txt'])"
    assert not any(t.exists() for t in targets)
    again = await run_python("import os; os.listdir('.')", FAST)
    assert again.value == "[]"  # every call gets a fresh working directory


async def test_bounded_child_spray_is_limited_and_reaped():
    marker = f"77.{uuid.uuid4().int % 10**6}"  # a unique `sleep` argument
    code = f"""
import os, subprocess
if os.fork() == 0:  # a daemon that tries to escape the process group
    os.setsid(); os.execvp('sleep', ['sleep', '{marker}'])
started = 0
for _ in range(50):
    try:
        subprocess.Popen(['sleep', '{marker}']); started += 1
    except OSError:
        break
started"""
    result = await run_python(code, FAST)
    assert result.error is None, result
    assert int(result.value) < 50  # RLIMIT_NPROC stops the spray
    assert _host_processes_with(marker) == []  # nothing outlives the call


async def test_busy_loop_hits_the_cpu_limit():
    result = await run_python("while True: pass", SandboxLimits(wall_seconds=5, cpu_seconds=1))
    assert result.error and "CPU" in result.error and not result.timed_out


async def test_sleeping_code_hits_the_wall_clock_limit_and_its_children_die():
    marker = f"78.{uuid.uuid4().int % 10**6}"
    code = f"import subprocess, time; subprocess.Popen(['sleep', '{marker}']); print('started', flush=True); time.sleep(60)"
    result = await run_python(code, SandboxLimits(wall_seconds=1, cpu_seconds=5))
    assert result.timed_out and "wall-clock" in result.error and result.stdout == "started\n"
    assert result.duration_s < 5
    assert _host_processes_with(marker) == []


async def test_huge_allocation_fails_with_memory_error():
    result = await run_python("x = bytearray(8 * 1024**3)", FAST)
    assert result.error == "MemoryError"


async def test_huge_output_is_capped():
    for _ in range(3):  # the pipe left unread once kept the process unreaped until a 5 s timeout, 1 run in 3
        result = await run_python("while True: print('y' * 1000)", FAST)
        assert result.output_truncated and "output limit" in result.error
        assert len(result.stdout) <= FAST.max_output_bytes
        assert result.duration_s < FAST.wall_seconds, result.duration_s  # cut at the cap, not at the clock


async def test_user_code_cannot_kill_the_namespace_init_or_regain_root():
    code = """
import os
outcomes = []
for attempt in (lambda: os.kill(1, 9), lambda: os.setuid(0)):
    try:
        attempt(); outcomes.append('allowed')
    except OSError as e:
        outcomes.append(type(e).__name__)
outcomes, os.getuid()"""
    result = await run_python(code, FAST)
    assert result.value.startswith("(['PermissionError', 'PermissionError'], ")
    assert int(result.value.split(", ")[-1].rstrip(")")) >= 1000  # an unprivileged uid

