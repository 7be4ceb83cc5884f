"""SIGTERM drains a real `braid serve`: no new requests (503), requests in flight finish (or, past
the drain timeout, end with an error event), and the process exits 0."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))  # the fault tests' client helpers and hook

from fault_clients import FAULT_HOOK, start_streams, wait_health  # noqa: E402
from server_process import start_server, stop_server  # noqa: E402

API_KEY = "drain-key"


def _serve(model_dir, workdir, drain_timeout_s: float, step_delay_s: float = 0.02):
    settings = {"api_key": API_KEY, "log_level": "info", "drain_timeout_s": drain_timeout_s,
                "models": [{"id": "tiny", "source": str(model_dir), "engine": "transformers", "dtype": "float32",
                            "max_num_seqs": 8}]}
    # A slowed engine step (fault_hook), so the streams are surely running when the signal comes.
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(FAULT_HOOK), os.environ.get("PYTHONPATH")])),
           "BRAID_TEST_STEP_DELAY_S": str(step_delay_s), "OMP_NUM_THREADS": "1"}
    return start_server(settings, workdir, env=env)


def _client(handle) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=handle.root_url, headers=handle.headers(), timeout=120)


async def _terminate_during_streams(client, handle, max_tokens: int):
    """Three streams running, then SIGTERM to the server process (as Kubernetes and Docker send it)."""
    body = {"model": "tiny", "prompt": "hello", "max_tokens": max_tokens, "ignore_eos": True, "temperature": 0,
            "stream_options": {"include_usage": True}}
    streams = await start_streams(client, body, 3)
    handle.process.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    return streams


async def test_sigterm_lets_requests_in_flight_finish_and_exits_0(tiny_llama_dir, tmp_path):
    handle = _serve(tiny_llama_dir, tmp_path, drain_timeout_s=60)
    try:
        async with _client(handle) as client:
            streams = await _terminate_during_streams(client, handle, max_tokens=150)
            late = await client.post("/v1/completions", json={"model": "tiny", "prompt": "hi", "max_tokens": 2})
            assert late.status_code == 503, late.text
            assert late.json()["error"]["type"] == "service_unavailable_error"
            _, health = await wait_health(client, 503, timeout=1)
            assert health["status"] == "draining"
            for task, result in streams:
                await asyncio.wait_for(task, 60)
                assert result.errors == [] and result.finish_reasons == ["length"], result.events[-3:]
                assert result.done_last
                assert result.events[-2]["usage"]["completion_tokens"] == 150  # the whole completion
        assert await asyncio.to_thread(handle.process.wait, 30) == 0, handle.log_tail()
    finally:
        stop_server(handle)


async def test_past_the_drain_timeout_streams_end_with_an_error_event_and_the_exit_is_0(tiny_llama_dir, tmp_path):
    handle = _serve(tiny_llama_dir, tmp_path, drain_timeout_s=1)
    try:
        async with _client(handle) as client:
            streams = await _terminate_during_streams(client, handle, max_tokens=400)  # ~10 s: past the timeout
            for task, result in streams:
                await asyncio.wait_for(task, 30)
                assert result.done_last and result.finish_reasons == [], result.events[-3:]
                error = result.events[-2]["error"]
                assert error["code"] == 503 and "drain timeout" in error["message"], error
        assert await asyncio.to_thread(handle.process.wait, 30) == 0, handle.log_tail()
    finally:
        stop_server(handle)


async def test_a_second_signal_stops_at_once(tiny_llama_dir, tmp_path):
    handle = _serve(tiny_llama_dir, tmp_path, drain_timeout_s=120, step_delay_s=0.1)
    try:
        async with _client(handle) as client:
            streams = await _terminate_during_streams(client, handle, max_tokens=400)  # 40 s at 0.1 s a step
            handle.process.send_signal(signal.SIGINT)  # the operator insists: no waiting for the streams
            await asyncio.to_thread(handle.process.wait, 20)
            for task, _ in streams:
                task.cancel()
            await asyncio.gather(*(t for t, _ in streams), return_exceptions=True)
    finally:
        stop_server(handle)
