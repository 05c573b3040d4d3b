"""Front door 1: the Batch Insert RPC Adapter, ``/api/v1/batch-inserts``."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictInt,
    ValidationError,
    WithJsonSchema,
)

from api import keys
from api.errors import ApiError, ErrorCode, error_answers
from api.openapi import (
    COMPONENTS,
    DESCRIPTION,
    Answer,
    ApiOperation,
    Parameter,
    add_operation,
    location_header,
    path_parameter,
    query,
)
from api.requests import LARGEST_QUERY_INT, parse_json, parse_query, read_body
from api.responses import json_response
from api.tenancy import TENANT_HEADER, batch_tenant, requested_tenant
from batchline.activity import Activity
from batchline.records import validation_details
from batchline.settings import KAFKA_MESSAGE_MAX_BYTES, Settings
from batchline.text import NO_NUL_PATTERN
from batchline.vocabulary import BatchStatus, RecordError, RecordStatus, ResultFilter, Source
from sql import batches, idempotency_keys
from sql.results import ResultEntry, results_page
from streams.envelopes import ACTIVITY_ENTITY, ChunkOptions
from streams.producer import DeliveryError
from streams.publisher import chunk_messages

log = logging.getLogger(__name__)

BASE = "/api/v1/batch-inserts"
TAG = "batch-inserts"
IDEMPOTENCY_KEY = "Idempotency-Key"
IDEMPOTENT_REPLAYED = "Idempotent-Replayed"


# --- What the API reads and answers (also its OpenAPI description) ------------------------


_SEED_ACTIVITIES: list[JsonValue] = [
    {
        "coordinator_id": "coord-42",
        "mentor_id": mentor,
        "activity_type": "group_workshop",
        "activity_date": "2026-03-28",
        "duration_minutes": 120,
    }
    for mentor in ("mentor-17", "mentor-18")
]


class BatchInsertRequest(BaseModel):
    """Records are validated one by one: a bad record is a failed result, not a 422."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"activities": _SEED_ACTIVITIES}]}
    )

    activities: list[Annotated[Any, WithJsonSchema({"$ref": COMPONENTS + "Activity"})]] = Field(
        min_length=1,
        description="At most BATCHLINE_MAX_RECORDS_PER_REQUEST records (more: 413).",
    )


class CreateQuery(BaseModel):
    publish_events: bool = Field(
        default=False, description="Publish a domain event per inserted or updated record."
    )


class ListQuery(BaseModel):
    page: int = Field(default=1, ge=1, le=LARGEST_QUERY_INT, description="From 1.")
    limit: int = Field(
        default=20,
        ge=1,
        le=LARGEST_QUERY_INT,
        description="Operations per page; above BATCHLINE_PAGE_LIMIT_MAX is capped to it.",
    )
    status: BatchStatus | None = Field(default=None, description="Only operations in this status.")
    entity: str | None = Field(
        default=None,
        max_length=200,
        pattern=NO_NUL_PATTERN,
        description="Only operations of this entity: activity, instance or a YAML entity's"
        " name (any case).",
    )
    source: Source | None = Field(default=None, description="Only operations that came this way.")
    q: str | None = Field(
        default=None,
        max_length=255,
        pattern=NO_NUL_PATTERN,
        description="A batch id, or the Idempotency-Key a batch was posted with (exact).",
    )
    include: str | None = Field(
        default=None,
        pattern=r"^(entity|source)(,(entity|source))?$",
        description="entity, source or both (comma-separated): add those fields to each item.",
    )


class ResultsQuery(BaseModel):
    results: ResultFilter = Field(
        default=ResultFilter.ALL, description="Which records' results to show; none: counts only."
    )
    results_offset: int = Field(
        default=0, ge=0, le=LARGEST_QUERY_INT, description="Results to skip, in index order."
    )
    results_limit: int = Field(
        default=LARGEST_QUERY_INT,
        ge=1,
        le=LARGEST_QUERY_INT,
        description="At most this many results (default and cap: BATCHLINE_RESULTS_LIMIT_MAX).",
    )


