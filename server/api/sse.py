"""Server-sent events: pydantic chunks -> ``data: ...`` lines, errors as a final event."""
from __future__ import annotations

import logging
from typing import AsyncIterator

from pydantic import BaseModel

from ..engines.base import EngineUnavailable
from .errors import APIError, unavailable

log = logging.getLogger(__name__)


async def sse_events(chunks: AsyncIterator[BaseModel]) -> AsyncIterator[str]:
    try:
        async for chunk in chunks:
            yield f"data: {chunk.model_dump_json(exclude_none=False)}\n\n"
    except APIError as exc:
        yield f"data: {exc.to_response().model_dump_json()}\n\n"
    except EngineUnavailable as exc:  # the engine failed or the server is stopping: 503, not a bug
        log.warning("stream ended: %s", exc)
        yield f"data: {unavailable(exc).to_response().model_dump_json()}\n\n"
    except Exception as exc:  # a failure mid-stream: tell the client, then end the stream cleanly
        log.exception("stream failed")
        error = APIError(500, f"generation failed: {type(exc).__name__}: {exc}", "internal_server_error")
        yield f"data: {error.to_response().model_dump_json()}\n\n"
    yield "data: [DONE]\n\n"
