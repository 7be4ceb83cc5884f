"""Soak benchmark (issue 15): a bounded run of mixed traffic against ONE Braid server with several models.

By default the script starts its own server (``braid serve --config <generated file>`` on 127.0.0.1,
a free port, log in the results folder) serving the bundled SmolLM2-135M-Instruct three ways:
``smollm2`` on the vllm engine, ``smollm2-hf`` on the transformers engine (contrastive decoding and
steering) and ``smollm2-bytes`` read at byte level (``kind: bytelevel``, the near-exact fast
settings). ``--config`` serves your own config instead, ``--base-url`` targets a running server.
Which request goes to which model is read from ``GET /v1/models`` (each card's ``engine``): kinds
whose engine is not served are left out of the mix.

``--concurrency`` clients loop for ``--duration`` seconds, each picking its next request from a
weighted, seeded random mix (``--mix``): chat and completions on the vllm model, streaming and
not; JSON-schema structured output and tool calls; ICD on vllm; plain chat, ICD, ASCD and span
steering on the transformers model; byte-level scoring (``echo`` + ``logprobs`` + ``max_tokens: 0``)
and generation; clients that close the stream after the first one or two chunks; malformed
requests (bad JSON, an unknown model, invalid parameters: must be 4xx) and prompts over the
context (must be 400). Every request has a client deadline (``--timeout``): reaching it is a HANG.
Like the official ``openai`` client, a request answered 408, 409, 429 or 5xx is sent again up to
``--retries`` times (default 2, its ``max_retries``), after ``Retry-After`` when the answer has
one (up to 60 s) or else 0.5 s doubling, within the deadline; the report counts those retries, and
a request counts as failed by its last answer. ``--retries 0`` judges the first answer.

Sampled meanwhile: ``GET /health`` every second, ``GET /metrics`` every 5 s (``braid:engine_*``
when the server has them), and every ``--sample-interval`` s the RSS and open descriptors (sockets
apart) of the server process and of each child (vLLM's ``EngineCore`` and its ``Worker``
separately). ``--inject-engine-death T`` SIGKILLs the vLLM engine-core process(es) at T s; errors
on the vllm model(s) between the kill and recovery (the model answered a request started after
the kill, and ``/health`` is 200 again) are counted as "injected fault", apart from the rest.

Goals (verdict, exit status 1 if one fails): no 5xx / stream error / dropped connection outside
the injected fault (a 503 with ``Retry-After`` saying the model is overloaded, its admission
refusing a request before any work, is counted apart and reported, not failed); malformed
requests 4xx, oversized ones 400, valid ones never 4xx; no hang;
the API stays responsive (no gap over 10 s between ``/health`` answers); nothing left running
once the traffic stops (``braid:num_requests_running`` / ``_waiting`` 0); RSS growth < 5% after warm-up (median RSS of the last window vs the first window after warm-up;
warm-up = the first 20% of the run unless ``--warmup``); descriptors flat (non-socket fds: max in
the last window - min after warm-up <= ``--fd-slack``; sockets: idle count after the run <= idle
count before it + ``--fd-slack``); with the injection, the killed model serves again.

Writes ``soak.md`` (run header, verdict, tables), ``soak.json`` (every request and sample),
``soak.png`` and, for its own server, ``server.log`` and ``soak_config.json`` into ``--out``.

    .venv/bin/python benchmarks/soak.py                                 # 10 min, concurrency 32
    .venv/bin/python benchmarks/soak.py --duration 90 --concurrency 8 --inject-engine-death 30 \\
        --out /tmp/soak-smoke
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from structured_common import RESULTS, RunInfo, process_role, thread_env, wait_healthy  # noqa: E402  (also puts tests/ on the path)
from server_process import free_port  # noqa: E402

SOURCE = "smollm2-135m-instruct"
VLLM_OPTIONS = {"enforce_eager": True}  # skips torch.compile and graph capture: start-up in seconds, not minutes


def default_config() -> dict:
    return {"log_level": "info", "max_queue": 512, "models": [
        {"id": "smollm2", "source": SOURCE, "engine": "vllm", "dtype": "float32", "engine_options": VLLM_OPTIONS},
        {"id": "smollm2-hf", "source": SOURCE, "engine": "transformers", "dtype": "float32"},
        {"id": "smollm2-bytes", "kind": "bytelevel", "source": SOURCE, "dtype": "float32",
         "min_token_prob": 1.0e-3, "unchecked_tokens": "keep", "min_branch_share": 1.0e-4}]}


# --- the request mix -------------------------------------------------------------------------------------------

# kind: (engine it needs: vllm | transformers | bytelevel | token (vllm or transformers) | any, default weight)
KINDS = {
    "chat": ("vllm", 10), "chat-stream": ("vllm", 10), "completion": ("vllm", 8), "completion-stream": ("vllm", 8),
    "structured": ("vllm", 3), "tools": ("vllm", 2), "icd-vllm": ("vllm", 3),
    "hf-chat": ("transformers", 5), "icd": ("transformers", 5), "ascd": ("transformers", 3),
    "steer": ("transformers", 5),
    "bytes-score": ("bytelevel", 2), "bytes-generate": ("bytelevel", 1),
    "disconnect": ("token", 6),
    "bad-json": ("any", 2), "unknown-model": ("any", 2), "invalid-params": ("any", 3), "oversized": ("any", 2),
}
MALFORMED = {"bad-json", "unknown-model", "invalid-params"}
EXPECT_4XX = MALFORMED | {"oversized"}

QUESTIONS = ["What is the capital of France?", "Name three primary colours.", "Write a haiku about the sea.",
             "Explain what a CPU does in one sentence.", "What is 17 + 25?", "Give a synonym for 'quick'.",
             "Why is the sky blue?", "List two uses of copper.", "Translate 'good morning' to Spanish.",
             "What does HTTP stand for?", "Describe a cat in five words.", "Who wrote Hamlet?"]
STATEMENT = "the capital of France is Tokyo"
STORY = (f"In this story, {STATEMENT}. The travellers arrived early, walked through the markets and "
         "wrote notes about everything they saw. ")
SCORE_TEXTS = ["The cat sat on the mat.", "Paris is the capital of France.", "def add(a, b): return a + b",
               "Water boils at 100 degrees Celsius.", "Braid serves models over HTTP.", "Zwei plus zwei ist vier."]
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
          "required": ["city", "country"]}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


@dataclass
class Call:
    kind: str
    model: str
    path: str
    body: dict | None = None
    raw: bytes | None = None  # sent as is (malformed JSON)
    expect: str = "ok"  # ok | 4xx (any client error) | 400 | 404
    disconnect_after: int = 0  # close the stream after this many data chunks


@dataclass
class Result:
    kind: str
    model: str
    t0: float  # seconds since the traffic started
    t1: float
    status: int | None  # HTTP status (None: no response)
    cls: str  # ok | expected 4xx | failure classes (see classify)
    error: str = ""
    ttft: float | None = None
    chunks: int = 0
    retry_after: str | None = None
    injected: bool = False  # set after the run: a failure inside the injected fault's window
    retried: list = field(default_factory=list)  # [status, Retry-After, error] of each answer sent again

    @property
    def latency(self) -> float:
        return self.t1 - self.t0


class Mix:
    def __init__(self, models: list[dict], weights: dict[str, float], seed: int):
        self.rng = random.Random(seed)
        self.by_engine: dict[str, list[dict]] = defaultdict(list)
        for card in models:
            engine = card.get("engine") or "vllm"
            if engine == "workflow":
                continue
            self.by_engine[engine].append(card)
            self.by_engine["any"].append(card)
            if engine in ("vllm", "transformers"):
                self.by_engine["token"].append(card)
        self.kinds = {k: w for k, w in weights.items() if w > 0 and self.by_engine.get(KINDS[k][0])}
        self.skipped = sorted(k for k, w in weights.items() if w > 0 and k not in self.kinds)
        if not self.kinds:
            raise SystemExit("no request kind fits the served models")
        self._names, self._weights = list(self.kinds), list(self.kinds.values())

    def next(self) -> Call:
        kind = self.rng.choices(self._names, self._weights)[0]
        card = self.rng.choice(self.by_engine[KINDS[kind][0]])
        return getattr(self, "_" + kind.replace("-", "_"))(kind, card)

    # helpers
    def _question(self) -> str:
        return f"{self.rng.choice(QUESTIONS)} (request {self.rng.randrange(10**6)})"

    def _sampling(self) -> dict:
        return {"max_tokens": self.rng.randint(8, 32), "temperature": self.rng.choice([0.0, 0.7]),
                "seed": self.rng.randrange(1000)}

    def _chat_body(self, card: dict, stream: bool, **extra) -> dict:
        body = {"model": card["id"], "messages": [{"role": "user", "content": self._question()}], **self._sampling(),
                **extra}
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        return body

    def _completion_body(self, card: dict, stream: bool, **extra) -> dict:
        body = {"model": card["id"], "prompt": f"Question: {self._question()}\nAnswer:", **self._sampling(), **extra}
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        return body

    # kinds
    def _chat(self, kind, card):
        return Call(kind, card["id"], "/v1/chat/completions", self._chat_body(card, False))

    def _chat_stream(self, kind, card):
        return Call(kind, card["id"], "/v1/chat/completions", self._chat_body(card, True))

    def _completion(self, kind, card):
        return Call(kind, card["id"], "/v1/completions", self._completion_body(card, False))

    def _completion_stream(self, kind, card):
        return Call(kind, card["id"], "/v1/completions", self._completion_body(card, True))

    def _structured(self, kind, card):
        body = self._chat_body(card, self.rng.random() < 0.5, response_format={
            "type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA}})
        body["messages"][0]["content"] = "Give a city and its country as JSON."
        return Call(kind, card["id"], "/v1/chat/completions", body)

    def _tools(self, kind, card):
        body = self._chat_body(card, self.rng.random() < 0.5, tools=TOOLS)
        body["messages"][0]["content"] = f"What is the weather in {self.rng.choice(['Paris', 'Oslo', 'Lima'])}?"
        return Call(kind, card["id"], "/v1/chat/completions", body)

    def _icd_vllm(self, kind, card):
        return Call(kind, card["id"], "/v1/chat/completions",
                    self._chat_body(card, self.rng.random() < 0.5, contrastive={"method": "icd"}))

    def _hf_chat(self, kind, card):
        return Call(kind, card["id"], "/v1/chat/completions", self._chat_body(card, self.rng.random() < 0.5))

    def _icd(self, kind, card):
        return self._icd_vllm(kind, card)

    def _ascd(self, kind, card):
        body = self._chat_body(card, self.rng.random() < 0.5)
        text = STORY + "Question: What is the capital of France?"
        body["messages"][0]["content"] = text
        body["contrastive"] = {"method": "ascd", "steer": {"spans": [[0, len(STORY)]]}}
        return Call(kind, card["id"], "/v1/chat/completions", body)

    def _steer(self, kind, card):
        body = self._completion_body(card, self.rng.random() < 0.5,
                                     steer={"spans": [[0, len(STORY)]], "heads": "auto"})
        body["prompt"] = STORY + "Question: What is the capital of France?\nAnswer:"
        return Call(kind, card["id"], "/v1/completions", body)

    def _bytes_score(self, kind, card):
        text = f"{self.rng.choice(SCORE_TEXTS)} {self.rng.randrange(100)}"
        return Call(kind, card["id"], "/v1/completions",
                    {"model": card["id"], "prompt": text, "echo": True, "logprobs": 0, "max_tokens": 0})

    def _bytes_generate(self, kind, card):
        body = self._completion_body(card, self.rng.random() < 0.5)
        body["max_tokens"] = self.rng.randint(4, 8)  # bytes: the byte-level engine is the slowest here
        return Call(kind, card["id"], "/v1/completions", body)

    def _disconnect(self, kind, card):
        if self.rng.random() < 0.5:
            call = Call(kind, card["id"], "/v1/chat/completions", self._chat_body(card, True))
        else:
            call = Call(kind, card["id"], "/v1/completions", self._completion_body(card, True))
        call.body["max_tokens"] = 32
        call.disconnect_after = self.rng.choice([1, 2])
        return call

    def _bad_json(self, kind, card):
        path = self.rng.choice(["/v1/chat/completions", "/v1/completions"])
        raw = self.rng.choice([b'{"model": "' + card["id"].encode() + b'", "messages": [', b"not json at all",
                               b'{"model": 1,,}', b"\xff\xfe\x00garbage"])
        return Call(kind, card["id"], path, raw=raw, expect="400")

    def _unknown_model(self, kind, card):
        body = self._chat_body(card, self.rng.random() < 0.5)
        body["model"] = f"no-such-model-{self.rng.randrange(1000)}"
        return Call(kind, body["model"], "/v1/chat/completions", body, expect="404")

    def _invalid_params(self, kind, card):
        body = self._chat_body(card, self.rng.random() < 0.3)
        engine = card.get("engine")
        options = [("temperature", 5.0), ("top_p", 0.0), ("n", 0), ("max_tokens", -3), ("n", 10_000),
                   ("messages", []), ("stop", 5), ("top_logprobs", 99), ("presence_penalty", 9.0)]
        if engine == "vllm":
            options.append(("steer", {"spans": [[0, 5]]}))  # the vllm engine cannot steer: 400
        if engine == "bytelevel":
            options.append(("contrastive", {"method": "icd"}))  # not on byte-level models: 400
        name, value = self.rng.choice(options)
        body[name] = value
        return Call(kind, card["id"], "/v1/chat/completions", body, expect="4xx")

    def _oversized(self, kind, card):
        limit = card.get("max_model_len") or 8192
        # each " wordN" is at least one token and at least one byte: over the limit for token and byte models
        prompt = " ".join(f"w{self.rng.randrange(10)}" for _ in range(limit + 64))
        if self.rng.random() < 0.5:
            body = {"model": card["id"], "prompt": prompt, "max_tokens": 8}
            return Call(kind, card["id"], "/v1/completions", body, expect="400")
        body = {"model": card["id"], "messages": [{"role": "user", "content": prompt}], "max_tokens": 8}
        return Call(kind, card["id"], "/v1/chat/completions", body, expect="400")


# --- sending and classifying ------------------------------------------------------------------------------------

MAX_HEALTH_GAP = 10.0
SERVER_FAILURES = ("5xx", "stream error", "stream cut", "connection error", "bad response")
OVERLOADED = "overloaded"  # a 503 with Retry-After that refused the request before any work (admission)
CLIENT_FAILURES = ("unexpected 4xx", "accepted invalid request", "wrong 4xx", "4xx without error object")


def _error_text(body: bytes) -> str:
    try:
        data = json.loads(body)
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            return str(data["error"].get("message", data["error"]))[:400]
    except (ValueError, UnicodeDecodeError):
        pass
    return body[:400].decode(errors="replace")


def _is_error_object(body: bytes) -> bool:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and isinstance(data.get("error"), dict) and "message" in data["error"]


def _check_body(call: Call, data) -> str:
    """'' if a 200 body looks like an answer, else what is wrong."""
    if not isinstance(data, dict) or not data.get("choices"):
        return f"no choices in the response: {str(data)[:200]}"
    choice = data["choices"][0]
    if call.kind == "bytes-score":
        logprobs = choice.get("logprobs") or {}
        if not logprobs.get("token_logprobs"):
            return "scoring request without token_logprobs"
    return ""


def _has_output(chunk: dict) -> bool:
    """A stream chunk that carries generated text or a tool call (not the role-only first delta)."""
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if choice.get("text") or delta.get("content") or delta.get("tool_calls"):
            return True
    return False


RETRY_STATUSES = {408, 409, 429}  # and every 5xx: what the openai client retries
MAX_RETRY_AFTER = 60.0  # the openai client ignores a longer Retry-After


async def send(client: httpx.AsyncClient, call: Call, t_zero: float, timeout: float, retries: int = 0) -> Result:
    t0 = time.monotonic()
    deadline = t0 + timeout
    result = Result(call.kind, call.model, t0 - t_zero, t0 - t_zero, None, "ok")
    for attempt in range(retries + 1):
        if attempt:
            result.retried.append([result.status, result.retry_after, result.error[:200]])
            result.status, result.cls, result.error, result.retry_after = None, "ok", "", None
        try:
            await asyncio.wait_for(_send(client, call, result, t0), deadline - time.monotonic())
        except asyncio.TimeoutError:
            result.cls, result.error = "hang", f"no complete answer within {timeout:.0f} s"
        except httpx.TransportError as error:
            result.cls, result.error = "connection error", f"{type(error).__name__}: {error}"[:400]
        except Exception as error:  # noqa: BLE001 - anything else is a client-side surprise, kept with its type
            result.cls, result.error = "bad response", f"{type(error).__name__}: {error}"[:400]
        wait = _retry_wait(result, attempt)
        if attempt == retries or wait is None or time.monotonic() + wait >= deadline:
            break
        await asyncio.sleep(wait)
    result.t1 = time.monotonic() - t_zero
    return result


def _retry_wait(result: Result, attempt: int) -> float | None:
    """Seconds before sending again, as the openai client decides; None: not retried."""
    if result.status is None or not (result.status >= 500 or result.status in RETRY_STATUSES):
        return None
    try:
        after = float(result.retry_after) if result.retry_after else None
    except ValueError:
        after = None
    if after is not None and 0 < after <= MAX_RETRY_AFTER:
        return after
    return min(0.5 * 2 ** attempt, 8.0)


async def _send(client: httpx.AsyncClient, call: Call, result: Result, t0: float) -> None:
    content = call.raw if call.raw is not None else json.dumps(call.body).encode()
    request = client.build_request("POST", call.path, content=content, headers={"Content-Type": "application/json"})
    response = await client.send(request, stream=True)
    try:
        result.status = response.status_code
        result.retry_after = response.headers.get("retry-after")
        if response.status_code != 200:
            body = await response.aread()
            _classify_status(call, result, response.status_code, body)
            return
        if call.expect != "ok":
            await response.aread()
            result.cls, result.error = "accepted invalid request", f"expected {call.expect}, got 200"
            return
        if not (call.body or {}).get("stream"):
            body = await response.aread()
            problem = _check_body(call, json.loads(body))
            if problem:
                result.cls, result.error = "bad response", problem
            return
        done = False
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                break
            chunk = json.loads(line[6:])
            if "error" in chunk:
                result.cls, result.error = "stream error", str(chunk["error"].get("message", chunk["error"]))[:400]
                return
            if _has_output(chunk):
                result.chunks += 1
                if result.ttft is None:
                    result.ttft = time.monotonic() - t0
                if call.disconnect_after and result.chunks >= call.disconnect_after:
                    return  # closing the response drops the connection mid-stream
        if not done:
            result.cls, result.error = "stream cut", f"the stream ended without [DONE] after {result.chunks} chunks"
    finally:
        await response.aclose()


def _classify_status(call: Call, result: Result, status: int, body: bytes) -> None:
    result.error = _error_text(body)
    if status == 503 and result.retry_after and "is overloaded" in result.error:
        result.cls = OVERLOADED
    elif status >= 500:
        result.cls = "5xx"
    elif 400 <= status < 500:
        if call.expect == "ok":
            result.cls = "unexpected 4xx"
        elif call.expect not in ("4xx", str(status)):
            result.cls, result.error = "wrong 4xx", f"expected {call.expect}: {result.error}"
        elif not _is_error_object(body):
            result.cls = "4xx without error object"
        else:
            result.cls = "expected 4xx"
    else:
        result.cls = "5xx" if status >= 500 else "bad response"


# --- the server and its processes -------------------------------------------------------------------------------

class OwnServer:
    """``braid serve --config FILE --host 127.0.0.1 --port FREE`` in its own process group, log to a file."""

    def __init__(self, config_path: Path, out: Path, threads: int, timeout: float):
        port = free_port()
        self.root = f"http://127.0.0.1:{port}"
        self.log = out / "server.log"
        self.command = [sys.executable, "-m", "braid.clients.cli", "serve", "--config", str(config_path),
                        "--host", "127.0.0.1", "--port", str(port)]
        print(f"starting: {' '.join(self.command)} (log: {self.log})", file=sys.stderr)
        t0 = time.monotonic()
        self.process = subprocess.Popen(self.command, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
                                        start_new_session=True, env={**os.environ, **thread_env(threads)})
        self.pid = self.process.pid
        try:
            wait_healthy(self.root, self.process, timeout, self.log)
        except TimeoutError as exc:
            self.stop()
            raise SystemExit(str(exc)) from None
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from None
        self.startup_s = time.monotonic() - t0
        print(f"server healthy after {self.startup_s:.0f} s", file=sys.stderr)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.process.wait()


def listening_pid(base_url: str) -> int | None:
    port = urlparse(base_url).port or (443 if base_url.startswith("https") else 80)
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return conn.pid
    except psutil.AccessDenied:
        pass
    return None


def fd_kind(target: str) -> str:
    if target.startswith(("socket:", "pipe:")):
        return target.split(":")[0]
    if target.startswith("anon_inode:"):
        return target[len("anon_inode:"):].strip("[]")  # eventfd, eventpoll, ...
    return "dev" if target.startswith("/dev/") else "file"


def fd_counts(pid: int) -> tuple[int | None, int | None, dict]:
    """(open descriptors, of which sockets, count per kind) from /proc; None where it cannot be read."""
    folder = f"/proc/{pid}/fd"
    try:
        names = os.listdir(folder)
    except OSError:
        return None, None, {}
    kinds = Counter()
    for name in names:
        try:
            kinds[fd_kind(os.readlink(f"{folder}/{name}"))] += 1
        except OSError:
            pass
    return len(names), kinds["socket"], dict(kinds)


def sample_processes(root_pid: int, t: float) -> list[dict]:
    try:
        root = psutil.Process(root_pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    rows = []
    for process in processes:
        try:
            rss = process.memory_info().rss
            role = process_role(process, root_pid)
        except psutil.Error:
            continue
        fds, sockets, kinds = fd_counts(process.pid)
        rows.append({"t": round(t, 2), "pid": process.pid, "role": role, "rss": rss, "fds": fds, "sockets": sockets,
                     "fd_kinds": kinds})
    return rows


def engine_core_processes(root_pid: int) -> list[psutil.Process]:
    found = []
    for process in psutil.Process(root_pid).children(recursive=True):
        try:
            if "EngineCore" in process.name() or "EngineCore" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            pass
    return found


METRIC_LINE = re.compile(r"^(braid:(?:engine_[a-z_]+|num_requests_running|num_requests_waiting))\{([^}]*)\}\s+(\S+)")


def parse_engine_metrics(text: str) -> list[dict]:
    rows = []
    for line in text.splitlines():
        match = METRIC_LINE.match(line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
            rows.append({"name": match.group(1), "labels": labels, "value": float(match.group(3))})
    return rows


# --- the run ----------------------------------------------------------------------------------------------------

@dataclass
class Run:
    results: list[Result] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    health: list[dict] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)
    kill: dict | None = None
    idle_before: list[dict] = field(default_factory=list)
    idle_after: list[dict] = field(default_factory=list)
    idle_metrics: list[dict] | None = None  # braid:* gauges scraped after the traffic, the server idle
    in_flight: int = 0
    traffic_s: float = 0.0


async def run_traffic(args, root_url: str, pid: int | None, mix: Mix, headers: dict) -> Run:
    run = Run()
    limits = httpx.Limits(max_connections=args.concurrency + 8, max_keepalive_connections=args.concurrency + 8)
    client = httpx.AsyncClient(base_url=root_url, headers=headers, limits=limits,
                               timeout=httpx.Timeout(args.timeout, connect=10))
    probe = httpx.AsyncClient(base_url=root_url, headers=headers, timeout=5)
    if pid:
        run.idle_before = await asyncio.to_thread(sample_processes, pid, 0.0)
    t_zero = time.monotonic()
    stop_at = t_zero + args.duration
    stopped = asyncio.Event()

    async def worker() -> None:
        while time.monotonic() < stop_at:
            call = mix.next()
            run.in_flight += 1
            result = await send(client, call, t_zero, args.timeout, args.retries)
            run.in_flight -= 1
            run.results.append(result)

    async def every(interval: float, step) -> None:
        next_t = time.monotonic()
        while not stopped.is_set():
            await step(time.monotonic() - t_zero)
            next_t += interval
            try:
                await asyncio.wait_for(stopped.wait(), max(0.0, next_t - time.monotonic()))
            except asyncio.TimeoutError:
                pass

    async def health(t: float) -> None:
        try:
            response = await probe.get("/health")
            run.health.append({"t": round(t, 2), "status": response.status_code, "body": response.text[:300],
                               "retry_after": response.headers.get("retry-after"),
                               "s": round(time.monotonic() - t_zero - t, 3)})
        except httpx.HTTPError as error:
            run.health.append({"t": round(t, 2), "status": None, "body": f"{type(error).__name__}: {error}"[:300],
                               "s": round(time.monotonic() - t_zero - t, 3)})

    async def metrics(t: float) -> None:
        try:
            response = await probe.get("/metrics")
            run.metrics.append({"t": round(t, 2), "rows": parse_engine_metrics(response.text)})
        except httpx.HTTPError:
            pass

    async def resources(t: float) -> None:
        run.samples.extend(await asyncio.to_thread(sample_processes, pid, t))

    async def progress(t: float) -> None:
        if t < 1:
            return
        failures = sum(r.cls not in ("ok", "expected 4xx") for r in run.results)
        hangs = sum(r.cls == "hang" for r in run.results)
        rss = ""
        if run.samples:
            last_t = run.samples[-1]["t"]
            by_role = Counter()
            for row in run.samples:
                if row["t"] == last_t:
                    by_role[row["role"]] += row["rss"]
            rss = ", RSS " + ", ".join(f"{role} {value / 2**20:.0f} MiB" for role, value in sorted(by_role.items()))
        print(f"[{t:5.0f} s] {len(run.results)} requests done ({run.in_flight} in flight), {failures} not ok "
              f"(excl. expected 4xx), {hangs} hangs{rss}", file=sys.stderr, flush=True)

    async def inject() -> None:
        await asyncio.sleep(max(0.0, t_zero + args.inject_engine_death - time.monotonic()))
        t = time.monotonic() - t_zero
        victims = await asyncio.to_thread(engine_core_processes, pid)
        killed = []
        for process in victims:
            try:
                info = {"pid": process.pid, "name": process.name(), "cmdline": " ".join(process.cmdline()).strip()[:200],
                        "children": [c.pid for c in process.children(recursive=True)]}
                process.send_signal(signal.SIGKILL)
                killed.append(info)
            except psutil.Error as error:
                print(f"could not kill {process.pid}: {error}", file=sys.stderr)
        run.kill = {"t": round(t, 2), "killed": killed, "survivors_10s": []}
        print(f"[{t:5.0f} s] INJECTED: SIGKILL to {killed or 'nothing (no EngineCore process found)'}",
              file=sys.stderr, flush=True)
        await asyncio.sleep(10)
        for pid_ in (c for k in killed for c in k["children"]):  # e.g. vLLM's Worker: does it go too?
            try:
                process = psutil.Process(pid_)
                if process.status() != psutil.STATUS_ZOMBIE:
                    run.kill["survivors_10s"].append(f"{pid_} `{' '.join(process.cmdline()).strip()[:60]}`")
            except psutil.Error:
                pass

    tasks = [asyncio.create_task(every(1.0, health)), asyncio.create_task(every(5.0, metrics)),
             asyncio.create_task(every(30.0, progress))]
    if pid:
        tasks.append(asyncio.create_task(every(args.sample_interval, resources)))
    if args.inject_engine_death is not None:
        tasks.append(asyncio.create_task(inject()))
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    run.traffic_s = time.monotonic() - t_zero
    stopped.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await client.aclose()
    if pid:
        await asyncio.sleep(args.idle_wait)  # let the server close what the clients left
        run.idle_after = await asyncio.to_thread(sample_processes, pid, time.monotonic() - t_zero)
    else:
        await asyncio.sleep(args.idle_wait)
    try:
        run.idle_metrics = parse_engine_metrics((await probe.get("/metrics")).text)
    except httpx.HTTPError:
        pass
    await probe.aclose()
    return run


# --- analysis ---------------------------------------------------------------------------------------------------

def normalise_roles(run: Run) -> None:
    """A process just spawned still has its parent's command line: give each pid the first specific role seen."""
    rows = run.samples + run.idle_before + run.idle_after
    first: dict[int, str] = {}
    for row in rows:
        if row["role"] != "other":
            first.setdefault(row["pid"], row["role"])
    for row in rows:
        row["role"] = first.get(row["pid"], row["role"])


