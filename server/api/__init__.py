"""The OpenAI-compatible HTTP surface: ``routes`` (FastAPI, SSE, error objects) -> ``serving_*``
(requests -> engine calls -> responses) -> ``protocol`` (the pydantic request/response models).

Public: the app (`build_app`, `run_server`), the request models that carry Braid's extension
blocks, and the error values other layers raise (`bad_request`, `not_found`). Every other module
here is internal to the API layer.
"""
from .._lazy import lazy_exports

__all__ = ["build_app", "run_server", "ChatCompletionRequest", "CompletionRequest", "ChatMessage",
           "ContrastiveParams", "SteerParams", "APIError", "bad_request", "not_found"]

__getattr__, __dir__ = lazy_exports(__name__, __all__, {
    ".app": ["build_app", "run_server"],
    ".protocol": ["ChatCompletionRequest", "CompletionRequest", "ChatMessage", "ContrastiveParams", "SteerParams"],
    ".errors": ["APIError", "bad_request", "not_found"],
})
