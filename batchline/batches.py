"""Batch operations in PostgreSQL: headers, projected results, retries, idempotency keys.

Shared by every front door; the HTTP layer only maps these to status codes and bodies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from streams.envelopes import IGNORE_CONSTRAINTS_ENTITIES, ChunkOptions


@dataclass(frozen=True, slots=True)
class BatchHeader:
    id: str
    entity: str
    operation: str
    source: str
    record_count: int
    status: str
    inserted_count: int
    failed_count: int
    attempt: int
    options: ChunkOptions
    failure_reason: str | None
    created_at: datetime
    completed_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class RecordRow:
    index: int
    status: str
    entity_id: str | None
    error: str | None
    details: Any


_HEADER_COLUMNS = """id, entity, operation, source, record_count, status, inserted_count,
    failed_count, attempt, options, failure_reason, created_at, completed_at, updated_at"""


def _header(row: asyncpg.Record) -> BatchHeader:
    values = dict(row)
    values["options"] = ChunkOptions.model_validate(values["options"] or {})
    return BatchHeader(**values)


_ID_DRAWS = 1000


async def create(
    conn: asyncpg.Connection | asyncpg.Pool,
    entity: str,
    source: str,
    record_count: int,
    options: ChunkOptions,
    operation: str = "insert",
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


async def get(conn: asyncpg.Connection | asyncpg.Pool, batch_id: str) -> BatchHeader | None:
    row = await conn.fetchrow(f"SELECT {_HEADER_COLUMNS} FROM batch WHERE id = $1", batch_id)
    return _header(row) if row else None


async def results(conn: asyncpg.Connection | asyncpg.Pool, batch_id: str) -> list[RecordRow]:
    """Per-record results as objects, for front doors that interpret them."""
    rows = await conn.fetch(
        """SELECT record_index, status, entity_id, error, details FROM batch_result
           WHERE batch_id = $1 ORDER BY record_index""",
        batch_id,
    )
    return [RecordRow(*row.values()) for row in rows]


# Built by PostgreSQL: for a large batch, one JSON text beats a Python object per record.
_RESULTS_JSON = """
SELECT coalesce(json_agg(
    CASE
        WHEN status <> 'failed' THEN
            json_build_object('index', record_index, $2::text, entity_id, 'status', 'success')
        WHEN details IS NULL THEN
            json_build_object('index', record_index, $2::text, entity_id, 'status', 'failed',
                              'error', error)
        ELSE
            json_build_object('index', record_index, $2::text, entity_id, 'status', 'failed',
                              'error', error, 'details', details)
    END ORDER BY record_index), '[]')::text
