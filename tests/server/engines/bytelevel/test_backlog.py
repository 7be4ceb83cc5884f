"""The byte-level worker refuses work it could not finish within ``max_backlog_s``, before the response.

The server test slows every byte position the engine reads by a known delay (the fault hook's
``BRAID_TEST_BYTE_DELAY_S``), forbids END so every request runs to ``max_tokens``, and checks the
refusals against the arithmetic of positions x delay written here.
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import time
from pathlib import Path

import httpx
import pytest

from braid.server.engines.bytelevel.backlog import RESERVATION_S, Backlog, ByteCost, Work
from braid.server.engines.base import EngineUnavailable
from server_process import start_server, stop_server
from tiny_models import build_tiny_llama

FAULT_HOOK = Path(__file__).parents[2] / "models" / "fault_hook"
DELAY = 0.25  # seconds per byte position
LIMIT = 5.0  # max_backlog_s
NO_END = {"256": -100}  # END is byte-level id 256


def test_work_left_counts_prompt_and_expected_output():
    cost = ByteCost(seconds_per_byte=0.5, output_bytes=10.0)
    assert Work(cost, prompt_left=4, max_tokens=30).seconds_left() == pytest.approx((4 + 10) * 0.5)
    assert Work(cost, prompt_left=4, max_tokens=6).seconds_left() == pytest.approx((4 + 6) * 0.5)
    assert Work(cost, prompt_left=0, max_tokens=30, generated=7).seconds_left() == pytest.approx(3 * 0.5)
    # past the expected length: as long again, within max_tokens
    assert Work(cost, prompt_left=0, max_tokens=30, generated=12).seconds_left() == pytest.approx(10 * 0.5)
    assert Work(cost, prompt_left=0, max_tokens=30, generated=25).seconds_left() == pytest.approx(5 * 0.5)


def test_running_means_weight_the_newest_by_a_fifth():
    cost = ByteCost()
    cost.observe_step(2.0, 4)
    cost.observe_step(1.0, 1)
    assert cost.seconds_per_byte == pytest.approx(0.8 * 0.5 + 0.2 * 1.0)
    cost.observe_step(5.0, 0)  # no positions (opening a request): no price
    assert cost.seconds_per_byte == pytest.approx(0.6)


def test_backlog_refuses_only_past_the_limit_and_never_when_idle():
    cost = ByteCost(seconds_per_byte=1.0)
    backlog = Backlog()
    huge = [Work(cost, 100, 100)]
    backlog.check(huge, 5.0, "m")  # idle: accepted whatever it costs
    running = backlog.claim("a", Work(cost, 0, 3))
    backlog.check([Work(cost, 1, 1)], 5.0, "m")  # 3 + 2 = 5: fits
    with pytest.raises(EngineUnavailable, match="max_backlog_s") as refused:
        backlog.check([Work(cost, 1, 1), Work(cost, 0, 1), Work(cost, 1, 1)], 5.0, "m")  # 3 + 2 + 1 + 2 > 5
    assert refused.value.retry_after == 3.0  # once 3 of the 3 s ahead are done, the 5 s fit
    with pytest.raises(EngineUnavailable) as alone_too_big:
        backlog.check(huge, 5.0, "m")
    assert alone_too_big.value.retry_after == 3.0  # larger than the limit: wait for the idle worker
    backlog.check(huge, None, "m")  # no limit
    backlog.remove(running)
    backlog.check(huge, 5.0, "m")


def test_admitted_work_counts_from_admission_and_lapses_if_never_started(monkeypatch):
    cost = ByteCost(seconds_per_byte=1.0)
    backlog = Backlog()
    backlog.reserve("a", Work(cost, 0, 4))
    assert backlog.seconds() == 4.0  # two requests admitted together see each other
    assert backlog.claim("a", Work(cost, 0, 99)).max_tokens == 4  # the reservation is what runs
    assert backlog.seconds() == 4.0
    backlog.reserve("b", Work(cost, 0, 2))
    later = time.monotonic() + RESERVATION_S + 1
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert backlog.seconds() == 4.0  # "b" never started: it no longer counts


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model_dir = build_tiny_llama(tmp_path_factory.mktemp("tiny"), max_position_embeddings=2048)
    workdir = tmp_path_factory.mktemp("backlog-server")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(FAULT_HOOK), os.environ.get("PYTHONPATH")])),
           "BRAID_TEST_BYTE_DELAY_S": str(DELAY)}
    settings = {"models": [{"id": "bytes", "kind": "bytelevel", "source": str(model_dir), "dtype": "float32",
                            "max_backlog_s": LIMIT}]}
    handle = start_server(settings, workdir, env=env)
    yield handle
    stop_server(handle)


def _body(prompt: str, max_tokens: int, stream: bool = False) -> dict:
    return {"model": "bytes", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "logit_bias": NO_END, "stream": stream}


async def test_a_request_the_worker_cannot_finish_in_time_gets_503_before_the_response(server):
    async with httpx.AsyncClient(base_url=server.root_url, timeout=120) as client:
        warm = await client.post("/v1/completions", json=_body("ab", 12))  # prices a byte, and a reply (12 bytes)
        assert warm.status_code == 200, warm.text
        assert len(warm.json()["choices"][0]["text"].encode("latin-1", "ignore")) <= 12

        async with client.stream("POST", "/v1/completions", json=_body("ab", 12, stream=True)) as running:
            lines = running.aiter_lines()
            async for line in lines:  # the first byte is out: the prompt is walked, 11 bytes remain
                if line.startswith("data: {"):
                    break
            ahead = 11 * DELAY

            # 8 prompt + 12 output positions: ahead + 20 * DELAY > LIMIT
            refused = await client.post("/v1/completions", json=_body("abcdefgh", 12))
            refused_at = time.monotonic()
            assert refused.status_code == 503, refused.text
            error = refused.json()["error"]
            assert error["type"] == "service_unavailable_error" and "max_backlog_s" in error["message"]
            retry_after = int(refused.headers["Retry-After"])  # its 5 s fit once the running request is done
            assert 1 <= retry_after <= math.ceil(2 * ahead)

            streamed = await client.post("/v1/completions", json=_body("abcdefgh", 12, stream=True))
            assert streamed.status_code == 503  # a status, not a 200 whose stream then fails
            assert streamed.headers["content-type"].startswith("application/json")

            # 1 prompt + 1 output position: ahead + 2 * DELAY < LIMIT, so it is accepted meanwhile
            small = await client.post("/v1/completions", json=_body("a", 1))
            assert small.status_code == 200, small.text

            done = False
            async for line in lines:
                if line == "data: [DONE]":
                    done = True
                    break
                if line.startswith("data: "):
                    assert "error" not in json.loads(line[len("data: "):]), line
            assert done
            drained = time.monotonic() - refused_at
        # Retry-After estimated when the running request would end: within two seconds of when it did
        assert abs(retry_after - drained) <= 2.0, (retry_after, drained)

        again = await client.post("/v1/completions", json=_body("abcdefgh", 12))
        assert again.status_code == 200, again.text


async def test_requests_take_the_worker_in_turn_and_those_accepted_finish_within_the_limit(server):
    """Six requests of 6 positions (1.5 s each) at once: they are admitted while the work ahead plus
    their own fits in LIMIT (three, or two if a position costs a little over DELAY), the rest
    refused; the accepted ones run one after the other, so each ends 1.5 s after the one before,
    the last within LIMIT. (Served in interleaved turns they would all end together, at the end.)"""
    async with httpx.AsyncClient(base_url=server.root_url, timeout=120) as client:
        assert (await client.post("/v1/completions", json=_body("ab", 4))).status_code == 200  # prices a byte
        began = time.monotonic()

        async def one():
            response = await client.post("/v1/completions", json=_body("ab", 4))
            return response.status_code, time.monotonic() - began

        results = await asyncio.gather(*(one() for _ in range(6)))
    statuses = [status for status, _ in results]
    assert set(statuses) <= {200, 503} and 2 <= statuses.count(200) <= 3, results
    ends = sorted(seconds for status, seconds in results if status == 200)
    assert ends[-1] <= LIMIT + 1.5, results
    assert all(later - earlier >= 0.8 * 6 * DELAY for earlier, later in zip(ends, ends[1:])), results
