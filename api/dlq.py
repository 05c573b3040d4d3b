"""Operator API for the dead-letter topic: list and show dead letters, run replays.

A replay runs as a task in this API process; its state lives in PostgreSQL, so any API
instance answers for it and a cancel reaches it wherever it runs (the CLI's runs too).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from api import keys
from api.dlq_tasks import ReplayTasks
from api.errors import ApiError, ErrorCode, error_answers
from api.openapi import (
    DESCRIPTION,
    Answer,
    ApiOperation,
    Parameter,
    add_operation,
    location_header,
    path_parameter,
    query,
)
from api.requests import LARGEST_QUERY_INT, parse_json, query_int, read_body
from api.responses import json_response
from batchline.records import validation_details
from sql.replay_runs import ReplayRuns
from streams import dlq
from streams.deadletter import Stage
from streams.reader import TopicUnreadable

BASE = "/ops/dlq"
TAG = "dead letters"


class ReplayRequest(BaseModel):
    """Start a replay: the filters select dead letters; only pending ones are put back."""

    model_config = ConfigDict(extra="forbid")

    filters: dlq.DeadLetterFilter = Field(default_factory=dlq.DeadLetterFilter)
    # Strict: "yes" must not pass for true on a request that may replay everything.
    dry_run: StrictBool = Field(
        default=False, description="Count what would be replayed; no change."
    )
    rate_per_second: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="At most this many messages a second; unset: unpaced."
    )


class SourcePosition(BaseModel):
    topic: str
    partition: int
    offset: int


class DeadLetter(BaseModel):
    id: str = Field(description="<partition>:<offset> on the dead-letter topic.")
    status: dlq.LetterStatus
    dead_lettered_at: datetime | None
    stage: Stage
    error_class: str | None
    error_message: str | None
    source: SourcePosition
    origin: str | None
    attempts: int | None
    first_failed_at: datetime | None
    replay_count: int
    replay_id: str | None
    entity: str | None
    batch_id: str | None
    key: str | None
    size: int


class DeadLetterHeader(BaseModel):
    """One header as it was: a name may come more than once, a value may be null or binary."""

    name: str
    value: str | None
    value_format: Literal["text", "base64", "none"]


class DeadLetterDetail(DeadLetter):
    headers: list[DeadLetterHeader]
    value_format: str = Field(description="json, text, base64 or none")
    value: Any


class DeadLetterList(BaseModel):
    data: list[DeadLetter]
    count: int


class ReplayProgress(BaseModel):
    total: int
    done: int


class ReplayRunView(BaseModel):
    id: str
    status: dlq.RunStatus
    requested_by: str
    dry_run: bool
    filters: dict[str, Any]
    rate_per_second: float | None
    cancel_requested: bool
    progress: ReplayProgress
    counts: dict[str, int]
    error: str | None
    created_at: datetime | None
    updated_at: datetime | None
    finished_at: datetime | None


class ReplayRunList(BaseModel):
    data: list[ReplayRunView]


@contextlib.contextmanager
def _broker_errors() -> Iterator[None]:
    try:
        yield
    except TopicUnreadable as exc:
        raise ApiError(503, ErrorCode.SERVICE_UNAVAILABLE, str(exc)) from exc


def _filters_from_query(request: web.Request) -> dlq.DeadLetterFilter:
    query = request.query
    try:
        return dlq.DeadLetterFilter(
            since=dlq.parse_moment(query["since"]) if "since" in query else None,
            until=dlq.parse_moment(query["until"]) if "until" in query else None,
            error_class=query.get("error_class"),
            entity=query.get("entity"),
            stage=Stage(query["stage"]) if "stage" in query else None,
            key=query.get("key"),
            status=dlq.LetterStatus(query["status"]) if "status" in query else None,
        )
    except ValueError as exc:
        raise ApiError(422, ErrorCode.VALIDATION_FAILED, str(exc)) from None


async def list_messages(request: web.Request) -> web.StreamResponse:
    """Dead letters, newest first (filters: since, until, error_class, entity, stage, key,
    status; limit)."""
    filters = _filters_from_query(request)
    limit = query_int(request, "limit", 100, 1, 1000)
    app = request.app
    with _broker_errors():
        found = await dlq.list_entries(
            app[keys.SETTINGS], ReplayRuns(app[keys.POOL]), filters, limit
        )
    return json_response({"data": [dlq.entry_view(entry) for entry in found], "count": len(found)})


async def show_message(request: web.Request) -> web.StreamResponse:
    """One dead letter with its headers and value."""
    letter_id = request.match_info["letter_id"]
    try:
        dlq.parse_id(letter_id)
    except ValueError as exc:
        raise ApiError(422, ErrorCode.VALIDATION_FAILED, str(exc)) from None
    with _broker_errors():
        entry = await dlq.find(
            request.app[keys.SETTINGS], ReplayRuns(request.app[keys.POOL]), letter_id
        )
    if entry is None:
        raise ApiError(404, ErrorCode.NOT_FOUND, f"Dead letter {letter_id} not found")
    return json_response(dlq.entry_view(entry, with_value=True))


async def start_replay(request: web.Request) -> web.StreamResponse:
    """Start a replay task; answers 202 with its id and a Location to follow it."""
    settings = request.app[keys.SETTINGS]
    # No body is no request: a replay of everything pending must be asked for, with {}.
    body = await read_body(request, settings.max_body_bytes)
    try:
        wanted = ReplayRequest.model_validate(parse_json(body))
    except ValidationError as exc:
        raise ApiError(
            422, ErrorCode.VALIDATION_FAILED, "Invalid replay request", validation_details(exc)
        ) from exc
    run = await ReplayRuns(request.app[keys.POOL]).create(
        "http", wanted.filters.described(), wanted.dry_run, wanted.rate_per_second
    )
    app = request.app
    app[keys.DLQ_REPLAYS].start(app[keys.SETTINGS], app[keys.POOL], app[keys.PRODUCER], run)
    location = f"{BASE}/replays/{run.id}"
    return json_response(dlq.run_view(run), status=202, headers={"Location": location})


async def list_replays(request: web.Request) -> web.StreamResponse:
    """Replay runs, newest first (CLI and API alike)."""
    limit = query_int(request, "limit", 20, 1, request.app[keys.SETTINGS].page_limit_max)
    runs = await ReplayRuns(request.app[keys.POOL]).newest(limit)
    return json_response({"data": [dlq.run_view(run) for run in runs]})


async def _run_or_404(request: web.Request) -> dlq.ReplayRun:
    run_id = request.match_info["replay_id"]
    run = await ReplayRuns(request.app[keys.POOL]).get(run_id)
    if run is None:
        raise ApiError(404, ErrorCode.NOT_FOUND, f"Replay {run_id} not found")
    return run


async def get_replay(request: web.Request) -> web.StreamResponse:
    """A replay's status, progress and counts."""
    return json_response(dlq.run_view(await _run_or_404(request)))


