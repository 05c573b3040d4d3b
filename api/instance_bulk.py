"""Front door 2: FOLIO's Instance Bulk API, ``POST /instance-storage/instances/bulk``.

The request names an NDJSON file in object storage. The file is copied to a local spool
first (streamed), so a store that fails half-way fails the request before anything is
written. Then its lines become chunk envelopes (operation ``upsert``) as they are read; a
line that is not a JSON object is a failed record straight away. Once the batch completes,
the failed records' original lines go to ``<file>_failedEntities`` and ``<id or line
number>, <message>`` lines to ``<file>_errors`` in the same store. The batch is a batch
operation like any other: ``GET /api/v1/batch-inserts/{id}`` shows it (source ``bulk``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import asyncpg
import orjson
from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictStr,
    ValidationError,
)

from api import keys
from api.batch_inserts import BASE as BATCH_INSERTS
from api.errors import ErrorRenderer
from api.openapi import DESCRIPTION, Answer, ApiOperation, Parameter, add_operation, location_header
from api.requests import read_all, unreadable_body
from api.responses import json_response
from api.tenancy import TENANT_HEADER, requested_tenant
from batchline.records import RecordDetails, details_json, parse_details
from batchline.settings import Settings
from batchline.storage import (
    MAX_KEY_BYTES,
    MAX_NAME_BYTES,
    READ_CHUNK_BYTES,
    InvalidKey,
    LineReader,
    ObjectNotFound,
    ObjectStorage,
    StorageError,
    copy_lines,
    object_key,
    open_storage,
)
from batchline.tenants import TENANT_PATTERN, Tenants
from batchline.vocabulary import BatchStatus, Operation, RecordError, RecordStatus, Source
from sql import batches, results
from sql.db import is_transient
from streams import codec
from streams.envelopes import INSTANCE_ENTITY, ChunkOptions
from streams.events import ChunkOutcome, encode_outcome
from streams.producer import AsyncProducer, DeliveryError
from streams.publisher import chunk_messages

log = logging.getLogger(__name__)

PATH = "/instance-storage/instances/bulk"
FAILED_ENTITIES_SUFFIX = "_failedEntities"
ERRORS_SUFFIX = "_errors"
TAG = "instance-storage"
# Failed lines found by the front door are projected in groups of this many.
_UNREADABLE_BATCH = 1000

STORAGE = web.AppKey("storage", ObjectStorage)
# Event topics this process has made sure of.


# --- The seed's schemas ---------------------------------------------------------------------

# A file name the store takes, as a pattern: '/'-separated parts, none empty, '.' or '..'.
# Parts of at most a quarter of the bytes a part may have, so any characters fit.
_PART = r"(?:[^/.\u0000][^/\u0000]{0,62}|\.[^/.\u0000][^/\u0000]{0,61}|\.\.[^/\u0000]{1,61})"
_FILE_NAME: dict[str, JsonValue] = {
    "pattern": rf"^/*{_PART}(?:/{_PART})*$",
    "maxLength": MAX_KEY_BYTES // 4,
}
assert MAX_NAME_BYTES >= 63 * 4


class InstancesBulkRequest(BaseModel):
    """Bulk entities upsert request."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"recordsFileName": "migration/chunk-1.ndjson", "publishEvents": True}]
        },
    )

    recordsFileName: StrictStr = Field(
        min_length=1,
        json_schema_extra=_FILE_NAME,
        description="File name of entities records: an NDJSON file (one instance per line)"
        " in object storage.",
    )
    publishEvents: StrictBool = Field(
        default=True, description="A flag that indicates whether domain events should be published."
    )


class InstancesBulkResponse(BaseModel):
    """Bulk entities upsert response."""

    model_config = ConfigDict(extra="forbid")

    errorRecordsFileName: str = Field(description="File name of failed entities")
    errorsFileName: str = Field(description="File name of error details")
    errorsNumber: int = Field(description="Total number of errors")


class FolioErrorParameter(BaseModel):
    key: str
    value: str


class FolioError(BaseModel):
    message: str
    type: str
    code: str
    parameters: list[FolioErrorParameter] = []


class FolioErrors(BaseModel):
    """A set of errors."""

    errors: list[FolioError]
    total_records: int


# --- FOLIO's response formats ------------------------------------------------------------


