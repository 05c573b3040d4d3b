"""Front door 3: the Gemini framework's generic entity API, ``/data/{entity}`` and ``/entity``.

Writes are converted here first (what the writer would refuse is refused without a trip),
then go through the pipeline like every other front door, in canonical form: a batch
header, ONE atomic chunk on ``batchline.ingest`` (so a list is all or nothing), then the
answer once the batch completed. Reads come straight from PostgreSQL. Answers use
Gemini's envelope:
``{"status":"success","data":…,"meta":…}`` or ``{"status":"error","error":{"reason":…}}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from api import keys
from api.entity_description import describe_entities
from api.errors import RETRY_AFTER_SECONDS
from api.openapi import DESCRIPTION
from api.requests import read_all, unreadable_body
from api.responses import json_response
from batchline.entities.schema import EntitySchema, FieldSpec, FieldType
from batchline.entities.values import ConversionError, LogicalKeyMismatch, Values, sql_text
from batchline.records import RecordDetails, parse_details
from batchline.vocabulary import BatchStatus, Operation, RecordError, Source
from sql import batches, entity_rows
from sql.db import is_transient
from sql.results import StoredResult
from streams import codec
from streams.envelopes import ChunkOptions
from streams.producer import DeliveryError
from streams.publisher import chunk_messages

_FILTER = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)(?:\[([A-Z_]+)\])?$")
_PAGING = frozenset({"start", "limit", "orderBy"})
# start and limit end up as bigint OFFSET and LIMIT.
_BIGINT_MAX = 2**63 - 1
# A failed record answers 400 unless listed here; so does one the database refused: the
# cause is in the record (a value too large for an index entry, say), and is named.
_STATUS_BY_ERROR = {
    RecordError.RECORD_NOT_FOUND.value: 404,
    RecordError.PROCESSING_FAILED.value: 500,
}
# orjson reads an integer literal beyond 64 bits as a float (2**64 becomes 1.8e19), losing
# digits; such a literal has at least 19 digits.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


FieldErrors = dict[str, dict[str, str]]
RECORD_INVALID_LIST = "EntityRecords are invalid"


class GeminiError(Exception):
    """A Gemini error answer. ``fields`` (one record) and ``records`` (a list, one entry per
    record, ``{}`` for a valid one) are Gemini's fieldValidationErrors and
    recordValidationErrors; ``errors`` is batchline's own list of every problem."""

    def __init__(
        self,
        status: int,
        reason: str,
        errors: list[dict[str, Any]] | None = None,
        *,
        fields: FieldErrors | None = None,
        records: list[FieldErrors] | None = None,
    ):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.errors = errors
        self.fields = fields
        self.records = records


def render_error(status: int, reason: str) -> web.StreamResponse:
    """Errors under /data and /entity, including the router's 404/405, in Gemini's format."""
    return _error(GeminiError(status, reason))


def _error(exc: GeminiError) -> web.Response:
    error: dict[str, Any] = {"reason": exc.reason}
    if exc.fields:
        error["fieldValidationErrors"] = exc.fields
    if exc.records:
        error["recordValidationErrors"] = exc.records
    if exc.errors:
        error["errors"] = exc.errors
    # A 503 (the broker or the database away) says when to try again, as on every door.
    retry = {"Retry-After": str(RETRY_AFTER_SECONDS)} if exc.status == 503 else None
    return json_response({"status": "error", "error": error}, exc.status, retry)