async def cancel_replay(request: web.Request) -> web.StreamResponse:
    """Cancel a running replay; it stops within a second. Finished ones answer 409."""
    run = await _run_or_404(request)
    if run.status is not dlq.RunStatus.RUNNING:
        raise ApiError(
            409,
            ErrorCode.REPLAY_FINISHED,
            f"Replay {run.id} is not running (status {run.status.value})",
        )
    cancelling = await ReplayRuns(request.app[keys.POOL]).request_cancel(run.id)
    assert cancelling is not None
    return json_response(dlq.run_view(cancelling), status=202)


async def _replay_tasks(app: web.Application) -> AsyncIterator[None]:
    tasks = ReplayTasks()
    app[keys.DLQ_REPLAYS] = tasks
    yield
    await tasks.stop()


def _limit(default: int, most: str) -> Parameter:
    return Parameter(
        "limit",
        "query",
        {"type": "integer", "minimum": 1, "maximum": LARGEST_QUERY_INT, "default": default},
        f"At most this many (capped at {most}).",
    )


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_replay_tasks)
    app[DESCRIPTION].tags[TAG] = "Operators: inspect the dead-letter topic and replay from it."
    letter_id = path_parameter("letter_id", "<partition>:<offset>", r"^[0-9]+:[0-9]+$")
    replay_id = path_parameter("replay_id", "e.g. replay-001")
    described = [
        (
            ApiOperation(
                "GET",
                f"{BASE}/messages",
                "listDeadLetters",
                "Dead letters, newest first",
                TAG,
                (Answer(200, "Matching dead letters", DeadLetterList), *error_answers(422, 503)),
                parameters=(*query(dlq.DeadLetterFilter), _limit(100, "1000")),
                description="since and until also take an age: 30m, 2h, 7d.",
            ),
            list_messages,
        ),
        (
            ApiOperation(
                "GET",
                f"{BASE}/messages/{{letter_id}}",
                "getDeadLetter",
                "One dead letter with its headers and value",
                TAG,
                (
                    Answer(200, "The dead letter", DeadLetterDetail),
                    *error_answers(404, 422, 503),
                ),
                parameters=(letter_id,),
            ),
            show_message,
        ),
        (
            ApiOperation(
                "POST",
                f"{BASE}/replays",
                "startReplay",
                "Start a replay of pending dead letters",
                TAG,
                (
                    Answer(
                        202,
                        "Started",
                        ReplayRunView,
                        headers=(location_header("Where to follow the replay"),),
                    ),
                    *error_answers(400, 413, 422),
                ),
                body=ReplayRequest,
            ),
            start_replay,
        ),
        (
            ApiOperation(
                "GET",
                f"{BASE}/replays",
                "listReplays",
                "Replay runs, newest first",
                TAG,
                (Answer(200, "Replay runs", ReplayRunList), *error_answers(422)),
                parameters=(_limit(20, "BATCHLINE_PAGE_LIMIT_MAX"),),
            ),
            list_replays,
        ),
        (
            ApiOperation(
                "GET",
                f"{BASE}/replays/{{replay_id}}",
                "getReplay",
                "A replay's status, progress and counts",
                TAG,
                (Answer(200, "The replay", ReplayRunView), *error_answers(404)),
                parameters=(replay_id,),
            ),
            get_replay,
        ),
        (
            ApiOperation(
                "DELETE",
                f"{BASE}/replays/{{replay_id}}",
                "cancelReplay",
                "Cancel a running replay; it stops within a second",
                TAG,
                (Answer(202, "Cancelling", ReplayRunView), *error_answers(404, 409)),
                parameters=(replay_id,),
            ),
            cancel_replay,
        ),
    ]
    for operation, handler in described:
        add_operation(app, operation, handler)
