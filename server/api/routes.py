"""HTTP routes: FastAPI endpoints mapping serving results to JSON, SSE or OpenAI error objects."""
from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any, AsyncIterator

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..engines.base import EngineError, EngineUnavailable
from .errors import APIError, bad_request, not_found, unavailable
from ..models.supervisor import EngineState
from .protocol import (ChatCompletionRequest, CompletionRequest, DetokenizeRequest, DetokenizeResponse, HealthResponse,
                       ModelCard, ModelHealth, ModelList, TokenizeRequest, TokenizeResponse)
from .serving_chat import render_chat

log = logging.getLogger(__name__)
router = APIRouter()


def _state(request: Request):
    return request.app.state


def _workflow_id(raw: Request, model: str) -> bool:
    workflows = _state(raw).workflow_serving
    return workflows is not None and workflows.serves(model)


async def require_api_key(request: Request) -> None:
    key = request.app.state.settings.api_key
    if key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), key):
        raise APIError(401, "Invalid or missing API key: send `Authorization: Bearer <key>`.", "authentication_error")


def _error(exc: APIError) -> JSONResponse:
    return JSONResponse(exc.to_response().model_dump(), status_code=exc.status, headers=exc.headers())


async def _unless_disconnected(raw: Request, work) -> Any:
    """Run ``work``; cancel it (freeing engine slots) if the client goes away first."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=0.5)
        if done:
            return task.result()
        if await raw.is_disconnected():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            log.info("client disconnected; request cancelled")
            return Response(status_code=499)


async def _respond(raw: Request, serving, request) -> Response:
    result = await _unless_disconnected(raw, serving.create(request))
    if isinstance(result, Response):
        return result
    if isinstance(result, AsyncIterator):
        return StreamingResponse(result, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return JSONResponse(result.model_dump())


@router.post("/v1/completions", dependencies=[Depends(require_api_key)])
async def completions(request: CompletionRequest, raw: Request) -> Response:
    if _workflow_id(raw, request.model):
        raise bad_request(f"workflows answer chat completions only: {request.model!r} is a workflow; "
                          "POST /v1/chat/completions", "model")
    await _state(raw).registry.ready(request.model)  # while its engine restarts: wait a while, else 503
    return await _respond(raw, _state(raw).completion_serving, request)


@router.post("/v1/chat/completions", dependencies=[Depends(require_api_key)])
async def chat_completions(request: ChatCompletionRequest, raw: Request) -> Response:
    workflows = _state(raw).workflow_serving
    if workflows is not None:
        if workflows.serves(request.model):
            return await _respond(raw, workflows, request)
        models = sorted(m.config.id for m in _state(raw).registry.all())
        if request.model not in models:
            raise not_found(f"The model `{request.model}` does not exist. Served models: {models}; "
                            f"workflows: {workflows.ids()}", "model")
    await _state(raw).registry.ready(request.model)
    return await _respond(raw, _state(raw).chat_serving, request)


@router.get("/v1/models", dependencies=[Depends(require_api_key)])
async def models(raw: Request) -> ModelList:
    cards = [ModelCard(id=m.config.id, root=m.path, max_model_len=m.engine.max_model_len, engine=m.config.engine)
             for m in _state(raw).registry.all()]
    workflows = _state(raw).workflow_serving
    return ModelList(data=cards + (workflows.cards() if workflows is not None else []))


@router.post("/tokenize", dependencies=[Depends(require_api_key)])
async def tokenize(request: TokenizeRequest, raw: Request) -> TokenizeResponse:
    engine = _state(raw).registry.get(request.model).engine
    if (request.prompt is None) == (request.messages is None):
        raise bad_request("send exactly one of `prompt` or `messages`", "prompt")
    if request.messages is not None:
        tokens = render_chat(engine.tokenizer, request.messages, request.add_generation_prompt)
    else:
        tokens = engine.tokenizer.encode(request.prompt, add_special_tokens=request.add_special_tokens)
    return TokenizeResponse(count=len(tokens), max_model_len=engine.max_model_len, tokens=tokens)


@router.post("/detokenize", dependencies=[Depends(require_api_key)])
async def detokenize(request: DetokenizeRequest, raw: Request) -> DetokenizeResponse:
    engine = _state(raw).registry.get(request.model).engine
    vocab = len(engine.tokenizer)
    bad = [t for t in request.tokens if not 0 <= t < vocab]
    if bad:
        raise bad_request(f"token ids {bad[:10]} are outside the vocabulary (size {vocab})", "tokens")
    return DetokenizeResponse(prompt=engine.tokenizer.decode(request.tokens))


@router.get("/health")
async def health(raw: Request) -> JSONResponse:
    """200 while the server serves and every model's engine is ready; else 503 saying why."""
    state = _state(raw)
    models = state.registry.health()
    if state.lifecycle.draining:
        status = "draining"
    elif not models and state.workflow_serving is None:
        status = "no models"
    else:
        status = "ok" if all(h.state is EngineState.READY for h in models.values()) else "unavailable"
    body = HealthResponse(status=status, models={model: ModelHealth(state=h.state.value, reason=h.reason,
                                                                    restarts=h.restarts)
                                                 for model, h in models.items()})
    return JSONResponse(body.model_dump(), status_code=200 if status == "ok" else 503)


@router.get("/metrics")
async def metrics(raw: Request) -> Response:
    return Response(generate_latest(_state(raw).metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        return f"request body is not valid JSON: {first.get('msg')}", None
    return f"{param + ': ' if param else ''}{first.get('msg')}" + (f" (and {len(errors) - 1} more errors)"
                                                                  if len(errors) > 1 else ""), param


def install_routes(app: FastAPI) -> None:
    app.include_router(router)

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(EngineError)
    async def _engine_error(_: Request, exc: EngineError) -> JSONResponse:
        return _error(bad_request(str(exc), getattr(exc, "param", None)))

    @app.exception_handler(EngineUnavailable)
    async def _engine_unavailable(_: Request, exc: EngineUnavailable) -> JSONResponse:
        log.warning("503: %s", exc)
        return _error(unavailable(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return _error(bad_request(message, param))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error(APIError(exc.status_code, str(exc.detail), kind))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(APIError(500, f"internal error: {type(exc).__name__}: {exc}", "internal_server_error"))