class RecordResultView(BaseModel):
    """One record's fate. The id field is named after the entity: ``activity_id`` for
    activities (``instance_id``, ``category_id`` … for batches of the other front doors)."""

    index: int
    activity_id: str | None = None
    status: Literal["success", "failed"]
    result: Literal["created", "updated", "deleted"] | None = Field(
        default=None, description="A success: what it did to its row."
    )
    error: RecordError | None = None
    details: Any = Field(default=None, description="Why it failed, when there is more to say.")


class BatchSummary(BaseModel):
    id: str
    record_count: int
    status: BatchStatus
    inserted_count: int
    updated_count: int
    failed_count: int


class BatchListItem(BatchSummary):
    created_at: datetime
    entity: str | None = Field(default=None, description="With include=entity.")
    source: Source | None = Field(default=None, description="With include=source.")


class Pagination(BaseModel):
    page: int
    limit: int
    total: int


class BatchPage(BaseModel):
    data: list[BatchListItem]
    pagination: Pagination


class BatchCreated(BatchSummary):
    results: list[RecordResultView] = Field(
        description="The first BATCHLINE_RESULTS_LIMIT_MAX results; GET pages through the rest."
    )
    results_total: int = Field(description="How many results the batch has.")
    failure_reason: str | None = Field(
        default=None, description="Why the batch failed as a whole, when it did."
    )


class BatchOperation(BatchSummary):
    results: list[RecordResultView] | None = Field(
        default=None, description="The page of results asked for (none with results=none)."
    )
    results_total: int | None = Field(
        default=None, description="How many results match the results filter."
    )
    failure_reason: str | None = Field(
        default=None, description="Why the batch failed as a whole, when it did."
    )
    created_at: datetime
    completed_at: datetime | None
    updated_at: datetime | None = Field(default=None, description="Set by a retry.")


class BatchProcessing(BatchSummary):
    status: Literal[BatchStatus.PROCESSING]


class RetryRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"retry_indices": [2], "ignore_constraints": False}]},
    )

    retry_indices: list[StrictInt] = Field(
        min_length=1,
        json_schema_extra={"uniqueItems": True},
        description="Indices of failed records of the batch, each once.",
    )
    ignore_constraints: StrictBool = Field(
        default=False,
        description="A record that hits an existing row's unique key updates that row.",
    )


class RetryAnswer(BaseModel):
    id: str
    status: BatchStatus
    inserted_count: int
    updated_count: int
    failed_count: int
    updated_at: datetime | None


class Deleted(BaseModel):
    message: str


def timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _id_field(entity: str) -> str:
    return f"{entity.removeprefix('entity:')}_id"


def summary_view(header: batches.BatchHeader) -> dict[str, Any]:
    return {
        "id": header.id,
        "record_count": header.record_count,
        "status": header.status,
        "inserted_count": header.inserted_count,
        "updated_count": header.updated_count,
        "failed_count": header.failed_count,
    }


@dataclass(frozen=True, slots=True)
class ResultsWanted:
    """Which of a batch's results a view shows: ``?results=&results_offset=&results_limit=``."""

    which: ResultFilter
    offset: int
    limit: int

    @classmethod
    def first_page(cls, settings: Settings) -> ResultsWanted:
        return cls(ResultFilter.ALL, 0, settings.results_limit_max)

    @classmethod
    def from_query(cls, request: web.Request) -> ResultsWanted:
        wanted = parse_query(request, ResultsQuery)
        limit_max = request.app[keys.SETTINGS].results_limit_max
        return cls(wanted.results, wanted.results_offset, min(wanted.results_limit, limit_max))


def result_view(result: ResultEntry, id_field: str) -> dict[str, Any]:
    """One result in the seed's shape; a success also says whether it created a row."""
    if result["status"] != RecordStatus.FAILED:
        return {
            "index": result["index"],
            id_field: result["id"],
            "status": "success",
            "result": _RESULT_WORDS[result["status"]],
        }
    view: dict[str, Any] = {
        "index": result["index"],
        id_field: result["id"],
        "status": "failed",
        "error": result["error"],
    }
    if result["details"] is not None:
        view["details"] = result["details"]
    return view


_RESULT_WORDS: dict[str, str] = {
    RecordStatus.INSERTED: "created",
    RecordStatus.UPDATED: "updated",
    RecordStatus.DELETED: "deleted",
}