def health_gaps(run: Run, traffic_s: float) -> tuple[float, int, float | None]:
    """(longest time without a /health answer, probes not answered, when that gap began)."""
    answered = [h["t"] + h.get("s", 0.0) for h in run.health if h["status"] is not None]
    points = [0.0, *answered, traffic_s]
    gap, start = 0.0, None
    for a, b in zip(points, points[1:]):
        if b - a > gap:
            gap, start = b - a, a
    return gap, sum(h["status"] is None for h in run.health), start


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    low = math.floor(k)
    return ordered[low] + (ordered[min(low + 1, len(ordered) - 1)] - ordered[low]) * (k - low)


def median(values: list[float]) -> float:
    return pct(values, 50)


@dataclass
class Fault:
    kill_t: float
    affected: list[str]
    health_down_t: float | None = None  # first non-200 /health after the kill
    health_back_t: float | None = None  # first 200 after that
    first_success_t: float | None = None  # first success on an affected model, started after the kill
    recovered_t: float | None = None
    restarts: dict = field(default_factory=dict)  # model -> (before, after) of braid:engine_restarts_total
    states: list[str] = field(default_factory=list)  # distinct engine_state transitions seen


def analyse_fault(run: Run, cards: list[dict]) -> Fault | None:
    if run.kill is None:
        return None
    kill_t = run.kill["t"]
    affected = sorted(c["id"] for c in cards if c.get("engine") == "vllm")
    # narrow to the models the server itself reported as not ready after the kill, where it reports it
    not_ready = sorted({row["labels"].get("model_name") for snap in run.metrics if snap["t"] >= kill_t
                        for row in snap["rows"] if row["name"] == "braid:engine_state" and row["value"] == 1
                        and row["labels"].get("state") not in ("ready", None)} - {None})
    if not_ready:
        affected = not_ready
    fault = Fault(kill_t, affected)
    after = [h for h in run.health if h["t"] >= kill_t]
    down = next((h for h in after if h["status"] != 200), None)
    if down:
        fault.health_down_t = down["t"]
        back = next((h for h in after if h["t"] > down["t"] and h["status"] == 200), None)
        fault.health_back_t = back["t"] if back else None
    successes = [r.t1 for r in run.results if r.model in affected and r.cls == "ok" and r.t0 > kill_t]
    fault.first_success_t = min(successes) if successes else None
    if fault.first_success_t is not None and (fault.health_down_t is None or fault.health_back_t is not None):
        fault.recovered_t = max(fault.first_success_t, fault.health_back_t or 0.0)
    last_state: dict[str, str] = {}
    for snap in run.metrics:
        for row in snap["rows"]:
            model = row["labels"].get("model_name", "?")
            if row["name"] == "braid:engine_restarts_total":
                before, _ = fault.restarts.get(model, (None, None))
                if snap["t"] < kill_t:
                    fault.restarts[model] = (row["value"], None)
                else:
                    fault.restarts[model] = (before, row["value"])
            if row["name"] == "braid:engine_state" and row["value"] == 1:
                state = row["labels"].get("state")
                if last_state.get(model) != state:
                    last_state[model] = state
                    fault.states.append(f"+{snap['t']:.0f} s {model}: {state}")
    end = fault.recovered_t if fault.recovered_t is not None else math.inf
    for r in run.results:
        if r.model in affected and r.cls not in ("ok", "expected 4xx", "hang") and r.t1 >= kill_t and r.t0 <= end:
            r.injected = True
    return fault


