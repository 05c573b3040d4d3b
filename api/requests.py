"""Reading request bodies and query values, with the batch-inserts API's error codes."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from api.errors import ApiError, ErrorCode


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(
            413,
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"Request body is larger than {max_bytes} bytes",
            {"limit_bytes": max_bytes},
        )
    try:
        return await request.read()
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
        return orjson.loads(body)
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
