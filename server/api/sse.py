"""Server-sent events: pydantic chunks -> ``data: ...`` lines, errors as a final event."""
from __future__ import annotations

import logging
from typing import AsyncIterator

from pydantic import BaseModel

from .errors import APIError

log = logging.getLogger(__name__)


async def sse_events(chunks: AsyncIterator[BaseModel]) -> AsyncIterator[str]:
    try:
        async for chunk in chunks:
            yield f"data: {chunk.model_dump_json(exclude_none=False)}\n\n"
    except APIError as exc:
        yield f"data: {exc.to_response().model_dump_json()}\n\n"
    except Exception as exc:  # a failure mid-stream: tell the client, then end the stream cleanly
        log.exception("stream failed")
        error = APIError(500, f"generation failed: {type(exc).__name__}: {exc}", "internal_server_error")
        yield f"data: {error.to_response().model_dump_json()}\n\n"
    yield "data: [DONE]\n\n"