def resource_windows(duration: float, warmup: float) -> float:
    """Length of the comparison windows: a minute, or a third of what follows the warm-up if that is shorter."""
    return min(60.0, max(duration - warmup, 1.0) / 3)


def resource_goals(run: Run, duration: float, warmup: float, fd_slack: int) -> list[dict]:
    """Per process role (server, engine-core, vllm-worker): RSS growth and descriptor drift after warm-up."""
    window = resource_windows(duration, warmup)
    rows = []
    by_pid: dict[int, list[dict]] = defaultdict(list)
    for sample in run.samples:
        by_pid[sample["pid"]].append(sample)
    final_t = max((s["t"] for s in run.samples), default=0.0)
    for role in ("server", "engine-core", "vllm-worker"):
        pids = [pid for pid, rows_ in by_pid.items() if rows_[0]["role"] == role]
        if not pids:
            continue
        alive = [pid for pid in pids if by_pid[pid][-1]["t"] >= final_t - 1e-6] or pids
        for pid in alive:
            series = by_pid[pid]
            first_t = series[0]["t"]
            start = max(warmup, first_t + (warmup if first_t > 1 else 0.0))  # a restarted process warms up as long
            base = [s for s in series if start <= s["t"] < start + window]
            end = [s for s in series if s["t"] >= final_t - window]
            post = [s for s in series if s["t"] >= start]
            row = {"role": role, "pid": pid, "others": [p for p in pids if p != pid], "first_t": first_t,
                   "start": start, "window": window, "n": len(series)}
            if not base or not end or base[-1]["t"] >= end[0]["t"]:
                row["evaluated"] = False
                row["why"] = (f"too few samples after its warm-up (process first seen at +{first_t:.0f} s)"
                              if first_t > 1 else "run too short for two windows after the warm-up")
                rows.append(row)
                continue
            base_rss, end_rss = median([s["rss"] for s in base]), median([s["rss"] for s in end])
            non_socket = [s["fds"] - s["sockets"] for s in post if s["fds"] is not None]
            end_non_socket = [s["fds"] - s["sockets"] for s in end if s["fds"] is not None]
            row.update(evaluated=True, rss_first=series[0]["rss"], rss_base=base_rss, rss_end=end_rss,
                       rss_max=max(s["rss"] for s in post), growth=end_rss / base_rss - 1,
                       fd_min_post=min(non_socket) if non_socket else None,
                       fd_max_end=max(end_non_socket) if end_non_socket else None,
                       sockets_max=max((s["sockets"] for s in post if s["sockets"] is not None), default=None))
            row["fd_drift"] = (row["fd_max_end"] - row["fd_min_post"]) if non_socket and end_non_socket else None
            row["fd_kinds_base"], row["fd_kinds_end"] = post[0].get("fd_kinds", {}), series[-1].get("fd_kinds", {})
            idle_b = next((s for s in run.idle_before if s["pid"] == pid), None)
            idle_a = next((s for s in run.idle_after if s["pid"] == pid), None)
            row["sockets_idle_before"] = idle_b["sockets"] if idle_b else None
            row["sockets_idle_after"] = idle_a["sockets"] if idle_a else None
            row["rss_ok"] = row["growth"] < 0.05
            socket_ok = (row["sockets_idle_before"] is None or row["sockets_idle_after"] is None
                         or row["sockets_idle_after"] - row["sockets_idle_before"] <= fd_slack)
            row["fd_ok"] = (row["fd_drift"] is None or row["fd_drift"] <= fd_slack) and socket_ok
            rows.append(row)
    return rows


