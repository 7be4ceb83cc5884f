"""Where and how an eval ran, measured by the eval itself: command line, UTC times, machine, thread
settings, load average at start and end, braid's git commit (as `benchmarks/structured_common.py`)."""
from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

__all__ = ["Provenance", "braid_commit", "cpu_model"]

_SOURCE = Path(__file__).resolve().parents[2]
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCH_NUM_THREADS")


def _utc() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(_SOURCE), *args], capture_output=True, text=True, timeout=10)


def braid_commit() -> str:
    """The checkout's short commit, marked when the working tree has uncommitted changes."""
    try:
        head = _git("rev-parse", "--short", "HEAD").stdout.strip()
        if not head:
            return "unknown (not a git checkout)"
        dirty = _git("diff-index", "--quiet", "HEAD", "--").returncode != 0
        return f"{head}{' + uncommitted changes' if dirty else ''}"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


@dataclass
class Provenance:
    command: str
    started: str
    machine: str
    threads: str
    load_start: tuple[float, float, float]
    commit: str
    finished: str = ""
    load_end: tuple[float, float, float] | None = None
    seconds: float = 0.0
    _t0: float = field(default_factory=time.monotonic, repr=False)

    @classmethod
    def start(cls, argv: list[str] | None = None) -> "Provenance":
        memory = psutil.virtual_memory().total / 2**30
        threads = ", ".join(f"{name}={os.environ[name]}" if name in os.environ else f"{name} unset"
                            for name in _THREAD_VARS)
        return cls(command=shlex.join(argv if argv is not None else [sys.executable, *sys.argv]), started=_utc(),
                   machine=f"{cpu_model()}, {os.cpu_count()} cores, {memory:.0f} GiB, {platform.machine()}",
                   threads=f"{threads} (this process's environment; a model server has its own)",
                   load_start=os.getloadavg(), commit=braid_commit())

    def finish(self) -> "Provenance":
        self.finished, self.load_end = _utc(), os.getloadavg()
        self.seconds = time.monotonic() - self._t0
        return self

    def markdown(self) -> list[str]:
        def load(values: tuple[float, float, float] | None) -> str:
            return ", ".join(f"{x:.2f}" for x in values) if values else "n/a"

        return [f"- command: `{self.command}`",
                f"- run: {self.started} to {self.finished or '(unfinished)'} ({self.seconds / 60:.1f} min)",
                f"- machine: {self.machine}",
                f"- threads: {self.threads}",
                f"- load average (1, 5, 15 min): {load(self.load_start)} at start, {load(self.load_end)} at end",
                f"- braid {self.commit}"]