def _error(message: str, key: str | None = None, value: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": "1", "code": "-1"}
    if key is not None:
        shown = value if isinstance(value, str) else orjson.dumps(value).decode()
        error["parameters"] = [{"key": key, "value": shown}]
    return error


def errors_response(errors: list[dict[str, Any]], status: int = 422) -> web.Response:
    return json_response({"errors": errors, "total_records": len(errors)}, status=status)


def text_response(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message, content_type="text/plain")


# Refusals of the request itself, answered as FOLIO's errors; the rest (500) as text.
_JSON_STATUSES = frozenset({401, 403, 415, 422})


def render_error(status: int, message: str) -> web.StreamResponse:
    """Errors the middleware renders under this path: FOLIO's errors, or text for 5xx."""
    if status in _JSON_STATUSES:
        return errors_response([_error(message)], status)
    return text_response(status, message)


# --- The request -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BulkRequest:
    key: str
    publish_events: bool
    tenant: str


_FOLIO_MESSAGES = {
    "extra_forbidden": "Unrecognized field",
    "missing": "must not be null",
    "string_type": "must be a string",
    "bool_type": "must be a boolean",
}


def _validate(payload: Any, tenant: str, tenants: Tenants) -> BulkRequest | list[dict[str, Any]]:
    """The request, or FOLIO-style errors naming every offending key."""
    if not isinstance(payload, dict):
        return [_error("Request body must be a JSON object")]
    errors = []
    key = ""
    try:
        wanted = InstancesBulkRequest.model_validate(payload)
    except ValidationError as exc:
        for problem in exc.errors(include_url=False, include_context=False):
            name = str(problem["loc"][0])
            value = payload.get(name, "null")
            if problem["type"] == "extra_forbidden":
                errors.append(_error(f'Unrecognized field "{name}"', name, value))
            elif name == "recordsFileName" and payload.get(name) is None:
                errors.append(_error("must not be null", name, "null"))
            elif problem["type"] == "string_too_short":
                errors.append(_error("must name a file", name, value))
            else:
                message = _FOLIO_MESSAGES.get(problem["type"], problem["msg"])
                errors.append(_error(message, name, value))
        publish_events = True
    else:
        publish_events = wanted.publishEvents
        try:
            key = object_key(wanted.recordsFileName)
        except InvalidKey as exc:
            errors.append(_error(str(exc), "recordsFileName", wanted.recordsFileName))
        prefix = tenants.key_prefix(tenant)
        if key and prefix is not None and not key.startswith(prefix):
            message = f"must be under {prefix} for this tenant"
            errors.append(_error(message, "recordsFileName", wanted.recordsFileName))
    refusal = tenants.refusal(tenant)
    if refusal is not None:
        errors.append(_error(refusal, TENANT_HEADER, tenant))
    if errors:
        return errors
    return BulkRequest(key, publish_events, tenant)


async def bulk_upsert_instances(request: web.Request) -> web.StreamResponse:
    """Upsert the instances of an NDJSON file in object storage (FOLIO Instance Bulk API)."""
    settings = request.app[keys.SETTINGS]
    try:
        payload = orjson.loads(await read_all(request))
    except orjson.JSONDecodeError:
        return errors_response([_error("Request body is not valid JSON")])
    except web.RequestPayloadError as exc:
        return errors_response([_error(unreadable_body(exc))])
    validated = _validate(payload, requested_tenant(request), settings.tenant_policy())
    if isinstance(validated, list):
        return errors_response(validated)

    storage = request.app[STORAGE]
    try:
        if not await storage.exists(validated.key):
            raise ObjectNotFound(validated.key)
        async with _spooled(storage, validated.key, settings.data_dir / "spool") as spool:
            return await _process(request, validated, spool)
    except StorageError as exc:
        log.warning("instance bulk upsert of %s: %s", validated.key, exc)
        return text_response(500, str(exc))
    except _Unfinished as exc:
        return text_response(500, str(exc))


class _Unfinished(Exception):
    """The batch did not complete; the answer says where to follow it."""


# --- Spooling ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spool:
    path: Path
    line_count: int


@contextlib.asynccontextmanager
async def _spooled(storage: ObjectStorage, key: str, directory: Path) -> AsyncIterator[Spool]:
    """A local copy of the object, streamed, with its line count; removed afterwards."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    descriptor, name = await asyncio.to_thread(tempfile.mkstemp, ".ndjson", None, directory)
    path = Path(name)
    handle: IO[bytes] = await asyncio.to_thread(os.fdopen, descriptor, "wb")
    try:
        newlines = 0
        last = b"\n"
        try:
            async for chunk in storage.read_chunks(key):
                await asyncio.to_thread(handle.write, chunk)
                newlines += chunk.count(b"\n")
                last = chunk[-1:]
        finally:
            handle.close()
        yield Spool(path, newlines + (0 if last == b"\n" else 1))
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)


async def _spool_chunks(path: Path) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, READ_CHUNK_BYTES):
            yield chunk
    finally:
        handle.close()


# --- Processing --------------------------------------------------------------------------


async def _process(request: web.Request, bulk: BulkRequest, spool: Spool) -> web.StreamResponse:
    app = request.app
    settings = app[keys.SETTINGS]
    pool = app[keys.POOL]
    failed_key = bulk.key + FAILED_ENTITIES_SUFFIX
    errors_key = bulk.key + ERRORS_SUFFIX
    storage = app[STORAGE]
    if spool.line_count == 0:
        await storage.write(errors_key, b"")
        await storage.write(failed_key, b"")
        return _answer(failed_key, errors_key, 0)

    options = ChunkOptions(publish_events=bulk.publish_events, tenant=bulk.tenant)
    header = await batches.create(
        pool, INSTANCE_ENTITY, Source.BULK, spool.line_count, options, Operation.UPSERT
    )
    try:
        await _publish_lines(app[keys.PRODUCER], pool, settings, header.id, options, spool)
    except DeliveryError as exc:
        await batches.fail(pool, header.id, f"not accepted by the broker: {exc}")
        raise _Unfinished(f"Bulk operation {header.id}: the broker did not accept it") from exc
    app[keys.METRICS].records_accepted.labels("instance-bulk").inc(spool.line_count)
    try:
        return await _answer_when_done(request, header.id, failed_key, errors_key, spool)
    except Exception as exc:
        if not is_transient(exc):
            raise
        # Accepted: its records are on the broker whatever the database does now.
        log.warning("accepted bulk operation %s answered 202: %s", header.id, exc)
        location = f"{BATCH_INSERTS}/{header.id}"
        return web.Response(
            status=202,
            text=f"Bulk operation {header.id} was accepted, but the database is unavailable"
            f" to finish its answer; see GET {location}",
            content_type="text/plain",
            headers={"Location": location},
        )


async def _answer_when_done(
    request: web.Request, batch_id: str, failed_key: str, errors_key: str, spool: Spool
) -> web.StreamResponse:
    app = request.app
    settings = app[keys.SETTINGS]
    pool = app[keys.POOL]
    storage = app[STORAGE]
    finished = await app[keys.WAITER].wait(batch_id, settings.bulk_wait_seconds)
    current = await batches.get(pool, batch_id)
    assert current is not None
    if not finished or current.status != BatchStatus.COMPLETED:
        state = current.failure_reason or f"still processing after {settings.bulk_wait_seconds} s"
        raise _Unfinished(
            f"Bulk operation {batch_id} did not complete ({state});"
            f" see GET {BATCH_INSERTS}/{batch_id}"
        )
    await storage.write(errors_key, _error_lines(pool, batch_id))
    await storage.write(
        failed_key, copy_lines(_spool_chunks(spool.path), _failed_line_numbers(pool, batch_id))
    )
    return _answer(failed_key, errors_key, current.failed_count, batch_id)


def _answer(
    failed_key: str, errors_key: str, errors_number: int, batch_id: str | None = None
) -> web.Response:
    """FOLIO's answer; ``Location`` names the batch operation behind it, if there is one."""
    headers = {"Location": f"{BATCH_INSERTS}/{batch_id}"} if batch_id else None
    return json_response(
        {
            "errorRecordsFileName": failed_key,
            "errorsFileName": errors_key,
            "errorsNumber": errors_number,
        },
        status=201,
        headers=headers,
    )


def _parse(line_number: int, data: bytes | None, max_bytes: int) -> tuple[Any, str | None]:
    """The record on a line, or why there is none."""
    if data is None:
        return None, f"Line {line_number} is longer than {max_bytes} bytes"
    if not data.strip():
        return None, f"Line {line_number} is empty; an instance (JSON object) was expected"
    try:
        # A lone surrogate in a value is read, so the record fails for it by name.
        record = codec.loads(data)
    except orjson.JSONDecodeError as exc:
        return None, f"Line {line_number} is not valid JSON: {exc}"
    if not isinstance(record, dict):
        return None, f"Line {line_number} is not a JSON object"
    return record, None


async def _publish_lines(
    producer: AsyncProducer,
    pool: asyncpg.Pool,
    settings: Settings,
    batch_id: str,
    options: ChunkOptions,
    spool: Spool,
) -> None:
    """Line n is record n-1. Records go out in chunks bounded by count and bytes."""
    total = spool.line_count
    max_bytes = settings.bulk_chunk_max_bytes
    records: list[Any] = []
    indices: list[int] = []
    chunk_bytes = 0
    unreadable: list[tuple[int, RecordDetails]] = []  # index, why

    async def send() -> None:
        await producer.send_many(
            chunk_messages(
                batch_id,
                INSTANCE_ENTITY,
                records,
                len(records),
                options,
                record_count=total,
                indices=indices,
                operation=Operation.UPSERT,
            )
        )
        records.clear()
        indices.clear()

    async def fail_unreadable() -> None:
        outcome = encode_outcome(
            batch_id,
            INSTANCE_ENTITY,
            0,
            total,
            (
                (index, RecordStatus.FAILED, None, RecordError.VALIDATION_ERROR,
                 details_json(details))
                for index, details in unreadable
            ),
        )  # fmt: skip
        async with pool.acquire() as conn, conn.transaction():
            projected = await results.project(
                conn, [(ChunkOutcome.model_validate_json(outcome), outcome)]
            )
            if projected.completed:  # told at commit
                await batches.notify_done(conn, projected.completed)
        unreadable.clear()

    reader = LineReader(max_bytes)
    async for line in reader.lines(_spool_chunks(spool.path)):
        record, problem = _parse(line.number, line.data, max_bytes)
        if problem is not None:
            unreadable.append((line.number - 1, RecordDetails(message=problem, line=line.number)))
            if len(unreadable) >= _UNREADABLE_BATCH:
                await fail_unreadable()
            continue
        size = len(line.data or b"")
        if records and (len(records) >= settings.chunk_size or chunk_bytes + size > max_bytes):
            await send()
            chunk_bytes = 0
            if unreadable:
                # Results of lines near each other stay in rows near each other: a page of
                # results reads the rows it falls in, and no group spans the whole file.
                await fail_unreadable()
        records.append(record)
        indices.append(line.number - 1)
        chunk_bytes += size
    if records:
        await send()
    if unreadable:
        await fail_unreadable()


# --- Error files -------------------------------------------------------------------------


def _message(error: str | None, stored_details: Any) -> str:
    details = parse_details(stored_details)
    # One object (database and locking errors) or per-field errors (a NUL character).
    items = details if isinstance(details, list) else [details] if details else []
    messages = [item.message for item in items if item.message is not None]
    text = "; ".join(messages) or error or "failed"
    return " ".join(text.split())  # one line per error, whatever the message holds


async def _error_lines(pool: asyncpg.Pool, batch_id: str) -> AsyncIterator[bytes]:
    """``<id or line number>, <message>`` per failed record, a page of them at a time."""
    async for record in results.failed(pool, batch_id):
        identifier = record.record_id or str(record.index + 1)
        yield f"{identifier}, {_message(record.error, record.details)}\n".encode()


async def _failed_line_numbers(pool: asyncpg.Pool, batch_id: str) -> AsyncIterator[int]:
    async for index in results.failed_indices(pool, batch_id):
        yield index + 1


# --- Wiring ------------------------------------------------------------------------------


async def _storage(app: web.Application) -> AsyncIterator[None]:
    async with open_storage(app[keys.SETTINGS]) as storage:
        app[STORAGE] = storage
        yield


def add_routes(app: web.Application, renderers: dict[str, ErrorRenderer]) -> None:
    app.cleanup_ctx.append(_storage)
    renderers["/instance-storage/"] = render_error
    app[DESCRIPTION].tags[TAG] = "Front door 2: FOLIO's Instance Bulk API."
    text = {"type": "string"}
    operation = ApiOperation(
        "POST",
        PATH,
        "upsertInstancesBulk",
        "Update or create the instances of an NDJSON file in object storage",
        TAG,
        (
            Answer(
                201,
                "At least one Instance from the list was updated/created",
                InstancesBulkResponse,
                headers=(location_header("The batch operation behind the answer"),),
            ),
            Answer(413, "The request body is too large", text, "text/plain"),
            Answer(422, "Validation errors", FolioErrors),
            Answer(
                500,
                "Internal server error: the file is missing or unreadable, or the store is down",
                text,
                "text/plain",
            ),
        ),
        body=InstancesBulkRequest,
        parameters=(
            Parameter(
                TENANT_HEADER,
                "header",
                {"type": "string", "pattern": TENANT_PATTERN},
                "The tenant whose events topic gets the domain events"
                " (default BATCHLINE_DEFAULT_TENANT).",
            ),
        ),
    )
    add_operation(app, operation, bulk_upsert_instances)
