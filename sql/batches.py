"""Batch operations in PostgreSQL: headers, projected results, retries, idempotency keys.

Shared by every front door; the HTTP layer only maps these to status codes and bodies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from batchline.vocabulary import BatchStatus, Operation, ResultFilter, Source
from sql import ledger
from sql import results as results_
from streams.envelopes import IGNORE_CONSTRAINTS_ENTITIES, ChunkOptions, IngestChunk

# Notified, with the batch id, when a batch finishes: waiting API instances answer at once.
BATCH_DONE_CHANNEL = "batchline_batch_done"


@dataclass(frozen=True, slots=True)
class BatchHeader:
    id: str
    entity: str
    operation: Operation
    source: Source
    record_count: int
    status: BatchStatus
    inserted_count: int
    updated_count: int
    failed_count: int
    attempt: int
    options: ChunkOptions
    failure_reason: str | None
    created_at: datetime
    completed_at: datetime | None
    updated_at: datetime | None


_HEADER_COLUMNS = """id, entity, operation, source, record_count, status, inserted_count,
    updated_count, failed_count, attempt, options, failure_reason, created_at, completed_at,
    updated_at"""


def _header(row: asyncpg.Record) -> BatchHeader:
    values = dict(row)
    values["options"] = ChunkOptions.model_validate(values["options"] or {})
    values["operation"] = Operation(values["operation"])
    values["source"] = Source(values["source"])
    values["status"] = BatchStatus(values["status"])
    return BatchHeader(**values)


_ID_DRAWS = 1000


async def create(
    conn: asyncpg.Connection | asyncpg.Pool,
    entity: str,
    source: Source,
    record_count: int,
    options: ChunkOptions,
    operation: Operation = Operation.INSERT,
) -> BatchHeader:
    # A Kafka producer may have named its own batch like ours ("batch-446"): draw again.
    for _ in range(_ID_DRAWS):
        row = await conn.fetchrow(
            f"""INSERT INTO batch (entity, source, record_count, pending_count, options, operation)
                VALUES ($1, $2, $3, $3, $4, $5)
                ON CONFLICT (id) DO NOTHING RETURNING {_HEADER_COLUMNS}""",
            entity,
            source,
            record_count,
            options.model_dump(),
            operation,
        )
        if row is not None:
            return _header(row)
    raise RuntimeError(f"no free batch id after {_ID_DRAWS} draws")


# The batch's header as stored, whether this chunk wrote it or an earlier one (or a front
# door) did: the statement's snapshot does not see its own insert, so one side is empty.
_ENSURE_HEADER = """
WITH inserted AS (
    INSERT INTO batch
        (id, entity, source, record_count, pending_count, attempt, options, operation)
    -- Not for more records than a Kafka-produced batch may have: the caller refuses it.
    SELECT $1, $2, 'kafka', $3::int, $3::int, $4::int, $5::jsonb, $6 WHERE $3::int <= $7::int
    ON CONFLICT (id) DO NOTHING
    RETURNING entity, record_count, operation, attempt, created_at
)
SELECT entity, record_count, operation, attempt, created_at FROM inserted
UNION ALL
SELECT entity, record_count, operation, attempt, created_at FROM batch WHERE id = $1
LIMIT 1
"""


async def ensure_header(
    conn: asyncpg.Connection | asyncpg.Pool, chunk: IngestChunk, batch_id: str, max_records: int
) -> asyncpg.Record | None:
    """The header of a batch a Kafka producer started, written by its first chunk; None
    when there is none and the chunk states more than ``max_records`` records."""
    return await conn.fetchrow(
        _ENSURE_HEADER,
        batch_id,
        chunk.entity.lower(),
        chunk.total_records,
        chunk.attempt,
        chunk.options.model_dump(),
        chunk.operation,
        max_records,
    )


async def get(conn: asyncpg.Connection | asyncpg.Pool, batch_id: str) -> BatchHeader | None:
    row = await conn.fetchrow(f"SELECT {_HEADER_COLUMNS} FROM batch WHERE id = $1", batch_id)
    return _header(row) if row else None


async def results(
    conn: asyncpg.Connection | asyncpg.Pool, batch_id: str
) -> list[results_.StoredResult]:
    """Every per-record result, for front doors whose batches are small (one request)."""
    return [r async for r in results_.iter_results(conn, batch_id, ResultFilter.ALL)]


@dataclass(frozen=True, slots=True)
class BatchFilter:
    """Which batches a list shows; every given field must match."""

    status: str | None = None
    entity: str | None = None
    source: str | None = None
    # A batch id, or the Idempotency-Key a batch was posted with.
    search: str | None = None


# Batches the filter matches ($1-$4) that a tenant ($6) sees: its own and those of no
# tenant. An instance batch without one was written for the default tenant ($5);
# api.tenancy.batch_tenant says the same in Python.
_FILTERED = """($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR entity = $2)
    AND ($3::text IS NULL OR source = $3)
    AND ($4::text IS NULL OR id = $4
         OR id = (SELECT batch_id FROM idempotency_key WHERE key = $4))
    AND coalesce(options ->> 'tenant', CASE WHEN entity = 'instance' THEN $5 END, $6) = $6"""


async def page(
    conn: asyncpg.Connection | asyncpg.Pool,
    page: int,
    limit: int,
    filters: BatchFilter,
    *,
    tenant: str,
    default_tenant: str,
) -> tuple[list[BatchHeader], int]:
    wanted = (
        *(filters.status, filters.entity, filters.source, filters.search),
        default_tenant,
        tenant,
    )
    rows = await conn.fetch(
        f"""SELECT {_HEADER_COLUMNS}, count(*) OVER () AS total FROM batch WHERE {_FILTERED}
            ORDER BY created_at DESC, id DESC LIMIT $7 OFFSET $8""",
        *wanted,
        limit,
        (page - 1) * limit,
    )
    if rows:
        return [_header(dict_without(row, "total")) for row in rows], rows[0]["total"]
    total = await conn.fetchval(f"SELECT count(*) FROM batch WHERE {_FILTERED}", *wanted)
    return [], int(total)


async def count_by_status(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, int]:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM batch GROUP BY status")
    return {row["status"]: row["n"] for row in rows}


def dict_without(row: asyncpg.Record, column: str) -> Any:
    return {k: v for k, v in row.items() if k != column}


class BatchMissing(Exception):
    """No batch has this id."""


class BatchStillProcessing(Exception):
    """The batch has not finished: it can be neither retried nor deleted yet."""


async def is_finished(pool: asyncpg.Pool, batch_id: str) -> bool:
    """True once the batch is no longer processing (or no longer exists)."""
    status = await pool.fetchval("SELECT status FROM batch WHERE id = $1", batch_id)
    return bool(status != BatchStatus.PROCESSING)


async def notify_done(conn: asyncpg.Connection | asyncpg.Pool, batch_ids: Sequence[str]) -> None:
    """Tell API instances waiting on these batches (``LISTEN BATCH_DONE_CHANNEL``) to look.

    Inside a transaction the notification is delivered at commit.
    """
    await conn.execute(
        "SELECT pg_notify($1, id) FROM unnest($2::text[]) AS id", BATCH_DONE_CHANNEL, batch_ids
    )


async def delete(pool: asyncpg.Pool, batch_id: str) -> None:
    """Remove the operation and its results (never the entity rows).

    Raises BatchMissing or BatchStillProcessing when it cannot.
    """
    async with pool.acquire() as conn, conn.transaction():
        status = await conn.fetchval("SELECT status FROM batch WHERE id = $1 FOR UPDATE", batch_id)
        if status is None:
            raise BatchMissing(batch_id)
        if status == BatchStatus.PROCESSING:
            raise BatchStillProcessing(batch_id)
        await conn.execute("DELETE FROM chunk_result WHERE batch_id = $1", batch_id)
        await ledger.delete(conn, batch_id)
        await conn.execute("DELETE FROM idempotency_key WHERE batch_id = $1", batch_id)
        await conn.execute("DELETE FROM batch WHERE id = $1", batch_id)


@dataclass(frozen=True, slots=True)
class RetryPlan:
    header: BatchHeader
    payloads: dict[int, Any]


class RetryRefused(Exception):
    """A retry the batch cannot take; ``details`` says why, field by field."""

    def __init__(self, details: dict[str, Any]) -> None:
        super().__init__(details)
        self.details = details


class RetryNotSupported(RetryRefused):
    """The request asks for something this batch's entity cannot do."""


