"""A batch's failed records with their payloads: ``/api/v1/batch-inserts/{id}/failures``.

Paged and filtered by error code for reading, or the whole list as NDJSON for download
(``/failures.ndjson``), read a thousand at a time so that a batch of a million failures
costs no more memory than one.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, Field

from api import keys
from api.batch_inserts import BASE, TAG, header_or_404
from api.errors import error_answers
from api.openapi import Answer, ApiOperation, add_operation, path_parameter, query
from api.requests import LARGEST_QUERY_INT, parse_query
from api.responses import json_response
from batchline.vocabulary import RecordError
from sql import failures

_LINES_PER_WRITE = 1000


class FailuresQuery(BaseModel):
    error: RecordError | None = Field(default=None, description="Only failures of this code.")
    offset: int = Field(default=0, ge=0, le=LARGEST_QUERY_INT, description="Failures to skip.")
    limit: int = Field(
        default=20,
        ge=1,
        le=LARGEST_QUERY_INT,
        description="Failures per page; above BATCHLINE_PAGE_LIMIT_MAX is capped to it.",
    )


class DownloadQuery(BaseModel):
    error: RecordError | None = Field(default=None, description="Only failures of this code.")


class FailureView(BaseModel):
    index: int
    error: RecordError | None
    details: Any = None
    payload: Any = Field(default=None, description="As it was sent; null when none was kept.")


class ErrorCount(BaseModel):
    error: RecordError
    count: int


class FailuresOffsetPage(BaseModel):
    offset: int
    limit: int
    total: int


class FailuresPage(BaseModel):
    batch_id: str
    failed_count: int
    errors: list[ErrorCount] = Field(description="Every failure counted by code, most first.")
    data: list[FailureView]
    pagination: FailuresOffsetPage


async def list_failures(request: web.Request) -> web.StreamResponse:
    """A page of a batch's failed records with error, details and payload."""
    header = await header_or_404(request, request.match_info["batch_id"])
    wanted = parse_query(request, FailuresQuery)
    error = wanted.error.value if wanted.error else None
    limit = min(wanted.limit, request.app[keys.SETTINGS].page_limit_max)
    pool = request.app[keys.POOL]
    by_error = await failures.counts_by_error(pool, header.id)
    total = sum(n for code, n in by_error if error is None or code == error)
    rows = await failures.page(pool, header.id, error, wanted.offset, limit)
    return json_response(
        {
            "batch_id": header.id,
            "failed_count": header.failed_count,
            "errors": [{"error": code, "count": n} for code, n in by_error],
            "data": [failure.view() for failure in rows],
            "pagination": {"offset": wanted.offset, "limit": limit, "total": total},
        }
    )


async def download_failures(request: web.Request) -> web.StreamResponse:
    """Every failed record of a batch, one JSON object a line."""
    header = await header_or_404(request, request.match_info["batch_id"])
    wanted = parse_query(request, DownloadQuery)
    error = wanted.error.value if wanted.error else None
    name = f"{header.id}-failures{'-' + error if error else ''}.ndjson"
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/x-ndjson",
            "Content-Disposition": f'attachment; filename="{name}"',
        }
    )
    await response.prepare(request)
    lines: list[bytes] = []
    async for failure in failures.stream(request.app[keys.POOL], header.id, error):
        lines.append(orjson.dumps(failure.view()))
        if len(lines) >= _LINES_PER_WRITE:
            await response.write(b"\n".join(lines) + b"\n")
            lines = []
    if lines:
        await response.write(b"\n".join(lines) + b"\n")
    await response.write_eof()
    return response


def add_routes(app: web.Application) -> None:
    batch_id = path_parameter("batch_id", "e.g. batch-001")
    add_operation(
        app,
        ApiOperation(
            "GET",
            BASE + "/{batch_id}/failures",
            "listBatchInsertFailures",
            "A page of an operation's failed records, with their payloads",
            TAG,
            (Answer(200, "A page of failures", FailuresPage), *error_answers(404, 422)),
            parameters=(batch_id, *query(FailuresQuery)),
        ),
        list_failures,
    )
    add_operation(
        app,
        ApiOperation(
            "GET",
            BASE + "/{batch_id}/failures.ndjson",
            "downloadBatchInsertFailures",
            "Every failed record of an operation as NDJSON, with its payload",
            TAG,
            (
                Answer(
                    200,
                    "One failure a line: index, error, details, payload",
                    {"type": "string"},
                    media_type="application/x-ndjson",
                ),
                *error_answers(404, 422),
            ),
            parameters=(batch_id, *query(DownloadQuery)),
        ),
        download_failures,
    )