async def operation_view(
    request: web.Request,
    header: batches.BatchHeader,
    wanted: ResultsWanted,
    *,
    with_times: bool,
) -> dict[str, Any]:
    view = summary_view(header)
    if wanted.which is not ResultFilter.NONE:
        # One connection for the page's two reads: a pool hands each read its own, and
        # resets each one it takes back.
        async with request.app[keys.POOL].acquire() as conn:
            page = await results_page(conn, header.id, wanted.which, wanted.offset, wanted.limit)
        id_field = _id_field(header.entity)
        view["results"] = [result_view(r, id_field) for r in page.results]
        view["results_total"] = page.total
    if header.failure_reason:
        view["failure_reason"] = header.failure_reason
    if with_times:
        view["created_at"] = timestamp(header.created_at)
        view["completed_at"] = timestamp(header.completed_at)
        if header.updated_at is not None:
            view["updated_at"] = timestamp(header.updated_at)
    return view


@contextlib.contextmanager
def _refused_as_404_or_409(batch_id: str) -> Iterator[None]:
    """A batch that is not there, or still processing, as the client is told about it."""
    try:
        yield
    except batches.BatchMissing:
        raise ApiError(404, ErrorCode.NOT_FOUND, f"Batch insert {batch_id} not found") from None
    except batches.BatchStillProcessing:
        raise ApiError(
            409, ErrorCode.BATCH_PROCESSING, f"Batch insert {batch_id} is still processing"
        ) from None


def _tenant(request: web.Request) -> str:
    """The tenant whose batches the request may see (those of no tenant too)."""
    tenant = requested_tenant(request)
    refusal = request.app[keys.SETTINGS].tenant_policy().refusal(tenant)
    if refusal is not None:
        raise ApiError(
            400,
            ErrorCode.UNKNOWN_TENANT,
            f"{TENANT_HEADER} {refusal}",
            {"header": TENANT_HEADER, "value": tenant},
        )
    return tenant


async def header_or_404(request: web.Request, batch_id: str) -> batches.BatchHeader:
    """The batch, if it exists for the request's tenant: another tenant's is not found."""
    tenant = _tenant(request)
    header = await batches.get(request.app[keys.POOL], batch_id)
    default = request.app[keys.SETTINGS].default_tenant
    if header is None or batch_tenant(header, default) not in (None, tenant):
        raise ApiError(404, ErrorCode.NOT_FOUND, f"Batch insert {batch_id} not found")
    return header


# --- POST --------------------------------------------------------------------------------


def _activities(payload: Any, max_records: int) -> list[Any]:
    if not isinstance(payload, dict):
        raise ApiError(
            422,
            ErrorCode.VALIDATION_FAILED,
            "Request body must be a JSON object",
            {"expected": "object", "got": type(payload).__name__},
        )
    try:
        activities = BatchInsertRequest.model_validate(payload).activities
    except ValidationError as exc:
        raise _refused_request(exc) from None
    if len(activities) > max_records:
        raise ApiError(
            413,
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"A batch holds at most {max_records} records; this one has {len(activities)}",
            {"limit_records": max_records, "records": len(activities)},
        )
    return activities


def _refused_request(error: ValidationError) -> ApiError:
    problems = error.errors(include_url=False, include_context=False, include_input=False)
    unknown = sorted(str(p["loc"][0]) for p in problems if p["type"] == "extra_forbidden")
    if unknown:
        return ApiError(
            422, ErrorCode.VALIDATION_FAILED, "Unknown top-level fields", {"fields": unknown}
        )
    if problems[0]["type"] == "too_short":
        message = "'activities' must not be empty"
    else:
        message = "'activities' must be an array of records"
    return ApiError(422, ErrorCode.VALIDATION_FAILED, message, {"field": "activities"})


