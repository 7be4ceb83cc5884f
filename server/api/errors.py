"""Errors as values: every failure the API reports is an ``APIError`` with an HTTP status."""
from __future__ import annotations

from dataclasses import dataclass

from .protocol import ErrorInfo, ErrorResponse

__all__ = ["APIError", "bad_request", "not_found", "overloaded", "unavailable"]


@dataclass
class APIError(Exception):
    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    retry_after: float | None = None  # seconds, sent as the Retry-After header

    def headers(self) -> dict[str, str] | None:
        return None if self.retry_after is None else {"Retry-After": str(max(1, round(self.retry_after)))}

    def to_response(self) -> ErrorResponse:
        return ErrorResponse(error=ErrorInfo(message=self.message, type=self.type, param=self.param, code=self.status))


def bad_request(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, "invalid_request_error", param)


def not_found(message: str, param: str | None = None) -> APIError:
    return APIError(404, message, "not_found_error", param)


def overloaded(message: str) -> APIError:
    return APIError(503, message, "service_unavailable_error")


def unavailable(exc: Exception) -> APIError:
    """503 for an engine that cannot serve now (``EngineUnavailable``)."""
    return APIError(503, str(exc), "service_unavailable_error", None, getattr(exc, "retry_after", None))