def _meta(updated: datetime | None) -> dict[str, Any]:
    moment = (updated or datetime.now(UTC)).astimezone(UTC)
    return {
        "lastUpdateTimeUnix": int(moment.timestamp() * 1000),
        "lastUpdateTimeISO": moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z",
    }


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _gemini(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except GeminiError as exc:
            return _error(exc)

    wrapped.__doc__ = handler.__doc__
    wrapped.__name__ = handler.__name__
    return wrapped


def _entity(request: web.Request) -> EntitySchema:
    name = request.match_info["entity"]
    entity = request.app[keys.ENTITIES].get(name)
    if entity is None:
        raise GeminiError(404, f"Entity {name.upper()} not found")
    return entity


def _values(request: web.Request) -> Values:
    return Values(request.app[keys.ENTITIES])


def _key(request: web.Request, entity: EntitySchema) -> dict[str, Any]:
    # The segment as the client sent it, still percent-encoded (yarl's normalised URL would
    # have decoded %2C): a value containing the separator arrives as %2C and stays apart.
    path = request.raw_path.split("?", 1)[0].split("#", 1)[0]
    segment = path.rstrip("/").rsplit("/", 1)[-1]
    try:
        return _values(request).parse_lk(entity, segment)
    except (ConversionError, LogicalKeyMismatch) as exc:
        raise GeminiError(400, str(exc)) from exc


async def _payload(request: web.Request) -> Any:
    limit = request.app[keys.SETTINGS].entity_list_max_bytes
    if request.content_length is not None and request.content_length > limit:
        raise GeminiError(413, f"Request body is larger than {limit} bytes")
    try:
        body = await read_all(request)
    except web.RequestPayloadError as exc:
        raise GeminiError(400, unreadable_body(exc)) from exc
    if len(body) > limit:
        raise GeminiError(413, f"Request body is larger than {limit} bytes")
    try:
        payload = codec.loads(body)
    except orjson.JSONDecodeError as exc:
        raise GeminiError(400, f"Request body is not valid JSON: {exc}") from exc
    if _LONG_DIGITS.search(body):
        payload = _with_exact_integers(body, payload)
    if not isinstance(payload, dict) or "data" not in payload:
        raise GeminiError(400, "data field not found in request body")
    return payload["data"]


def _with_exact_integers(body: bytes, parsed: Any) -> Any:
    """``body`` read again by the standard parser, which keeps every integer exact.

    orjson has checked the body already (it refuses more than the standard parser, such as
    NaN and lone surrogates); past the standard parser's own limits its reading stands.
    """
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return parsed


def _row_view(values: Values, entity: EntitySchema, row: Any) -> dict[str, Any]:
    rendered: dict[str, Any] = _alphabetical(values.render(entity, row))
    return rendered


def _alphabetical(value: Any) -> Any:
    """Objects with their fields in alphabetical order, at every depth (jsonb keeps nested
    objects shortest key first)."""
    if isinstance(value, dict):
        return {key: _alphabetical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_alphabetical(item) for item in value]
    return value


# --- writes through the pipeline --------------------------------------------------------------


async def _write(
    request: web.Request,
    entity: EntitySchema,
    operation: Operation,
    records: list[Any],
    *,
    many: bool = False,
) -> tuple[str, list[StoredResult]]:
    """Publish ``records`` as one atomic chunk and wait for the batch; failures raise.

    Returns the batch id and its results."""
    app = request.app
    settings = app[keys.SETTINGS]
    options = ChunkOptions(publish_events=True, atomic=True)
    header = await batches.create(
        app[keys.POOL], entity.key, Source.REST, len(records), options, operation
    )
    try:
        # One chunk whatever its size: the list is one transaction.
        await app[keys.PRODUCER].send_many(
            chunk_messages(
                header.id,
                entity.key,
                records,
                len(records),
                options,
                operation=operation,
            )
        )
    except DeliveryError as exc:
        await batches.fail(app[keys.POOL], header.id, f"not accepted by the broker: {exc}")
        raise GeminiError(503, "The broker did not accept the request") from exc
    app[keys.METRICS].records_accepted.labels("data").inc(len(records))
    location = f"/api/v1/batch-inserts/{header.id}"
    try:
        if not await app[keys.WAITER].wait(header.id, settings.sync_wait_seconds):
            raise _Processing(header.id, location)
        results = await batches.results(app[keys.POOL], header.id)
    except Exception as exc:
        if not is_transient(exc):
            raise
        # Accepted: the record is on the broker whatever the database does now.
        raise _Processing(header.id, location) from exc
    raise_failures(entity, results, many=many)
    return header.id, results


class _Processing(Exception):
    def __init__(self, batch_id: str, location: str) -> None:
        super().__init__(batch_id)
        self.batch_id = batch_id
        self.location = location


async def _written(
    request: web.Request,
    entity: EntitySchema,
    operation: Operation,
    records: list[Any],
    *,
    many: bool = False,
) -> tuple[list[dict[str, Any]], datetime | None]:
    """``_write``, then the records as stored now; 202 (raised) if they cannot be read."""
    batch_id, results = await _write(request, entity, operation, records, many=many)
    try:
        return await _stored(request, entity, results)
    except Exception as exc:
        if not is_transient(exc):
            raise
        raise _Processing(batch_id, f"/api/v1/batch-inserts/{batch_id}") from exc


@dataclass(frozen=True)
class _Failed:
    """One refused record: why, its problems as ``error.errors`` lists them and, when its
    fields were invalid, Gemini's fieldValidationErrors."""

    index: int
    reason: str
    problems: list[dict[str, Any]]
    fields: FieldErrors | None = None
    conversion: bool = False


def _refused(status: int, failed: Sequence[_Failed], *, count: int, many: bool) -> GeminiError:
    """Gemini's answer: one record's own reason and fields, or for a list of ``count``
    records whose fields were invalid ``EntityRecords are invalid`` with an entry per record.
    A value not of its type, or any other failure, keeps the first failure's reason."""
    errors = [({"record": f.index} if many else {}) | p for f in failed for p in f.problems]
    shown_errors = errors if (many or len(errors) > 1) else None
    invalid = [f for f in failed if f.fields is not None]
    if not invalid or any(f.conversion for f in failed):
        return GeminiError(status, failed[0].reason, shown_errors)
    if not many:
        return GeminiError(status, failed[0].reason, shown_errors, fields=invalid[0].fields)
    by_index = {f.index: f.fields or {} for f in invalid}
    records = [by_index.get(index, {}) for index in range(count)]
    if len(invalid) < len(failed):
        # Fields of some records, and something else wrong with others: the first reason.
        return GeminiError(status, failed[0].reason, shown_errors, records=records)
    return GeminiError(status, RECORD_INVALID_LIST, shown_errors, records=records)


def raise_failures(entity: EntitySchema, results: Sequence[StoredResult], *, many: bool) -> None:
    """Raise the Gemini answer for a batch with failed records: the first one's reason."""
    failed = [r for r in results if r.status == "failed"]
    if not failed:
        return
    own = [r for r in failed if r.error != RecordError.NOT_PROCESSED.value] or failed
    status = _STATUS_BY_ERROR.get(own[0].error, 400) if own[0].error else 500
    failures = [_failure(entity, row) for row in own]
    raise _refused(status, failures, count=len(results), many=many)


def _failure(entity: EntitySchema, row: StoredResult) -> _Failed:
    """A failed result as the client reads it, whichever shape of details it carries."""
    details = parse_details(row.details)
    if row.error == RecordError.DATABASE_ERROR.value:
        message = details.message if isinstance(details, RecordDetails) else None
        reason = f"The database refused the record: {message or 'no reason given'}"
        return _Failed(row.index, reason, [{"reason": reason}])
    if isinstance(details, list):
        # Per-field errors: the inserter's own refusals, such as a NUL character it found
        # before any writer saw the record.
        problems = [
            ({"field": p.field} if p.field else {})
            | {"reason": str(p.message or p.type or row.error)}
            for p in details
        ]
        listed = ", ".join(" ".join(str(v) for v in p.values()) for p in problems)
        reason = f"Invalid record for Entity {entity.name}: {listed or row.error}"
        return _Failed(row.index, reason, problems or [{"reason": reason}])
    found = details if isinstance(details, RecordDetails) else RecordDetails()
    reason = found.reason or f"Record {row.index} failed: {row.error}"
    return _Failed(
        row.index,
        reason,
        found.errors or [{"reason": reason}],
        found.fieldValidationErrors,
        conversion=row.error == RecordError.CONVERSION_ERROR,
    )


def _canonical(
    request: web.Request,
    entity: EntitySchema,
    records: list[Any],
    *,
    many: bool = False,
    partial: bool = False,
) -> list[dict[str, Any]]:
    """The records as the writer will convert them, or the 400 the writer would answer.

    What is published is the canonical form: converted again by the writer it stays the
    same, and an integer beyond 64 bits in a DECIMAL travels as exact text.
    """
    values = _values(request)
    converted = [values.record(entity, raw, partial=partial) for raw in records]
    failed = []
    for index, record in enumerate(converted):
        if not record.ok:
            refusal = record.refusal(entity)
            conversion = refusal.kind == "conversion"
            failed.append(
                _Failed(index, refusal.reason, list(refusal.errors), refusal.fields, conversion)
            )
    if failed:
        raise _refused(400, failed, count=len(records), many=many)
    return [record.values for record in converted]


async def _stored(
    request: web.Request, entity: EntitySchema, results: Sequence[StoredResult]
) -> tuple[list[dict[str, Any]], datetime | None]:
    """What is stored now for the records written, in request order."""
    values = _values(request)
    wanted = [values.parse_lk(entity, r.entity_id) for r in results if r.entity_id is not None]
    rows = await entity_rows.by_keys(
        request.app[keys.POOL], request.app[keys.ENTITIES], entity, wanted
    )
    by_key = {values.lk_of(entity, values.render(entity, row)): row for row in rows}
    ordered = [by_key[values.lk_of(entity, key)] for key in wanted]
    return [_row_view(values, entity, row) for row in ordered], entity_rows.last_update(ordered)


def _success(data: Any, updated: datetime | None, status: int = 200) -> web.Response:
    return json_response({"status": "success", "data": data, "meta": _meta(updated)}, status)


def _processing(exc: _Processing) -> web.Response:
    body = {"status": BatchStatus.PROCESSING, "data": None, "meta": {"batchId": exc.batch_id}}
    return json_response(body, 202, {"Location": exc.location})


@_gemini
async def insert_data(request: web.Request) -> web.StreamResponse:
    """Insert one record or a list (all or nothing)."""
    entity = _entity(request)
    data = await _payload(request)
    many = isinstance(data, list)
    records = data if many else [data]
    if not records:
        raise GeminiError(400, "data must hold at least one record")
    most = request.app[keys.SETTINGS].max_records_per_request
    if len(records) > most:
        raise GeminiError(413, f"A list holds at most {most} records")
    canonical = _canonical(request, entity, records, many=many)
    try:
        rows, updated = await _written(request, entity, Operation.INSERT, canonical, many=many)
    except _Processing as exc:
        return _processing(exc)
    return _success(rows if many else rows[0], updated)


async def _change(request: web.Request, operation: Operation) -> web.StreamResponse:
    entity = _entity(request)
    key = _key(request, entity)
    data = await _payload(request)
    if not isinstance(data, dict):
        raise GeminiError(400, "data must be a JSON object")
    values = _values(request)
    for spec in entity.lk_fields:
        value = key[spec.name]
        if data.get(spec.name) is not None:
            try:
                same = values.from_json(spec, data[spec.name]) == value
            except ConversionError:
                same = False
            if not same:
                raise GeminiError(
                    400,
                    f"Logical key field {spec.name} cannot change: the URL says"
                    f" {sql_text(value)}, the body {data[spec.name]}",
                )
    record = _canonical(request, entity, [data | key], partial=operation == Operation.PATCH)
    try:
        rows, updated = await _written(request, entity, operation, record)
    except _Processing as exc:
        return _processing(exc)
    return _success(rows[0], updated)


@_gemini
async def replace_record(request: web.Request) -> web.StreamResponse:
    """Replace a record (fields left out become empty)."""
    return await _change(request, Operation.UPDATE)


@_gemini
async def patch_record(request: web.Request) -> web.StreamResponse:
    """Update only the fields given."""
    return await _change(request, Operation.PATCH)


@_gemini
async def delete_record(request: web.Request) -> web.StreamResponse:
    """Delete a record; answers what was deleted."""
    entity, key, before = await _addressed(request)
    # Read first (above): once the pipeline has deleted it, only its domain event knows it.
    try:
        await _write(request, entity, Operation.DELETE, [key])
    except _Processing as exc:
        return _processing(exc)
    data = _row_view(_values(request), entity, before[0]) if before else dict(sorted(key.items()))
    return _success(data, None)


async def _addressed(
    request: web.Request,
) -> tuple[EntitySchema, dict[str, Any], list[asyncpg.Record]]:
    """The entity and logical key the URL names, and the stored row (none or one)."""
    entity = _entity(request)
    key = _key(request, entity)
    rows = await entity_rows.by_keys(
        request.app[keys.POOL], request.app[keys.ENTITIES], entity, [key]
    )
    return entity, key, rows


# --- reads ------------------------------------------------------------------------------------


@_gemini
async def get_record(request: web.Request) -> web.StreamResponse:
    """One record by its logical key."""
    entity, key, rows = await _addressed(request)
    if not rows:
        text = _values(request).lk_text(entity, tuple(key.values()))
        raise GeminiError(404, f"EntityRecord with id {text} not found for {entity.name}")
    return _success(_row_view(_values(request), entity, rows[0]), rows[0]["_updated_at"])


def _int_parameter(request: web.Request, name: str, default: int, minimum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    # ASCII digits, few enough that int() is cheap and the value may fit.
    value = int(raw) if re.fullmatch(r"[0-9]{1,19}", raw) else None
    if value is None or not minimum <= value <= _BIGINT_MAX:
        raise GeminiError(
            400, f"Query parameter {name} must be an integer from {minimum} to {_BIGINT_MAX}"
        )
    return value


def _filters(request: web.Request, entity: EntitySchema) -> list[entity_rows.Filter]:
    values = _values(request)
    grouped: dict[tuple[FieldSpec, str], list[str]] = {}
    for name, raw in request.query.items():
        if name in _PAGING:
            continue
        match = _FILTER.match(name)
        spec = entity.field(match[1]) if match else None
        if match is None or spec is None:
            raise GeminiError(400, f"Field {name} not found for entity {entity.name}")
        operator = match[2] or "EQ"
        allowed = entity_rows.OPERATORS.get(operator)
        if allowed is None or spec.type not in allowed:
            raise GeminiError(
                400, f"Filter {operator} is not available for field {spec.name} ({spec.type})"
            )
        try:
            if operator in ("CONTAINS", "STARTS_WITH"):
                canonical: Any = values.search_text(spec, raw)
            else:
                canonical = values.from_text(spec, raw)
        except ConversionError as exc:
            raise GeminiError(400, str(exc)) from exc
        text = sql_text(canonical)
        grouped.setdefault((spec, operator), []).append(text)
    return [
        entity_rows.Filter(spec, operator, tuple(texts))
        for (spec, operator), texts in grouped.items()
    ]


def _orders(request: web.Request, entity: EntitySchema) -> list[entity_rows.Order]:
    orders = []
    for item in filter(None, request.query.get("orderBy", "").split(",")):
        name = item.removeprefix("-")
        spec = entity.field(name)
        if spec is None or spec.type in (FieldType.OBJECT, FieldType.ARRAY):
            raise GeminiError(400, f"Cannot order by {name}: not a sortable field of {entity.name}")
        orders.append(entity_rows.Order(spec, item.startswith("-")))
    return orders


@_gemini
async def list_data(request: web.Request) -> web.StreamResponse:
    """Records, filtered (field=v, field[OP]=v), ordered (orderBy=-field) and paged."""
    entity = _entity(request)
    settings = request.app[keys.SETTINGS]
    start = _int_parameter(request, "start", 0, 0)
    limit = min(
        _int_parameter(request, "limit", settings.page_limit_max, 1), settings.page_limit_max
    )
    result = await entity_rows.page(
        request.app[keys.POOL],
        request.app[keys.ENTITIES],
        entity,
        _filters(request, entity),
        _orders(request, entity),
        start,
        limit,
    )
    values = _values(request)
    meta = _meta(entity_rows.last_update(result.rows)) | {
        "start": start,
        "limit": limit,
        "total": result.total,
    }
    data = [_row_view(values, entity, row) for row in result.rows]
    return json_response({"status": "success", "data": data, "meta": meta})


@_gemini
async def list_entities(request: web.Request) -> web.StreamResponse:
    """Every entity schema."""
    data = [entity.describe() for entity in request.app[keys.ENTITIES]]
    return json_response({"status": "success", "data": data})


@_gemini
async def get_entity(request: web.Request) -> web.StreamResponse:
    """One entity schema."""
    return json_response({"status": "success", "data": _entity(request).describe()})


def add_routes(app: web.Application) -> None:
    for base in ("/data/{entity}", "/data/{entity}/"):
        app.router.add_get(base, list_data)
        app.router.add_post(base, insert_data)
    for record in ("/data/{entity}/{lk}", "/data/{entity}/{lk}/"):
        app.router.add_get(record, get_record)
        app.router.add_put(record, replace_record)
        app.router.add_patch(record, patch_record)
        app.router.add_delete(record, delete_record)
    app.router.add_get("/entity", list_entities)
    app.router.add_get("/entity/{entity}", get_entity)
    # Documented per entity, at the paths without the trailing slash.
    describe_entities(app[DESCRIPTION], app[keys.ENTITIES], app[keys.SETTINGS], "/data")