async def create_batch(request: web.Request) -> web.StreamResponse:
    settings = request.app[keys.SETTINGS]
    pool = request.app[keys.POOL]
    started = time.perf_counter()
    body = await read_body(request, settings.max_body_bytes)
    activities = _activities(parse_json(body), settings.max_records_per_request)
    publish_events = parse_query(request, CreateQuery).publish_events
    options = ChunkOptions(publish_events=publish_events)

    idempotency_key = _idempotency_key(request)
    if idempotency_key is not None:
        stored = await idempotency_keys.claim_idempotency_key(
            pool, idempotency_key, idempotency_keys.request_fingerprint(body)
        )
        if stored is not None:
            return await _replay_stored(request, idempotency_key, body, activities, stored)

    try:
        if idempotency_key is None:
            header = await batches.create(
                pool, ACTIVITY_ENTITY, Source.REST, len(activities), options
            )
        else:
            header = await idempotency_keys.create_for_key(
                pool, idempotency_key, ACTIVITY_ENTITY, Source.REST, len(activities), options
            )
        await _publish(request, header, activities, idempotency_key)
    except BaseException:
        await _release(request, idempotency_key)
        raise
    request.app[keys.METRICS].records_accepted.labels("batch-inserts").inc(len(activities))
    return await _answer(request, header, idempotency_key, started)


async def _publish(
    request: web.Request,
    header: batches.BatchHeader,
    activities: list[Any],
    idempotency_key: str | None,
) -> None:
    """Every chunk of the batch on the broker, acknowledged; the key then says so."""
    settings = request.app[keys.SETTINGS]
    pool = request.app[keys.POOL]
    messages = list(
        chunk_messages(header.id, ACTIVITY_ENTITY, activities, settings.chunk_size, header.options)
    )
    largest = max(len(message.value or b"") for message in messages)
    if largest > KAFKA_MESSAGE_MAX_BYTES:
        # Permanent: a client that retries a 503 would only pile up failed batches.
        await batches.fail(pool, header.id, "a chunk is larger than the broker takes")
        raise ApiError(
            413,
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"A chunk of this batch is {largest} bytes, more than the"
            f" {KAFKA_MESSAGE_MAX_BYTES} a Kafka message may hold: send smaller records"
            " or fewer per request",
            {"limit_bytes": KAFKA_MESSAGE_MAX_BYTES, "chunk_bytes": largest},
        )
    try:
        await request.app[keys.PRODUCER].send_many(messages)
    except DeliveryError as exc:
        await batches.fail(pool, header.id, f"not accepted by the broker: {exc}")
        raise ApiError(
            503,
            ErrorCode.SERVICE_UNAVAILABLE,
            "The broker did not accept the batch",
            {"batch_id": header.id},
        ) from exc
    if idempotency_key is not None:
        try:
            await idempotency_keys.mark_published(pool, idempotency_key)
        except Exception as exc:  # noqa: BLE001 - at worst a retry sends the chunks again
            log.warning("batch %s published, but its key could not say so: %s", header.id, exc)


async def _release(request: web.Request, idempotency_key: str | None) -> None:
    """A request that failed before its batch was accepted gives its key up."""
    if idempotency_key is None:
        return
    try:
        await idempotency_keys.release_idempotency_key(request.app[keys.POOL], idempotency_key)
    except Exception as exc:  # noqa: BLE001 - the claim lapses; a retry takes it over
        log.warning("Idempotency-Key not released: %s", exc)


