"""Reading request bodies and query values, with the batch-inserts API's error codes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from aiohttp import web
from aiohttp.compression_utils import HAS_BROTLI, HAS_ZSTD
from pydantic import BaseModel, ValidationError

from api import keys
from api.errors import ApiError, ErrorCode
from streams import codec

# Every POST, PUT and PATCH of the API takes a JSON body.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# What aiohttp decodes before a handler reads the body; anything else would reach the
# JSON parser still encoded.
_DECODED_ENCODINGS = frozenset(
    {"identity", "gzip", "deflate"}
    | ({"br"} if HAS_BROTLI else set())
    | ({"zstd"} if HAS_ZSTD else set())
)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


@web.middleware
async def json_bodies(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """415 for a body that is not JSON by its Content-Type, or in an encoding nobody decodes.

    A missing Content-Type is refused too: a browser page on another site can send a body
    without one (a typeless Blob) and no preflight, but not one typed application/json.
    """
    if (
        request.method in _BODY_METHODS
        and request.body_exists
        and request.match_info.http_exception is None
    ):
        raw_type = request.headers.get("Content-Type")
        if raw_type is None or not _is_json(request.content_type):
            raise web.HTTPUnsupportedMediaType(
                reason=f"Content-Type must be application/json, not {raw_type or 'missing'}"
            )
        charset = request.charset
        if charset is not None and charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
            raise web.HTTPUnsupportedMediaType(
                reason=f"JSON bodies are UTF-8, not charset={charset}"
            )
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in _DECODED_ENCODINGS:
            raise web.HTTPUnsupportedMediaType(
                reason=f"Content-Encoding {encoding!r} is not supported;"
                f" use one of {', '.join(sorted(_DECODED_ENCODINGS))}"
            )
    return await handler(request)


async def read_all(request: web.Request) -> bytes:
    """The whole body, within ``BATCHLINE_HTTP_BODY_TIMEOUT_SECONDS``; else 408 and close."""
    seconds = request.app[keys.SETTINGS].http_body_timeout_seconds
    try:
        async with asyncio.timeout(seconds):
            return await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            reason=f"The request body did not arrive within {seconds:g} s",
            headers={"Connection": "close"},
        ) from None


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(
            413,
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"Request body is larger than {max_bytes} bytes",
            {"limit_bytes": max_bytes},
        )
    try:
        return await read_all(request)
    except web.HTTPRequestEntityTooLarge as exc:
        raise ApiError(
            413,
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"Request body is larger than {max_bytes} bytes",
            {"limit_bytes": max_bytes},
        ) from exc
    except web.RequestPayloadError as exc:
        raise ApiError(400, ErrorCode.INVALID_REQUEST, unreadable_body(exc)) from exc


def unreadable_body(error: web.RequestPayloadError) -> str:
    """Why a body could not be read: it does not match its Content-Encoding, or was cut off."""
    reason = " ".join(str(error).split()).removeprefix("400, message: ")
    return f"Request body could not be read: {reason}"


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise ApiError(400, ErrorCode.INVALID_JSON, "Request body is empty; JSON expected")
    try:
        return codec.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(
            400, ErrorCode.INVALID_JSON, f"Request body is not valid JSON: {exc}"
        ) from exc


# What PostgreSQL's bigint OFFSET arithmetic can take with room to spare.
LARGEST_QUERY_INT = 10**12

Query = TypeVar("Query", bound=BaseModel)


def parse_query(request: web.Request, model: type[Query]) -> Query:
    """The query string read by ``model`` (which also describes it); invalid values: 422."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        problem = exc.errors(include_url=False, include_context=False, include_input=False)[0]
        name = str(problem["loc"][0]) if problem["loc"] else "query"
        raise ApiError(
            422,
            ErrorCode.VALIDATION_FAILED,
            f"Query parameter '{name}': {problem['msg']}",
            {"parameter": name, "value": request.query.get(name)},
        ) from None


def query_int(
    request: web.Request, name: str, default: int, minimum: int, maximum: int | None = None
) -> int:
    """An integer query value; above ``maximum`` is capped, anything else invalid is 422."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if not minimum <= value <= LARGEST_QUERY_INT:
        raise ApiError(
            422,
            ErrorCode.VALIDATION_FAILED,
            f"Query parameter '{name}' must be an integer from {minimum} to {LARGEST_QUERY_INT}",
            {"parameter": name, "value": raw},
        )
    return min(value, maximum) if maximum is not None else value