class RetryIndicesInvalid(RetryRefused):
    """Indices out of range, of records that did not fail, or without a stored payload."""


async def start_retry(
    pool: asyncpg.Pool, batch_id: str, indices: Sequence[int], ignore_constraints: bool
) -> RetryPlan:
    """Move the batch to a new attempt for ``indices`` and return their stored payloads.

    Raises BatchMissing, BatchStillProcessing, RetryNotSupported or RetryIndicesInvalid.
    """
    async with pool.acquire() as conn, conn.transaction():
        header_row = await conn.fetchrow(
            f"SELECT {_HEADER_COLUMNS} FROM batch WHERE id = $1 FOR UPDATE", batch_id
        )
        if header_row is None:
            raise BatchMissing(batch_id)
        header = _header(header_row)
        if header.status == BatchStatus.PROCESSING:
            raise BatchStillProcessing(batch_id)
        if ignore_constraints and header.entity not in IGNORE_CONSTRAINTS_ENTITIES:
            raise RetryNotSupported(
                {"ignore_constraints": f"not supported for {header.entity} batches"},
            )
        out_of_range = [i for i in indices if not 0 <= i < header.record_count]
        in_range = [i for i in indices if 0 <= i < header.record_count]
        # A failed record is retried from the payload its ledger row kept; some never had
        # one (a line of a bulk file that was no JSON, records the broker lost).
        stored = await _failed_payloads(conn, batch_id, in_range)
        failed = {i: payload for i, payload in stored.items() if payload is not None}
        not_failed = [i for i in in_range if i not in stored]
        without_payload = [i for i in in_range if i in stored and i not in failed]
        if out_of_range or not_failed or without_payload:
            raise RetryIndicesInvalid(
                {
                    "out_of_range": out_of_range,
                    "not_failed": not_failed,
                    "without_payload": without_payload,
                },
            )
        options = header.options.model_copy(update={"ignore_constraints": ignore_constraints})
        row = await conn.fetchrow(
            f"""UPDATE batch SET attempt = attempt + 1, status = 'processing',
                    pending_count = $2, options = $3, updated_at = now(),
                    completed_at = NULL, failure_reason = NULL, progressed_at = now()
                WHERE id = $1 RETURNING {_HEADER_COLUMNS}""",
            batch_id,
            len(indices),
            options.model_dump(),
        )
        assert row is not None
        return RetryPlan(_header(row), failed)


async def _failed_payloads(
    conn: asyncpg.Connection, batch_id: str, indices: Sequence[int]
) -> dict[int, Any]:
    """Of ``indices``, those whose current result is failed, with the payload kept for a
    retry (None when none was)."""
    failed = await results_.failed_among(conn, batch_id, indices)
    documents = await ledger.failed_payloads(conn, batch_id, sorted(set(failed.values())))
    kept = {chunk: orjson.loads(document) for chunk, document in documents.items()}
    return {index: kept.get(chunk, {}).get(str(index)) for index, chunk in failed.items()}


async def fail(pool: asyncpg.Pool, batch_id: str, reason: str) -> None:
    await pool.execute(
        """UPDATE batch SET status = 'failed', failure_reason = $2, completed_at = now()
           WHERE id = $1 AND status = 'processing'""",
        batch_id,
        reason,
    )