async def _answer(
    request: web.Request,
    header: batches.BatchHeader,
    idempotency_key: str | None,
    started: float | None = None,
    extra_headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """The answer to an accepted batch, stored under its key: 201, or 202 + Location."""
    settings = request.app[keys.SETTINGS]
    status, view = await _answer_when_done(request, header, settings.sync_wait_seconds)
    if status == 201 and started is not None:
        request.app[keys.METRICS].batch_latency.observe(time.perf_counter() - started)
    if idempotency_key is not None:
        try:
            await idempotency_keys.store_idempotent_response(
                request.app[keys.POOL], idempotency_key, header.id, status, view
            )
        except Exception as exc:  # noqa: BLE001 - the key still leads to the batch
            log.warning("answer to Idempotency-Key not stored (batch %s): %s", header.id, exc)
    headers = dict(extra_headers or {})
    if status == 202:
        headers["Location"] = f"{BASE}/{header.id}"
    return json_response(view, status=status, headers=headers)


async def _answer_when_done(
    request: web.Request, header: batches.BatchHeader, wait_seconds: float
) -> tuple[int, dict[str, Any]]:
    """201 with the results, or 202 with Location: never an error, for the batch is
    accepted (its records are on the broker) whatever happens to the database now."""
    try:
        finished = await request.app[keys.WAITER].wait(header.id, wait_seconds)
        current = await batches.get(request.app[keys.POOL], header.id)
        assert current is not None
        if finished:
            first_page = ResultsWanted.first_page(request.app[keys.SETTINGS])
            return 201, await operation_view(request, current, first_page, with_times=False)
        return 202, summary_view(current) | {"status": BatchStatus.PROCESSING}
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.warning("accepted batch %s answered 202: %s", header.id, exc)
        return 202, summary_view(header) | {"status": BatchStatus.PROCESSING}


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is None:
        return None
    # isprintable() is False for control characters and for the lone surrogates that stand
    # for bytes that were not UTF-8, which PostgreSQL could not store.
    if (
        not key.strip()
        or len(key) > idempotency_keys.MAX_IDEMPOTENCY_KEY_LENGTH
        or not key.isprintable()
    ):
        raise ApiError(
            400,
            ErrorCode.INVALID_REQUEST,
            "Idempotency-Key must be 1 to"
            f" {idempotency_keys.MAX_IDEMPOTENCY_KEY_LENGTH} printable UTF-8 characters, not blank",
            {"header": IDEMPOTENCY_KEY, "max_length": idempotency_keys.MAX_IDEMPOTENCY_KEY_LENGTH},
        )
    return key


def _in_flight(key: str, stored: idempotency_keys.StoredResponse) -> ApiError:
    """409 for a key whose request is still being answered; when to look again."""
    wait = max(1, math.ceil(idempotency_keys.ABANDONED_CLAIM_SECONDS - stored.age_seconds))
    return ApiError(
        409,
        ErrorCode.IDEMPOTENCY_KEY_IN_FLIGHT,
        "A request with this Idempotency-Key is still being processed",
        {"idempotency_key": key, "retry_after_seconds": wait},
        {"Retry-After": str(wait)},
    )


async def _replay_stored(
    request: web.Request,
    key: str,
    body: bytes,
    activities: list[Any],
    stored: idempotency_keys.StoredResponse,
) -> web.StreamResponse:
    if stored.request_hash != idempotency_keys.request_fingerprint(body):
        raise ApiError(
            422,
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "Idempotency-Key was already used with a different request body",
            {"idempotency_key": key},
        )
    pool = request.app[keys.POOL]
    # Tells the client that this answer is an earlier request's: nothing was inserted now.
    replayed = {IDEMPOTENT_REPLAYED: "true"}
    if stored.status is None or stored.batch_id is None:
        current = await batches.get(pool, stored.batch_id) if stored.batch_id else None
        if current is None:
            raise _in_flight(key, stored)
        if current.status != BatchStatus.PROCESSING:
            # The request that claimed the key died before answering; its batch has finished.
            first_page = ResultsWanted.first_page(request.app[keys.SETTINGS])
            view = await operation_view(request, current, first_page, with_times=False)
            await idempotency_keys.store_idempotent_response(pool, key, current.id, 201, view)
            return json_response(view, status=201, headers=replayed)
        if stored.published:
            # Its records are on their way: answer as the first request would have.
            return await _answer(request, current, key, extra_headers=replayed)
        if not await idempotency_keys.take_over_unpublished(pool, key):
            raise _in_flight(key, stored)
        # The first request died between the header and the produce: send the same
        # records to the same batch. A chunk it did send is written once all the same.
        log.info("Idempotency-Key of batch %s taken over: sending its chunks", current.id)
        try:
            await _publish(request, current, activities, key)
        except BaseException:
            await _release(request, key)
            raise
        return await _answer(request, current, key)
    if stored.status == 202:
        current = await batches.get(pool, stored.batch_id)
        if current is not None and current.status != BatchStatus.PROCESSING:
            first_page = ResultsWanted.first_page(request.app[keys.SETTINGS])
            return json_response(
                await operation_view(request, current, first_page, with_times=False),
                status=201,
                headers=replayed,
            )
        return json_response(
            stored.body,
            status=202,
            headers=replayed | {"Location": f"{BASE}/{stored.batch_id}"},
        )
    return json_response(stored.body, status=stored.status, headers=replayed)


# --- GET ---------------------------------------------------------------------------------


async def list_batches(request: web.Request) -> web.StreamResponse:
    settings = request.app[keys.SETTINGS]
    wanted = parse_query(request, ListQuery)
    page = wanted.page
    limit = min(wanted.limit, settings.page_limit_max)
    search = (wanted.q or "").strip()
    filters = batches.BatchFilter(
        status=wanted.status,
        entity=wanted.entity.lower() if wanted.entity else None,
        source=wanted.source,
        search=search or None,
    )
    extra = wanted.include.split(",") if wanted.include else []
    headers, total = await batches.page(
        request.app[keys.POOL],
        page,
        limit,
        filters,
        tenant=_tenant(request),
        default_tenant=settings.default_tenant,
    )
    data = []
    for header in headers:
        item = summary_view(header) | {"created_at": timestamp(header.created_at)}
        known = {"entity": header.entity, "source": header.source}
        data.append(item | {name: known[name] for name in extra})
    return json_response(
        {"data": data, "pagination": {"page": page, "limit": limit, "total": total}}
    )


async def get_batch(request: web.Request) -> web.StreamResponse:
    wanted = ResultsWanted.from_query(request)
    header = await header_or_404(request, request.match_info["batch_id"])
    return json_response(await operation_view(request, header, wanted, with_times=True))


# --- PUT (retry) -------------------------------------------------------------------------


async def retry_batch(request: web.Request) -> web.StreamResponse:
    settings = request.app[keys.SETTINGS]
    batch_id = request.match_info["batch_id"]
    payload = parse_json(await read_body(request, settings.max_body_bytes))
    try:
        retry = RetryRequest.model_validate(payload)
    except ValidationError as exc:
        raise ApiError(
            422, ErrorCode.VALIDATION_FAILED, "Invalid retry request", validation_details(exc)
        ) from exc
    indices = retry.retry_indices
    if len(set(indices)) != len(indices):
        raise ApiError(
            422,
            ErrorCode.VALIDATION_FAILED,
            "'retry_indices' must be a non-empty list of distinct indices",
            {"field": "retry_indices"},
        )
    await header_or_404(request, batch_id)
    try:
        with _refused_as_404_or_409(batch_id):
            plan = await batches.start_retry(
                request.app[keys.POOL], batch_id, indices, retry.ignore_constraints
            )
    except batches.RetryNotSupported as refused:
        raise ApiError(
            422, ErrorCode.VALIDATION_FAILED, "Invalid retry request", refused.details
        ) from None
    except batches.RetryIndicesInvalid as refused:
        raise ApiError(
            422,
            ErrorCode.VALIDATION_FAILED,
            "Only indices of failed records within the batch can be retried, and only"
            " records whose payload was kept (without_payload: send those again)",
            refused.details,
        ) from None

    ordered = sorted(indices)
    try:
        await request.app[keys.PRODUCER].send_many(
            chunk_messages(
                batch_id,
                plan.header.entity,
                [plan.payloads[i] for i in ordered],
                settings.chunk_size,
                plan.header.options,
                record_count=plan.header.record_count,
                attempt=plan.header.attempt,
                indices=ordered,
                operation=plan.header.operation,
            )
        )
    except DeliveryError as exc:
        await batches.fail(request.app[keys.POOL], batch_id, f"retry not accepted: {exc}")
        raise ApiError(
            503, ErrorCode.SERVICE_UNAVAILABLE, "The broker did not accept the retry"
        ) from exc

    try:
        finished = await request.app[keys.WAITER].wait(batch_id, settings.sync_wait_seconds)
        current = await batches.get(request.app[keys.POOL], batch_id)
    except Exception as exc:  # noqa: BLE001 - the retry is on the broker: say where to look
        log.warning("accepted retry of batch %s answered 202: %s", batch_id, exc)
        finished, current = False, plan.header
    assert current is not None
    view = {
        "id": current.id,
        "status": current.status if finished else BatchStatus.PROCESSING,
        "inserted_count": current.inserted_count,
        "updated_count": current.updated_count,
        "failed_count": current.failed_count,
        "updated_at": timestamp(current.updated_at),
    }
    if not finished:
        return json_response(view, status=202, headers={"Location": f"{BASE}/{batch_id}"})
    return json_response(view)


# --- DELETE ------------------------------------------------------------------------------


async def delete_batch(request: web.Request) -> web.StreamResponse:
    batch_id = request.match_info["batch_id"]
    await header_or_404(request, batch_id)
    with _refused_as_404_or_409(batch_id):
        await batches.delete(request.app[keys.POOL], batch_id)
    return json_response({"message": f"Batch insert record {batch_id} deleted successfully"})


_IDEMPOTENCY_KEY = Parameter(
    IDEMPOTENCY_KEY,
    "header",
    {
        "type": "string",
        "minLength": 1,
        "maxLength": idempotency_keys.MAX_IDEMPOTENCY_KEY_LENGTH,
        # The portable subset of what is taken (printable UTF-8, not blank): printable ASCII.
        "pattern": "^[ -~]*[!-~][ -~]*$",
    },
    "Makes retrying the POST safe: a repeat is answered from the first request's answer.",
)
_REPLAYED = Parameter(
    IDEMPOTENT_REPLAYED,
    "header",
    {"type": "string", "enum": ["true"]},
    "This answer is an earlier request's with the same Idempotency-Key: nothing new was done.",
)
_BATCH_ID = path_parameter("batch_id", "e.g. batch-001")
_FOLLOW = location_header("Where to follow the operation: GET it until it is not processing.")


def add_routes(app: web.Application) -> None:
    app[DESCRIPTION].schemas["Activity"] = Activity.model_json_schema()
    app[DESCRIPTION].tags[TAG] = "Front door 1: batches of activities, per-record results."
    operations: list[tuple[ApiOperation, Any]] = [
        (
            ApiOperation(
                "GET",
                BASE,
                "listBatchInserts",
                "List batch insert operations, newest first",
                TAG,
                (Answer(200, "A page of operations", BatchPage), *error_answers(422)),
                parameters=query(ListQuery),
            ),
            list_batches,
        ),
        (
            ApiOperation(
                "POST",
                BASE,
                "createBatchInsert",
                "Insert a batch of activities; every record gets its own result",
                TAG,
                (
                    Answer(
                        201,
                        "Completed within the wait: every record's result",
                        BatchCreated,
                        headers=(_REPLAYED,),
                    ),
                    Answer(
                        202,
                        "Still processing after BATCHLINE_SYNC_WAIT_SECONDS",
                        BatchProcessing,
                        headers=(_FOLLOW, _REPLAYED),
                    ),
                    *error_answers(400, 409, 413, 422, 503),
                ),
                body=BatchInsertRequest,
                parameters=(*query(CreateQuery), _IDEMPOTENCY_KEY),
            ),
            create_batch,
        ),
        (
            ApiOperation(
                "GET",
                BASE + "/{batch_id}",
                "getBatchInsert",
                "One operation with its per-record results",
                TAG,
                (Answer(200, "The operation", BatchOperation), *error_answers(404, 422)),
                parameters=(_BATCH_ID, *query(ResultsQuery)),
            ),
            get_batch,
        ),
        (
            ApiOperation(
                "PUT",
                BASE + "/{batch_id}",
                "retryBatchInsert",
                "Retry failed records of an operation by index",
                TAG,
                (
                    Answer(200, "The retry completed", RetryAnswer),
                    Answer(202, "Still processing", RetryAnswer, headers=(_FOLLOW,)),
                    *error_answers(400, 404, 409, 413, 422, 503),
                ),
                body=RetryRequest,
                parameters=(_BATCH_ID,),
            ),
            retry_batch,
        ),
        (
            ApiOperation(
                "DELETE",
                BASE + "/{batch_id}",
                "deleteBatchInsert",
                "Delete an operation and its results (not the activities it inserted)",
                TAG,
                (Answer(200, "Deleted", Deleted), *error_answers(404, 409)),
                parameters=(_BATCH_ID,),
            ),
            delete_batch,
        ),
    ]
    for operation, handler in operations:
        add_operation(app, operation, handler)