def verdict(args, run: Run, fault: Fault | None, resources: list[dict], pid: int | None) -> list[tuple[str, str, bool]]:
    goals = []
    gap, unanswered, gap_start = health_gaps(run, run.traffic_s)
    goals.append((f"the API stays responsive: no gap over {MAX_HEALTH_GAP:.0f} s between `/health` answers "
                  "(probed every second, 5 s deadline)",
                  f"longest gap {gap:.1f} s (from +{gap_start or 0:.0f} s); {unanswered} probes unanswered",
                  gap <= MAX_HEALTH_GAP))
    failures = [r for r in run.results if r.cls in SERVER_FAILURES and not r.injected]
    retried = [r for r in run.results if r.retried and not r.injected]
    goals.append(("no 5xx, stream error or dropped connection apart from the injected fault"
                  + (f" (a request's last answer, after up to {args.retries} retries as the openai client makes)"
                     if args.retries else ""),
                  f"{len(failures)} ({', '.join(f'{k} {v}' for k, v in Counter(r.cls for r in failures).items()) or 'none'})"
                  + (f"; {len(retried)} requests were answered only after a retry "
                     f"({', '.join(f'{k} {v}' for k, v in Counter(a[0] for r in retried for a in r.retried).items())})"
                     if retried else ""),
                  not failures))
    refused = Counter(r.model for r in run.results if r.cls == OVERLOADED and not r.injected)
    sent = Counter(r.model for r in run.results)
    goals.append(("overload: a model over its admission limit refuses up front (503 with Retry-After, before any "
                  "work; reported apart from the 5xx above, after the client's retries)",
                  "; ".join(f"{model}: {n} of {sent[model]} requests refused" for model, n in refused.items())
                  or "none refused", True))
    wrong = [r for r in run.results if r.cls in CLIENT_FAILURES and not r.injected]
    malformed = [r for r in run.results if r.kind in EXPECT_4XX]
    goals.append(("malformed requests 4xx, oversized 400, valid requests never 4xx",
                  f"{sum(r.cls == 'expected 4xx' for r in malformed)}/{len(malformed)} malformed/oversized as "
                  f"expected; {len(wrong)} wrong ({', '.join(sorted({r.cls for r in wrong})) or 'none'})",
                  not wrong))
    if run.idle_metrics is not None:
        busy = [f"{row['name'].split(':')[1]} {row['labels'].get('model_name')} = {row['value']:g}"
                for row in run.idle_metrics if row["name"].startswith("braid:num_requests") and row["value"]]
        goals.append((f"nothing left running: `braid:num_requests_running` / `_waiting` 0 for every model "
                      f"{args.idle_wait:.0f} s after the traffic", ", ".join(busy) or "all 0", not busy))
    hangs = [r for r in run.results if r.cls == "hang"]
    goals.append((f"no hang (no request without a complete answer within {args.timeout:.0f} s)",
                  f"{len(hangs)} hangs" + (f" ({sum(_in_window(r, fault) for r in hangs)} during the injected fault)"
                                           if fault and hangs else ""), not hangs))
    if pid is None:
        goals.append(("RSS growth < 5% after warm-up; descriptors flat", "not measured (no server pid)", True))
    for row in resources:
        label = f"{row['role']} (pid {row['pid']})"
        if not row["evaluated"]:
            goals.append((f"{label}: RSS growth < 5% after warm-up, descriptors flat", f"not evaluated: {row['why']}",
                          True))
            continue
        goals.append((f"{label}: RSS growth < 5% after warm-up",
                      f"{row['rss_base'] / 2**20:.0f} -> {row['rss_end'] / 2**20:.0f} MiB ({100 * row['growth']:+.1f}%)",
                      row["rss_ok"]))
        idle = (f"; sockets idle {row['sockets_idle_before']} before, {row['sockets_idle_after']} after"
                if row["sockets_idle_before"] is not None and row["sockets_idle_after"] is not None else "")
        goals.append((f"{label}: descriptors flat (drift <= {args.fd_slack})",
                      f"non-socket fds min {row['fd_min_post']} after warm-up, max {row['fd_max_end']} in the last "
                      f"{row['window']:.0f} s{idle}", row["fd_ok"]))
    if fault:
        recovered = fault.recovered_t is not None
        goals.append(("engine death: the killed model serves again",
                      f"recovered {fault.recovered_t - fault.kill_t:.1f} s after the kill" if recovered
                      else "not recovered before the end of the run", recovered))
    return goals


