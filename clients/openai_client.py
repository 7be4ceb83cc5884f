"""Async client for Braid or any OpenAI-compatible server, with retries and timeouts (httpx).

    async with AsyncOpenAIClient("http://127.0.0.1:8000") as client:
        reply = await client.chat([{"role": "user", "content": "hi"}], model="smollm2")
        print(reply["choices"][0]["message"]["content"])

Connection errors, timeouts, 408, 429 and 5xx responses are retried with exponential backoff
(honouring Retry-After, capped); other 4xx responses raise `OpenAIStatusError` at once.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

__all__ = ["AsyncOpenAIClient", "OpenAIClientError", "OpenAIConnectionError", "OpenAIStatusError", "RetryPolicy",
           "normalize_base_url"]

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class OpenAIClientError(Exception):
    """Base class: the request failed (after any retries)."""


class OpenAIConnectionError(OpenAIClientError):
    """The server could not be reached or did not answer in time."""


class OpenAIStatusError(OpenAIClientError):
    def __init__(self, status_code: int, message: str, body: Any = None):
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code, self.message, self.body = status_code, message, body


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    """Retries after the first attempt (0 disables retrying)."""
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    jitter: float = 0.25
    """Each delay is scaled by a random factor in [1 - jitter, 1]."""

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.initial_backoff_s < 0 or self.max_backoff_s < 0 or not 0 <= self.jitter <= 1:
            raise ValueError(f"invalid RetryPolicy {self}: counts and delays must be >= 0, jitter in [0, 1]")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        base = retry_after if retry_after is not None else self.initial_backoff_s * 2 ** attempt
        return min(base, self.max_backoff_s) * (1 - self.jitter * random.random())


def normalize_base_url(url: str) -> str:
    """'http://host:8000' -> 'http://host:8000/v1'; a URL that already has a path is kept."""
    url = url.rstrip("/")
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"base URL needs a scheme (http:// or https://): {url!r}")
    return url + "/v1" if urlsplit(url).path in ("", "/") else url


def _retry_after_seconds(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return None


def _error_message(response: httpx.Response) -> tuple[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase, None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and "message" in error:
        return str(error["message"]), body
    return str(body)[:500], body


class AsyncOpenAIClient:
    def __init__(self, base_url: str, api_key: str | None = None, *, timeout_s: float = 120.0,
                 connect_timeout_s: float = 5.0, retry: RetryPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.base_url = normalize_base_url(base_url)
        self.retry = retry or RetryPolicy()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=self.base_url + "/", headers=headers, transport=transport,
                                       timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s))

    async def __aenter__(self) -> AsyncOpenAIClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, json: dict[str, Any] | None = None) -> Any:
        """Sends one request (retrying transient failures) and returns the decoded JSON body."""
        for attempt in range(self.retry.max_retries + 1):
            last = attempt == self.retry.max_retries
            try:
                response = await self._http.request(method, path.lstrip("/"), json=json)
            except httpx.TransportError as exc:  # connect errors, timeouts, dropped connections
                if last:
                    raise OpenAIConnectionError(f"{method} {self.base_url}/{path.lstrip('/')}: "
                                                f"{type(exc).__name__}: {exc}") from exc
                await asyncio.sleep(self.retry.delay(attempt))
                continue
            if response.status_code in RETRYABLE_STATUSES and not last:
                await asyncio.sleep(self.retry.delay(attempt, _retry_after_seconds(response)))
                continue
            if response.is_error:
                message, body = _error_message(response)
                raise OpenAIStatusError(response.status_code, message, body)
            try:
                return response.json()
            except ValueError as exc:
                raise OpenAIClientError(f"{method} {path}: the response is not JSON") from exc
        raise AssertionError("unreachable")

    async def chat(self, messages: list[dict[str, Any]], model: str, **params: Any) -> dict[str, Any]:
        """POST /chat/completions (non-streaming); `params` are OpenAI/Braid request fields."""
        return await self.request("POST", "chat/completions", {"model": model, "messages": messages, **params})

    async def complete(self, prompt: str, model: str, **params: Any) -> dict[str, Any]:
        """POST /completions (non-streaming)."""
        return await self.request("POST", "completions", {"model": model, "prompt": prompt, **params})

    async def models(self) -> list[str]:
        """Ids of the served models (GET /models)."""
        body = await self.request("GET", "models")
        return [m["id"] for m in body.get("data", [])]
