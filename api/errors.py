"""Request-level errors of the batch-inserts API and the middleware that renders them.

Body: ``{"error": {"code", "message", "details"}}``. Other front doors keep their own
formats (FOLIO's ``errors`` list, Gemini's ``status: error``) by registering a renderer
for their path prefix.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from api.openapi import Answer
from api.responses import json_response
from batchline.text import holds_nul
from sql.db import is_transient

log = logging.getLogger(__name__)


class ErrorCode(StrEnum):
    INVALID_JSON = "invalid_json"
    INVALID_REQUEST = "invalid_request"
    UNKNOWN_TENANT = "unknown_tenant"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    VALIDATION_FAILED = "validation_failed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    BATCH_PROCESSING = "batch_processing"
    IDEMPOTENCY_KEY_IN_FLIGHT = "idempotency_key_in_flight"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    REQUEST_TIMEOUT = "request_timeout"
    SERVICE_UNAVAILABLE = "service_unavailable"
    REPLAY_FINISHED = "replay_finished"
    INTERNAL_ERROR = "internal_error"


class ErrorDetail(BaseModel):
    code: ErrorCode
    message: str
    details: Any = Field(default=None, description="What the code is about, when it helps.")


class ErrorBody(BaseModel):
    """The error answer of the batch-inserts and operator APIs."""

    error: ErrorDetail


_ERROR_MEANINGS = {
    400: "Not JSON, an unreadable body, a bad header or a NUL character in the URL",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflicts with the resource's state",
    413: "Larger than the configured record or byte limit",
    422: "Well-formed but invalid",
    500: "Internal error",
    503: "A service it depends on is unavailable",
}


def error_answers(*statuses: int) -> tuple[Answer, ...]:
    """How the batch-inserts and operator APIs answer these error statuses (and 400, which
    any of their requests may get)."""
    return tuple(
        Answer(status, _ERROR_MEANINGS[status], ErrorBody) for status in sorted({400, *statuses})
    )


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})


def error_response(status: int, code: ErrorCode, message: str, details: Any = None) -> web.Response:
    body = ErrorBody(error=ErrorDetail(code=code, message=message, details=details))
    return json_response(body.model_dump(mode="json"), status=status)


_HTTP_CODES = {
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    408: ErrorCode.REQUEST_TIMEOUT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    503: ErrorCode.SERVICE_UNAVAILABLE,
}
# Seconds a client should wait before trying again while the database is unreachable: a
# restart takes a second or two; a client that comes back sooner only adds load.
RETRY_AFTER_SECONDS = 2
# Headers of a refusal that belong on the answer whatever its format: how to authenticate,
# what is allowed, when to come back, that the connection closes.
_KEPT_HEADERS = ("WWW-Authenticate", "Allow", "Retry-After", "Connection")

# Paths whose ids and query filters end up in SQL (the operations paths read neither).
_WITH_IDS_AND_FILTERS = ("/api/", "/ops/")

# Front doors with their own error formats: path prefix -> renderer(status, message).
ErrorRenderer = Callable[[int, str], web.StreamResponse]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def database_unavailable() -> ApiError:
    return ApiError(
        503,
        ErrorCode.SERVICE_UNAVAILABLE,
        "The database is unavailable; try again shortly",
        {"retry_after_seconds": RETRY_AFTER_SECONDS},
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def error_middleware(renderers: dict[str, ErrorRenderer]) -> Any:
    def render(
        request: web.Request, status: int, code: ErrorCode, message: str, details: Any = None
    ) -> web.StreamResponse:
        for prefix, renderer in renderers.items():
            if request.path.startswith(prefix):
                return renderer(status, message)
        return error_response(status, code, message, details)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        has_own_format = any(request.path.startswith(prefix) for prefix in renderers)
        takes_ids = request.path.startswith(_WITH_IDS_AND_FILTERS)
        if (
            takes_ids
            and not has_own_format
            and (holds_nul(request.path) or holds_nul(request.query_string))
        ):
            # PostgreSQL stores no NUL, so such an id or filter can match nothing. Front doors
            # with their own formats say which field it was themselves.
            return error_response(400, ErrorCode.INVALID_REQUEST, "NUL character in the URL")
        response: web.StreamResponse
        try:
            return await handler(request)
        except ApiError as exc:
            response = error_response(exc.status, exc.code, exc.message, exc.details)
            if exc.status == 503:
                response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            response.headers.update(exc.headers)
            return response
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = _HTTP_CODES.get(exc.status, ErrorCode.VALIDATION_FAILED)
            response = render(request, exc.status, code, exc.reason)
            for name in _KEPT_HEADERS:
                if name in exc.headers:
                    response.headers[name] = exc.headers[name]
            return response
        except Exception as exc:
            if not is_transient(exc):
                log.exception("unhandled error on %s %s", request.method, request.path)
                return render(request, 500, ErrorCode.INTERNAL_ERROR, "Internal server error")
            log.warning("database unavailable on %s %s: %s", request.method, request.path, exc)
            unavailable = database_unavailable()
            response = render(
                request, 503, unavailable.code, unavailable.message, unavailable.details
            )
            response.headers.update(unavailable.headers)
            return response

    return middleware
