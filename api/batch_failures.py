"""A batch's failed records with their payloads: ``/api/v1/batch-inserts/{id}/failures``.

Paged and filtered by error code for reading, or the whole list as NDJSON for download,
streamed from a cursor so that a batch of a million failures costs no more memory than one.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from api import keys
from api.batch_inserts import BASE, header_or_404
from api.errors import ApiError, ErrorCode
from api.requests import query_int
from api.responses import json_response
from batchline.vocabulary import RecordError
from sql import failures

_FORMATS = ("json", "ndjson")
_ERRORS = tuple(RecordError)


async def list_failures(request: web.Request) -> web.StreamResponse:
    """Failed records with error, details and payload (filters: error; offset, limit;
    format=ndjson streams them all)."""
    header = await header_or_404(request, request.match_info["batch_id"])
    error = request.query.get("error") or None
    if error is not None and error not in _ERRORS:
        raise ApiError(
            422,
            ErrorCode.VALIDATION_FAILED,
            f"Query parameter 'error' must be an error code: {', '.join(_ERRORS)}",
            {"parameter": "error", "value": error},
        )
    output = request.query.get("format", "json")
    if output not in _FORMATS:
        raise ApiError(
            422,
            ErrorCode.VALIDATION_FAILED,
            f"Query parameter 'format' must be one of {', '.join(_FORMATS)}",
            {"parameter": "format", "value": output},
        )
    if output == "ndjson":
        return await _download(request, header.id, error)
    pool = request.app[keys.POOL]
    offset = query_int(request, "offset", 0, 0)
    limit = query_int(request, "limit", 20, 1, request.app[keys.SETTINGS].page_limit_max)
    by_error = await failures.counts_by_error(pool, header.id)
    total = sum(n for code, n in by_error if error is None or code == error)
    rows = await failures.page(pool, header.id, error, offset, limit)
    return json_response(
        {
            "batch_id": header.id,
            "failed_count": header.failed_count,
            "errors": [{"error": code, "count": n} for code, n in by_error],
            "data": [failure.view() for failure in rows],
            "pagination": {"offset": offset, "limit": limit, "total": total},
        }
    )


async def _download(request: web.Request, batch_id: str, error: str | None) -> web.StreamResponse:
    name = f"{batch_id}-failures{'-' + error if error else ''}.ndjson"
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/x-ndjson",
            "Content-Disposition": f'attachment; filename="{name}"',
        }
    )
    await response.prepare(request)
    lines: list[str] = []
    async for failure in failures.stream(request.app[keys.POOL], batch_id, error):
        lines.append(orjson.dumps(failure.view()).decode())
        if len(lines) >= 1000:
            await response.write(("\n".join(lines) + "\n").encode())
            lines = []
    if lines:
        await response.write(("\n".join(lines) + "\n").encode())
    await response.write_eof()
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get(BASE + "/{batch_id}/failures", list_failures)