FROM batch_result WHERE batch_id = $1
"""


async def results_json(
    conn: asyncpg.Connection | asyncpg.Pool, batch_id: str, id_field: str
) -> str:
    """The per-record results of a batch as the API shows them, as JSON text."""
    text: str = await conn.fetchval(_RESULTS_JSON, batch_id, id_field)
    return text


async def page(
    conn: asyncpg.Connection | asyncpg.Pool, page: int, limit: int, status: str | None
) -> tuple[list[BatchHeader], int]:
    rows = await conn.fetch(
        f"""SELECT {_HEADER_COLUMNS}, count(*) OVER () AS total FROM batch
            WHERE ($1::text IS NULL OR status = $1)
            ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3""",
        status,
        limit,
        (page - 1) * limit,
    )
    if rows:
        return [_header(dict_without(row, "total")) for row in rows], rows[0]["total"]
    total = await conn.fetchval(
        "SELECT count(*) FROM batch WHERE ($1::text IS NULL OR status = $1)", status
    )
    return [], int(total)


def dict_without(row: asyncpg.Record, column: str) -> Any:
    return {k: v for k, v in row.items() if k != column}


async def delete(pool: asyncpg.Pool, batch_id: str) -> str | None:
    """Remove the operation and its results (never the entity rows).

    Returns None when deleted, else the reason not: ``missing`` or ``processing``.
    """
    async with pool.acquire() as conn, conn.transaction():
        status = await conn.fetchval("SELECT status FROM batch WHERE id = $1 FOR UPDATE", batch_id)
        if status is None:
            return "missing"
        if status == "processing":
            return "processing"
        await conn.execute("DELETE FROM batch_result WHERE batch_id = $1", batch_id)
        await conn.execute("DELETE FROM record_ledger WHERE batch_id = $1", batch_id)
        await conn.execute("DELETE FROM idempotency_key WHERE batch_id = $1", batch_id)
        await conn.execute("DELETE FROM batch WHERE id = $1", batch_id)
    return None


@dataclass(frozen=True, slots=True)
class RetryPlan:
    header: BatchHeader
    payloads: dict[int, Any]


class RetryRefused(Exception):
    def __init__(self, reason: str, details: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


async def start_retry(
    pool: asyncpg.Pool, batch_id: str, indices: Sequence[int], ignore_constraints: bool
) -> RetryPlan:
    """Move the batch to a new attempt for ``indices`` and return their stored payloads.

    Raises RetryRefused with reason ``missing``, ``processing``, ``invalid_request`` or
    ``invalid_indices``.
    """
    async with pool.acquire() as conn, conn.transaction():
        header_row = await conn.fetchrow(
            f"SELECT {_HEADER_COLUMNS} FROM batch WHERE id = $1 FOR UPDATE", batch_id
        )
        if header_row is None:
            raise RetryRefused("missing")
        header = _header(header_row)
        if header.status == "processing":
            raise RetryRefused("processing")
        if ignore_constraints and header.entity not in IGNORE_CONSTRAINTS_ENTITIES:
            raise RetryRefused(
                "invalid_request",
                {"ignore_constraints": f"not supported for {header.entity} batches"},
            )
        out_of_range = [i for i in indices if not 0 <= i < header.record_count]
        in_range = [i for i in indices if 0 <= i < header.record_count]
        # A failed record is retried from the payload its ledger row kept; some never had
        # one (a line of a bulk file that was no JSON, records the broker lost).
        stored = {
            row["record_index"]: row["payload"]
            for row in await conn.fetch(
                """SELECT r.record_index, l.payload FROM batch_result r
                   LEFT JOIN record_ledger l
                     ON l.batch_id = r.batch_id AND l.record_index = r.record_index
                    AND l.status = 'failed'
                   WHERE r.batch_id = $1 AND r.record_index = ANY($2::int[])
                     AND r.status = 'failed'""",
                batch_id,
                in_range,
            )
        }
        failed = {i: payload for i, payload in stored.items() if payload is not None}
        not_failed = [i for i in in_range if i not in stored]
        without_payload = [i for i in in_range if i in stored and i not in failed]
        if out_of_range or not_failed or without_payload:
            raise RetryRefused(
                "invalid_indices",
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


async def fail(pool: asyncpg.Pool, batch_id: str, reason: str) -> None:
    await pool.execute(
        """UPDATE batch SET status = 'failed', failure_reason = $2, completed_at = now()
           WHERE id = $1 AND status = 'processing'""",
        batch_id,
        reason,
    )


# --- Idempotency keys --------------------------------------------------------------------


def request_fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredResponse:
    request_hash: str
    batch_id: str | None
    status: int | None
    body: Any
    # Whether the broker took every chunk of the batch, and how long ago the key was
    # claimed (or last taken over).
    published: bool
    age_seconds: float


# Longer keys do not fit PostgreSQL's index entries; no client needs more than a UUID or two.
MAX_IDEMPOTENCY_KEY_LENGTH = 255
# A request writes its batch header within milliseconds of claiming its key, and hands its
# chunks to the broker within seconds. A claim older than this without a batch, or with a
# batch whose chunks were never acknowledged, belongs to a request that died (its process
# killed, say): the next request with the key takes it over instead of being told "in
# flight" until the stale sweep gives the batch up.
ABANDONED_CLAIM_SECONDS = 10.0


async def claim_idempotency_key(
    pool: asyncpg.Pool, key: str, fingerprint: str
) -> StoredResponse | None:
    """None when this request owns the key now; else what an earlier request stored."""
    claimed = await pool.fetchval(
        """INSERT INTO idempotency_key (key, request_hash) VALUES ($1, $2)
           ON CONFLICT (key) DO UPDATE SET request_hash = EXCLUDED.request_hash, created_at = now()
           WHERE idempotency_key.batch_id IS NULL AND idempotency_key.response_status IS NULL
             AND idempotency_key.created_at < now() - make_interval(secs => $3)
           RETURNING key""",
        key,
        fingerprint,
        ABANDONED_CLAIM_SECONDS,
    )
    if claimed is not None:
        return None
    row = await pool.fetchrow(
        """SELECT request_hash, batch_id, response_status, response_body,
                  published_at IS NOT NULL,
                  extract(epoch FROM now() - created_at)::float8
           FROM idempotency_key WHERE key = $1""",
        key,
    )
    if row is None:  # released between our insert and select: claim again
        return await claim_idempotency_key(pool, key, fingerprint)
    return StoredResponse(*row.values())


async def create_for_key(
    pool: asyncpg.Pool,
    key: str,
    entity: str,
    source: str,
    record_count: int,
    options: ChunkOptions,
) -> BatchHeader:
    """``create``, tying the claimed key to the new batch in the same transaction: no
    moment in which a dying request leaves a batch its key does not lead to."""
    async with pool.acquire() as conn, conn.transaction():
        header = await create(conn, entity, source, record_count, options)
        await conn.execute(
            "UPDATE idempotency_key SET batch_id = $2 WHERE key = $1", key, header.id
        )
    return header


async def mark_published(pool: asyncpg.Pool, key: str) -> None:
    """The broker has every chunk of the key's batch."""
    await pool.execute("UPDATE idempotency_key SET published_at = now() WHERE key = $1", key)


async def take_over_unpublished(pool: asyncpg.Pool, key: str) -> bool:
    """True when this request is the one to publish an abandoned batch's chunks again.

    Restarts the claim's clock, so of several requests with the key only one re-sends
    per ``ABANDONED_CLAIM_SECONDS``.
    """
    taken = await pool.fetchval(
        """UPDATE idempotency_key SET created_at = now()
           WHERE key = $1 AND published_at IS NULL AND response_status IS NULL
             AND created_at < now() - make_interval(secs => $2)
           RETURNING key""",
        key,
        ABANDONED_CLAIM_SECONDS,
    )
    return taken is not None


async def store_idempotent_response(
    pool: asyncpg.Pool, key: str, batch_id: str, status: int, body: Any
) -> None:
    await pool.execute(
        """UPDATE idempotency_key SET batch_id = $2, response_status = $3, response_body = $4
           WHERE key = $1""",
        key,
        batch_id,
        status,
        body,
    )


async def release_idempotency_key(pool: asyncpg.Pool, key: str) -> None:
    await pool.execute(
        "DELETE FROM idempotency_key WHERE key = $1 AND response_status IS NULL", key
    )