def _in_window(r: Result, fault: Fault | None) -> bool:
    if fault is None or r.model not in fault.affected:
        return False
    end = fault.recovered_t if fault.recovered_t is not None else math.inf
    return r.t1 >= fault.kill_t and r.t0 <= end


# --- the report -------------------------------------------------------------------------------------------------

def fmt_s(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


def server_log_summary(log: Path | None) -> list[str]:
    if log is None or not log.exists():
        return []
    lines = log.read_text(errors="replace").splitlines()
    flagged = [line for line in lines if re.search(r"\b(ERROR|CRITICAL|Traceback|Exception|Error:)", line)]
    distinct = []
    for line in flagged:
        key = re.sub(r"\d+", "N", line)[:160]
        if key not in {d[0] for d in distinct}:
            distinct.append((key, line))
    out = [f"{len(lines)} lines; {len(flagged)} mention an error or traceback"
           + (f"; the first {min(12, len(distinct))} distinct ones:" if distinct else "."), ""]
    if distinct:
        out += ["```", *[line[:300] for _, line in distinct[:12]], "```"]
    return out


def report(args, info: RunInfo, run: Run, cards: list[dict], mix: Mix, fault: Fault | None, resources: list[dict],
           goals: list[tuple[str, str, bool]], server: OwnServer | None, config_note: str, warmup: float,
           leftovers: list[str]) -> str:
    ok_all = all(ok for _, _, ok in goals)
    lines = [f"# Soak: mixed traffic against one Braid server ({args.duration:.0f} s, concurrency {args.concurrency})",
             "", *info.markdown(), f"- server: {config_note}",
             f"- models: " + ", ".join(f"`{c['id']}` ({c.get('engine')}, max_model_len {c.get('max_model_len')})"
                                       for c in cards),
             f"- warm-up: the first {warmup:.0f} s ({'--warmup' if args.warmup is not None else '20% of the run'}); "
             f"resource windows: {resource_windows(args.duration, warmup):.0f} s; samples every "
             f"{args.sample_interval:.0f} s; client deadline {args.timeout:.0f} s; client retries {args.retries}; seed {args.seed}",
             f"- traffic: {run.traffic_s:.0f} s (new requests stop at {args.duration:.0f} s, in-flight ones finish), "
             f"{len(run.results)} requests, {len(run.results) / max(run.traffic_s, 1e-9):.2f} per second",
             "", f"## Verdict: {'PASS' if ok_all else 'FAIL'}", "", "| goal | measured | |", "|---|---|---|"]
    lines += [f"| {goal} | {measured} | {'ok' if ok else '**FAIL**'} |" for goal, measured, ok in goals]
    if leftovers:
        lines += ["", f"Processes of the server still alive 30 s after it was stopped (killed by the script): "
                  f"{', '.join(leftovers)}"]

    # requests by kind
    lines += ["", "## Requests by kind", "",
              "Latency: seconds from sending to the complete answer (streams: to `[DONE]`; `disconnect`: to the "
              "close), requests answered as expected only; TTFT: first streamed chunk.", "",
              "| kind | weight | sent | ok | expected 4xx | injected fault | other errors | retried | p50 s | p90 s | "
              "p99 s | TTFT p50 s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    by_kind = defaultdict(list)
    for r in run.results:
        by_kind[r.kind].append(r)
    for kind in mix.kinds:
        rs = by_kind.get(kind, [])
        good = [r.latency for r in rs if r.cls in ("ok", "expected 4xx")]
        ttft = [r.ttft for r in rs if r.ttft is not None and r.cls == "ok"]
        lines.append(f"| {kind} | {mix.kinds[kind]:g} | {len(rs)} | {sum(r.cls == 'ok' for r in rs)} | "
                     f"{sum(r.cls == 'expected 4xx' for r in rs)} | {sum(r.injected for r in rs)} | "
                     f"{sum(r.cls not in ('ok', 'expected 4xx') and not r.injected for r in rs)} | "
                     f"{sum(bool(r.retried) for r in rs)} | {fmt_s(pct(good, 50))} | {fmt_s(pct(good, 90))} | {fmt_s(pct(good, 99))} | "
                     f"{fmt_s(pct(ttft, 50))} |")
    if mix.skipped:
        lines += ["", f"Left out (no model with the engine they need): {', '.join(mix.skipped)}."]

    # errors
    lines += ["", "## Errors by class and HTTP status", ""]
    groups = defaultdict(list)
    for r in run.results:
        if r.cls == "ok":
            continue
        group = ("injected fault" if r.injected else "expected" if r.cls == "expected 4xx"
                 else "overload" if r.cls == OVERLOADED else "unexpected")
        groups[(group, r.cls, r.status, r.kind)].append(r)
    if groups:
        lines += ["| group | class | HTTP status | kind | count | example message |", "|---|---|---|---|---:|---|"]
        order = {"unexpected": 0, "overload": 1, "injected fault": 2, "expected": 3}
        for (group, cls, status, kind), rs in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1],
                                                                                      str(kv[0][2]), kv[0][3])):
            example = rs[0].error.replace("|", "\\|").replace("\n", " ")[:180]
            lines.append(f"| {group} | {cls} | {status or '-'} | {kind} | {len(rs)} | {example} |")
    else:
        lines.append("None.")
    answers, examples = Counter(), {}
    for r in run.results:
        for status, after, error in r.retried:
            key = (status, after is not None, r.kind, re.sub(r"\d+(\.\d+)?", "N", error or ""))
            answers[key] += 1
            examples.setdefault(key, (error or "").replace("|", "\\|")[:180])
    if answers:
        lines += ["", "Answers the client sent again (`--retries`), by status, whether they had `Retry-After`, "
                  "and kind; the request's outcome is its last answer:", "",
                  "| HTTP status | Retry-After | kind | count | example message |", "|---|---|---|---:|---|"]
        for key, n in sorted(answers.items(), key=lambda kv: (-kv[1], str(kv[0]))):
            status, has_after, kind, _ = key
            lines.append(f"| {status} | {'yes' if has_after else 'no'} | {kind} | {n} | {examples[key]} |")

    # the injected fault
    if run.kill is not None:
        lines += ["", "## Injected engine death", ""]
        killed = run.kill["killed"]
        lines.append(f"- +{run.kill['t']:.1f} s: SIGKILL to " + (", ".join(
            f"pid {k['pid']} `{k['cmdline'] or k['name']}` (descendants {k['children'] or 'none'})" for k in killed)
            if killed else "nothing: no EngineCore process among the server's descendants"))
        if killed:
            survivors = run.kill.get("survivors_10s") or []
            lines.append(f"- the killed processes' descendants still alive 10 s later: {', '.join(survivors) or 'none'}")
        if fault:
            rel = lambda t: "never" if t is None else f"+{t:.1f} s ({t - fault.kill_t:+.1f} s after the kill)"  # noqa: E731
            lines += [f"- models treated as affected: {', '.join(fault.affected) or 'none'}",
                      f"- `/health` first not 200 after the kill: {rel(fault.health_down_t)}; 200 again: "
                      f"{rel(fault.health_back_t)}",
                      f"- first successful request on an affected model started after the kill: "
                      f"{rel(fault.first_success_t)}; recovered (window end): {rel(fault.recovered_t)}"]
            bodies = Counter(f"{h['status']} {h['body'][:120]!r} Retry-After {h.get('retry_after')}"
                             for h in run.health if h["t"] >= fault.kill_t and h["status"] != 200)
            if bodies:
                lines.append("- `/health` answers while not 200: " + "; ".join(f"{n}x {b}" for b, n in bodies.items()))
            window = [r for r in run.results if _in_window(r, fault)]
            if window:
                statuses = Counter(f"{r.cls} {r.status or ''}".strip() for r in window)
                answers_503 = [bool(r.retry_after) for r in window if r.status == 503] + [
                    bool(a[1]) for r in window for a in r.retried if a[0] == 503]
                with_retry, n503 = sum(answers_503), len(answers_503)
                lines.append(f"- requests on affected models in the window: {len(window)}: "
                             + ", ".join(f"{k} {v}" for k, v in statuses.most_common())
                             + (f"; 503s with Retry-After: {with_retry}/{n503}" if n503 else ""))
            in_flight = [r for r in run.results if r.model in fault.affected and r.t0 < fault.kill_t <= r.t1]
            if in_flight:
                lines.append(f"- in flight at the kill on affected models: {len(in_flight)}; their outcomes: "
                             + ", ".join(f"{k} {v}" for k, v in Counter(r.cls for r in in_flight).most_common())
                             + f"; ended at most {max(r.t1 for r in in_flight) - fault.kill_t:.1f} s after the kill")
            if fault.restarts:
                lines.append("- `braid:engine_restarts_total` before / after the kill: " + ", ".join(
                    f"{m} {b} / {a}" for m, (b, a) in fault.restarts.items()))
            else:
                lines.append("- `/metrics` has no `braid:engine_restarts_total` / `braid:engine_state` (not exposed "
                             "by this server)")
            if fault.states:
                lines.append("- `braid:engine_state` seen: " + "; ".join(fault.states))
            unaffected = [r for r in run.results if r.model not in fault.affected and r.cls in SERVER_FAILURES
                          and r.t1 >= fault.kill_t and (fault.recovered_t is None or r.t0 <= fault.recovered_t)]
            end = fault.recovered_t if fault.recovered_t is not None else run.traffic_s
            done = sorted(r.t1 for r in run.results if r.model not in fault.affected and r.cls == "ok"
                          and r.kind not in EXPECT_4XX and fault.kill_t <= r.t1 <= end)
            points = [fault.kill_t, *done, end]
            lines.append(f"- other models during the window: {len(done)} requests ended ok, {len(unaffected)} server "
                         f"errors; longest stretch with none ending ok: "
                         f"{max(b - a for a, b in zip(points, points[1:])):.1f} s")
            gap, unanswered, gap_start = health_gaps(run, run.traffic_s)
            lines.append(f"- `/health`: {unanswered} probes unanswered within 5 s over the run; longest gap between "
                         f"answers {gap:.1f} s, from +{gap_start or 0:.1f} s")

    # latency by minute
    minutes = max(1, math.ceil(args.duration / 60))
    lines += ["", "## Latency by minute (requests answered as expected, by start time)", "",
              "All generation kinds together, then p50 / p99 per kind (s).", "",
              "| minute | started | not ok | p50 s | p90 s | p99 s | server RSS MiB | engine-core RSS MiB | "
              "server fds (sockets) |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in range(minutes):
        rs = [r for r in run.results if m * 60 <= r.t0 < (m + 1) * 60]
        good = [r.latency for r in rs if r.cls == "ok" and r.kind not in EXPECT_4XX]
        server_rows = [s for s in run.samples if s["role"] == "server" and m * 60 <= s["t"] < (m + 1) * 60]
        engine_rows = defaultdict(int)
        for s in run.samples:
            if s["role"] == "engine-core" and m * 60 <= s["t"] < (m + 1) * 60:
                engine_rows[s["t"]] += s["rss"]
        rss = f"{max(s['rss'] for s in server_rows) / 2**20:.0f}" if server_rows else "-"
        erss = f"{max(engine_rows.values()) / 2**20:.0f}" if engine_rows else "-"
        fds = (f"{max(s['fds'] or 0 for s in server_rows)} ({max(s['sockets'] or 0 for s in server_rows)})"
               if server_rows else "-")
        lines.append(f"| {m + 1} | {len(rs)} | {sum(r.cls not in ('ok', 'expected 4xx') for r in rs)} | "
                     f"{fmt_s(pct(good, 50))} | {fmt_s(pct(good, 90))} | {fmt_s(pct(good, 99))} | {rss} | {erss} | "
                     f"{fds} |")
    kinds = [k for k in mix.kinds if k not in EXPECT_4XX]
    lines += ["", "| kind | " + " | ".join(f"min {m + 1}" for m in range(minutes)) + " |",
              "|---|" + "---:|" * minutes]
    for kind in kinds:
        cells = []
        for m in range(minutes):
            good = [r.latency for r in by_kind.get(kind, []) if r.cls == "ok" and m * 60 <= r.t0 < (m + 1) * 60]
            cells.append(f"{fmt_s(pct(good, 50))} / {fmt_s(pct(good, 99))}" if good else "-")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")

    # resources
    lines += ["", "## Server processes", ""]
    if not run.samples:
        lines.append("Not sampled (no server pid: pass `--server-pid` with `--base-url`).")
    else:
        lines += ["RSS: median over the first window after the warm-up (base) and the last window (end); "
                  "descriptors: non-socket fds (files, pipes, eventfds) and sockets counted apart from /proc.", "",
                  "| process | pid | first RSS MiB | base | end | max | growth | non-socket fds min -> last max | "
                  "sockets max during run | sockets idle before / after |",
                  "|---|---:|---:|---:|---:|---:|---:|---|---:|---|"]
        for row in resources:
            if not row["evaluated"]:
                lines.append(f"| {row['role']} | {row['pid']} | not evaluated: {row['why']} | | | | | | | |")
                continue
            lines.append(f"| {row['role']} | {row['pid']} | {row['rss_first'] / 2**20:.0f} | "
                         f"{row['rss_base'] / 2**20:.0f} | {row['rss_end'] / 2**20:.0f} | {row['rss_max'] / 2**20:.0f} "
                         f"| {100 * row['growth']:+.1f}% | {row['fd_min_post']} -> {row['fd_max_end']} | "
                         f"{row['sockets_max']} | {row['sockets_idle_before']} / {row['sockets_idle_after']} |")
        changed = []
        for row in resources:
            if row.get("evaluated"):
                base, end = row["fd_kinds_base"], row["fd_kinds_end"]
                diff = [f"{k} {base.get(k, 0)} -> {end.get(k, 0)}" for k in sorted(set(base) | set(end))
                        if base.get(k, 0) != end.get(k, 0) and k != "socket"]
                if diff:
                    changed.append(f"{row['role']} {row['pid']}: {', '.join(diff)}")
        if changed:
            lines += ["", "Descriptors by kind, first sample after the warm-up -> last sample: " + "; ".join(changed)
                      + "."]
        roles = Counter()
        for s in run.samples:
            roles[(s["role"], s["pid"])] += 1
        gone = sorted({f"{role} {pid}" for (role, pid) in roles}
                      - {f"{row['role']} {row['pid']}" for row in resources})
        if gone:
            lines += ["", f"Also seen (not alive at the end, or not evaluated): {', '.join(gone)}."]

    lines += ["", "## Server log", ""]
    lines += server_log_summary(server.log if server else None) or ["Not available (external server)."]
    lines += ["", f"Files: `soak.json` (every request, sample and probe), `soak.png`"
              + (", `server.log`, `soak_config.json`" if server else "") + "."]
    return "\n".join(lines) + "\n"


def plot(path: Path, run: Run, mix: Mix, warmup: float, fault: Fault | None, duration: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(11, 10), sharex=True)
    bin_s = 30.0
    bins = max(1, math.ceil(max(duration, run.traffic_s) / bin_s))
    centres = [(i + 0.5) * bin_s / 60 for i in range(bins)]
    ax = axes[0]
    ax.set_prop_cycle(color=plt.cm.tab20.colors)
    for kind in mix.kinds:
        if kind in EXPECT_4XX:
            continue
        ys = []
        for i in range(bins):
            good = [r.latency for r in run.results if r.kind == kind and r.cls == "ok"
                    and i * bin_s <= r.t0 < (i + 1) * bin_s]
            ys.append(median(good) if good else math.nan)
        ax.plot(centres, ys, marker=".", label=kind)
    bad = [r for r in run.results if r.cls not in ("ok", "expected 4xx")]
    if bad:
        ax.scatter([r.t1 / 60 for r in bad], [max(r.latency, 0.01) for r in bad], marker="x", color="red",
                   label="not ok (at its end)", zorder=5)
    ax.set_yscale("log")
    ax.set_ylabel("latency s (median per 30 s)")
    ax.legend(fontsize=7, ncol=4)
    ax = axes[1]
    done = [sum(1 for r in run.results if i * bin_s <= r.t1 < (i + 1) * bin_s) for i in range(bins)]
    errors = [sum(1 for r in run.results if r.cls not in ("ok", "expected 4xx") and i * bin_s <= r.t1 < (i + 1) * bin_s)
              for i in range(bins)]
    ax.bar(centres, done, width=bin_s / 60 * 0.9, label="requests ended", color="tab:blue")
    ax.bar(centres, errors, width=bin_s / 60 * 0.9, label="not ok", color="tab:red")
    ax.set_ylabel("per 30 s")
    ax.legend(fontsize=8)
    ax = axes[2]
    series = defaultdict(dict)
    fds = {}
    for s in run.samples:
        series[s["role"]][s["t"]] = series[s["role"]].get(s["t"], 0) + s["rss"]
        if s["role"] == "server":
            fds[s["t"]] = s["fds"]
    for role, points in series.items():
        ts = sorted(points)
        ax.plot([t / 60 for t in ts], [points[t] / 2**20 for t in ts], label=f"{role} RSS")
    ax.set_ylabel("RSS MiB")
    ax.set_xlabel("minutes since the traffic started")
    if fds:
        twin = ax.twinx()
        ts = sorted(fds)
        twin.plot([t / 60 for t in ts], [fds[t] for t in ts], color="grey", linestyle=":", label="server fds")
        twin.set_ylabel("server fds")
        twin.legend(fontsize=8, loc="lower right")
    ax.legend(fontsize=8, loc="upper left")
    for ax in axes:
        ax.axvline(warmup / 60, color="grey", linestyle="--", linewidth=0.8)
        if fault:
            ax.axvline(fault.kill_t / 60, color="red", linestyle="--", linewidth=0.8)
            if fault.recovered_t is not None:
                ax.axvline(fault.recovered_t / 60, color="green", linestyle="--", linewidth=0.8)
    axes[0].set_title("soak: latency, throughput, server memory (grey: warm-up end; red: kill; green: recovered)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main -------------------------------------------------------------------------------------------------------

def parse_mix(text: str) -> dict[str, float]:
    weights = {k: float(w) for k, (_, w) in KINDS.items()}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in KINDS or not value:
            raise SystemExit(f"--mix: {part!r} is not KIND=WEIGHT with KIND one of {', '.join(KINDS)}")
        weights[name] = float(value)
    return weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600,
                        help="seconds of traffic (default 600); new requests stop then, in-flight ones finish")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="concurrent clients, each sending its next request as soon as the last ended (default 32)")
    parser.add_argument("--config", type=Path,
                        help="serve this braid config (YAML/TOML/JSON) instead of the generated one; host and port "
                             "are overridden (127.0.0.1, a free port)")
    parser.add_argument("--base-url", help="target a running server (e.g. http://127.0.0.1:8000) instead of "
                                           "starting one; resource sampling needs its pid (found from the "
                                           "listening port, or --server-pid)")
    parser.add_argument("--server-pid", type=int, help="pid of the --base-url server (for RSS, fds and the "
                                                       "engine-death injection)")
    parser.add_argument("--api-key", default=os.environ.get("BRAID_API_KEY"),
                        help="bearer token for the server (default: $BRAID_API_KEY)")
    parser.add_argument("--inject-engine-death", type=float, metavar="AT_SECONDS",
                        help="at this many seconds into the traffic, SIGKILL the server's vLLM EngineCore "
                             "process(es) (children whose name or command line contains 'EngineCore'); errors on "
                             "the vllm model(s) until recovery count as 'injected fault'")
    parser.add_argument("--mix", default="",
                        help="comma list KIND=WEIGHT changing the default weights (0 drops a kind); kinds: "
                             + ", ".join(f"{k} ({w})" for k, (_, w) in KINDS.items()))
    parser.add_argument("--seed", type=int, default=0, help="seed of the request mix (default 0)")
    parser.add_argument("--retries", type=int, default=2,
                        help="send a request answered 408/409/429/5xx again up to this many times, after its "
                             "Retry-After, as the openai client does (default 2, its max_retries; 0: judge the "
                             "first answer)")
    parser.add_argument("--timeout", type=float, default=120,
                        help="client deadline per request in seconds (default 120); reaching it is a HANG")
    parser.add_argument("--warmup", type=float,
                        help="warm-up seconds excluded from the RSS and descriptor goals (default: 20%% of --duration)")
    parser.add_argument("--sample-interval", type=float, default=5,
                        help="seconds between RSS / descriptor samples of the server's processes (default 5)")
    parser.add_argument("--fd-slack", type=int, default=8,
                        help="allowed descriptor drift: non-socket fds (last window max - post-warm-up min) and "
                             "sockets (idle after - idle before the run) (default 8)")
    parser.add_argument("--idle-wait", type=float, default=5,
                        help="seconds to wait after the traffic before the idle descriptor sample (default 5)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads of the started server (OMP_NUM_THREADS; 0: inherit / torch's default)")
    parser.add_argument("--startup-timeout", type=float, default=900,
                        help="seconds to wait for the started server's /health (default 900)")
    parser.add_argument("--out", type=Path, default=RESULTS / "soak",
                        help="folder for soak.md, soak.json, soak.png, server.log, soak_config.json "
                             "(default benchmarks/results/soak/)")
    args = parser.parse_args()
    weights = parse_mix(args.mix)
    warmup = args.warmup if args.warmup is not None else 0.2 * args.duration
    if args.inject_engine_death is not None and not 0 <= args.inject_engine_death < args.duration:
        raise SystemExit("--inject-engine-death must fall inside --duration")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the started server is stopped
    args.out.mkdir(parents=True, exist_ok=True)
    info = RunInfo.start(args.threads, external_url=args.base_url)

    server = None
    try:
        if args.base_url:
            root_url = args.base_url.rstrip("/").removesuffix("/v1")
            pid = args.server_pid or listening_pid(root_url)
            config_note = f"external, {root_url} (pid {pid or 'unknown'})"
        else:
            if args.config:
                config_path = args.config.resolve()
                config_note = f"started by the script: `braid serve --config {args.config}`"
            else:
                config_path = args.out / "soak_config.json"
                config_path.write_text(json.dumps(default_config(), indent=1))
                config_note = "started by the script with the generated `soak_config.json`"
            server = OwnServer(config_path, args.out, args.threads, args.startup_timeout)
            root_url, pid = server.root, server.pid
            config_note += f" (healthy after {server.startup_s:.0f} s; log `server.log`)"
        if args.inject_engine_death is not None and not pid:
            raise SystemExit("--inject-engine-death needs the server's pid (--server-pid)")
        headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
        cards = httpx.get(f"{root_url}/v1/models", headers=headers, timeout=30).json()["data"]
        mix = Mix(cards, weights, args.seed)
        print(f"models: {', '.join(c['id'] + ' (' + str(c.get('engine')) + ')' for c in cards)}; "
              f"mix: {', '.join(f'{k} {w:g}' for k, w in mix.kinds.items())}"
              + (f"; left out: {', '.join(mix.skipped)}" if mix.skipped else ""), file=sys.stderr)
        run = asyncio.run(run_traffic(args, root_url, pid, mix, headers))
        normalise_roles(run)
        seen = {s["pid"] for s in run.samples} | {k["pid"] for k in (run.kill or {}).get("killed", [])}
        seen |= {c for k in (run.kill or {}).get("killed", []) for c in k["children"]}
    finally:
        if server:
            server.stop()
    leftovers = []
    if server:
        deadline = time.monotonic() + 30  # the server's children get this long to exit after it did
        for p in sorted(seen - {server.pid}):
            try:
                process = psutil.Process(p)
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except psutil.TimeoutExpired:
                leftovers.append(f"{p} `{' '.join(process.cmdline()).strip()[:60]}`")
                process.kill()
            except psutil.Error:
                pass
    info.finish()
    fault = analyse_fault(run, cards)
    resources = resource_goals(run, args.duration, warmup, args.fd_slack) if pid else []
    goals = verdict(args, run, fault, resources, pid)
    text = report(args, info, run, cards, mix, fault, resources, goals, server, config_note, warmup, leftovers)
    (args.out / "soak.md").write_text(text)
    (args.out / "soak.json").write_text(json.dumps({
        "run": info.as_dict(), "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "models": cards, "mix": mix.kinds, "warmup_s": warmup, "traffic_s": run.traffic_s,
        "requests": [{**asdict(r), "latency": r.latency} for r in run.results], "samples": run.samples,
        "idle_before": run.idle_before, "idle_after": run.idle_after, "health": run.health, "metrics": run.metrics,
        "idle_metrics": run.idle_metrics, "kill": run.kill, "fault": asdict(fault) if fault else None, "resources": resources,
        "goals": [{"goal": g, "measured": m, "ok": ok} for g, m, ok in goals]}, indent=1, default=str))
    plot(args.out / "soak.png", run, mix, warmup, fault, args.duration)
    ok_all = all(ok for _, _, ok in goals)
    print(f"\nsoak: {'PASS' if ok_all else 'FAIL'}: {len(run.results)} requests in {run.traffic_s:.0f} s")
    for goal, measured, ok in goals:
        print(f"  [{'ok' if ok else 'FAIL'}] {goal}: {measured}")
    print(f"written: {args.out / 'soak.md'}, soak.json, soak.png")
    sys.exit(0 if ok_all else 1)


if __name__ == "__main__":
    main()
