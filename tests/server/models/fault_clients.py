"""What the fault tests do as clients: streams read to their last event, health polls, metrics."""
from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field

import httpx

FAULT_HOOK = __import__("pathlib").Path(__file__).parent / "fault_hook"


@dataclass
class StreamResult:
    events: list = field(default_factory=list)  # parsed JSON chunks, then "[DONE]" if it came
    first: asyncio.Event = field(default_factory=asyncio.Event)  # set once a chunk with text arrived

    @property
    def done_last(self) -> bool:
        return bool(self.events) and self.events[-1] == "[DONE]"

    @property
    def errors(self) -> list[dict]:
        return [e["error"] for e in self.events if isinstance(e, dict) and "error" in e]

    @property
    def finish_reasons(self) -> list[str]:
        return [c["finish_reason"] for e in self.events if isinstance(e, dict) and "choices" in e
                for c in e["choices"] if c.get("finish_reason")]


async def read_stream(client: httpx.AsyncClient, body: dict, result: StreamResult) -> StreamResult:
    async with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: "):]
            result.events.append(data if data == "[DONE]" else json.loads(data))
            if data != "[DONE]" and "choices" in result.events[-1]:
                result.first.set()
    return result


async def start_streams(client: httpx.AsyncClient, body: dict, count: int,
                        producing: int | None = None) -> list[tuple[asyncio.Task, StreamResult]]:
    """``count`` streams; when this returns, the first ``producing`` (default: all) produce text
    (the rest are queued: a byte-level model runs one request at a time)."""
    streams = []
    for _ in range(count):
        result = StreamResult()
        streams.append((asyncio.create_task(read_stream(client, body, result)), result))
    producing = count if producing is None else producing
    await asyncio.wait_for(asyncio.gather(*(r.first.wait() for _, r in streams[:producing])), 120)
    return streams


async def wait_health(client: httpx.AsyncClient, status: int, timeout: float,
                      answer_within: float = 2.0) -> tuple[float, dict]:
    """Poll /health until it answers ``status``: (seconds it took, its body). Every answer must
    come within ``answer_within`` seconds: a server busy restarting an engine still answers."""
    began = time.monotonic()
    while True:
        asked = time.monotonic()
        response = await client.get("/health")
        assert time.monotonic() - asked < answer_within, f"/health took {time.monotonic() - asked:.1f} s to answer"
        if response.status_code == status:
            return time.monotonic() - began, response.json()
        if time.monotonic() - began > timeout:
            raise AssertionError(f"/health still {response.status_code} after {timeout} s: {response.text}")
        await asyncio.sleep(0.05)


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition, by name and exact labels."""
    for line in text.splitlines():
        match = re.fullmatch(r"([^{\s]+)(?:\{(.*)\})?\s+(\S+)", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    raise AssertionError(f"no sample {name}{labels} in the metrics")
