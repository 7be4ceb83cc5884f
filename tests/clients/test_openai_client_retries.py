"""AsyncOpenAIClient against a fault-injecting local OpenAI-compatible server."""
from __future__ import annotations

import socket
import time

import pytest
from fake_openai_server import FakeOpenAI, running_fake_openai

from braid.clients.openai_client import (AsyncOpenAIClient, OpenAIConnectionError, OpenAIStatusError, RetryPolicy,
                                         normalize_base_url)

FAST_RETRY = RetryPolicy(max_retries=3, initial_backoff_s=0.01, max_backoff_s=0.05)
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def fake():
    with running_fake_openai() as server:
        yield server


@pytest.fixture(autouse=True)
def _reset(fake):
    fake.faults.clear()
    fake.requests.clear()


async def test_retries_429_and_5xx_then_succeeds(fake):
    fake.faults[:] = [429, 503, 500]
    async with AsyncOpenAIClient(fake.url, retry=FAST_RETRY) as client:
        reply = await client.chat(MESSAGES, model="fake-model")
    assert reply["choices"][0]["message"]["content"] == "echo: hi"
    assert fake.requests == ["/v1/chat/completions"] * 4


async def test_gives_up_after_max_retries_with_the_last_status(fake):
    fake.faults[:] = [502] * 10
    async with AsyncOpenAIClient(fake.url, retry=RetryPolicy(max_retries=2, initial_backoff_s=0.01)) as client:
        with pytest.raises(OpenAIStatusError) as info:
            await client.complete("x", model="fake-model")
    assert info.value.status_code == 502 and info.value.message == "injected 502"
    assert len(fake.requests) == 3


async def test_client_errors_are_not_retried(fake):
    fake.faults[:] = [400, 400]
    async with AsyncOpenAIClient(fake.url, retry=FAST_RETRY) as client:
        with pytest.raises(OpenAIStatusError, match="HTTP 400"):
            await client.models()
    assert len(fake.requests) == 1


async def test_a_read_timeout_is_retried(fake):
    fake.faults[:] = [1.0]  # the first answer comes after 1 s; the client waits 0.3 s
    async with AsyncOpenAIClient(fake.url, timeout_s=0.3, retry=FAST_RETRY) as client:
        assert await client.models() == ["fake-model"]
    assert len(fake.requests) == 2


async def test_connection_errors_are_retried_with_backoff_then_raised():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    policy = RetryPolicy(max_retries=2, initial_backoff_s=0.1, max_backoff_s=1.0, jitter=0.0)
    started = time.monotonic()
    async with AsyncOpenAIClient(f"http://127.0.0.1:{port}", retry=policy) as client:
        with pytest.raises(OpenAIConnectionError, match="ConnectError"):
            await client.models()
    assert time.monotonic() - started >= 0.3  # 0.1 + 0.2 s of backoff


def test_base_url_normalisation_and_policy_validation():
    assert normalize_base_url("http://h:8000") == "http://h:8000/v1"
    assert normalize_base_url("http://h:8000/v1/") == "http://h:8000/v1"
    assert normalize_base_url("https://h/openai/v1") == "https://h/openai/v1"
    with pytest.raises(ValueError, match="scheme"):
        normalize_base_url("localhost:8000")
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)
    assert RetryPolicy(initial_backoff_s=1, max_backoff_s=4, jitter=0).delay(5) == 4
    assert RetryPolicy(jitter=0).delay(0, retry_after=2.0) == 2.0
