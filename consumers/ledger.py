"""The inserter's ledger: per ``(batch_id, record_index)``, what the pipeline did."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from consumers.writers.base import RecordResult
from streams.events import RecordError, RecordStatus

_FETCH = """
SELECT record_index, attempt, status, entity_id, error, details
FROM record_ledger
WHERE batch_id = $1 AND record_index = ANY($2::int[]) AND attempt >= $3
  -- Kept for retries of a dead-lettered chunk, not written: a replay must write them.
  AND error IS DISTINCT FROM 'processing_failed'
"""

_UPSERT = """
INSERT INTO record_ledger
    (batch_id, record_index, attempt, status, entity_id, error, details, payload)
SELECT $1, (r->>0)::int, $2, r->>1, r->>2, r->>3,
       nullif(r->4, 'null'::jsonb), nullif(r->5, 'null'::jsonb)
FROM jsonb_array_elements($3::jsonb) AS r
ON CONFLICT (batch_id, record_index) DO UPDATE
SET attempt = EXCLUDED.attempt, status = EXCLUDED.status, entity_id = EXCLUDED.entity_id,
    error = EXCLUDED.error, details = EXCLUDED.details, payload = EXCLUDED.payload
"""


async def fetch_done(
    conn: asyncpg.Connection, batch_id: str, indices: Sequence[int], attempt: int
) -> dict[int, tuple[int, RecordResult]]:
    """Records of this attempt (or a later one) already written: index -> (attempt, result)."""
    rows = await conn.fetch(_FETCH, batch_id, list(indices), attempt)
    return {
        row["record_index"]: (
            row["attempt"],
            RecordResult(
                index=row["record_index"],
                status=RecordStatus(row["status"]),
                entity_id=row["entity_id"],
                error=RecordError(row["error"]) if row["error"] else None,
                details=row["details"],
            ),
        )
        for row in rows
    }


async def record(
    conn: asyncpg.Connection,
    batch_id: str,
    attempt: int,
    results: Sequence[RecordResult],
    payloads: dict[int, Any],
) -> None:
    failed = RecordStatus.FAILED
    # One JSON document of rows: PostgreSQL unpacks it in C (see the activity writer).
    rows = [
        (
            r.index,
            r.status.value,
            r.entity_id,
            r.error.value if r.error else None,
            r.details,
            payloads.get(r.index) if r.status is failed else None,
        )
        for r in results
    ]
    await conn.execute(_UPSERT, batch_id, attempt, rows)


async def failed_payloads(
    conn: asyncpg.Connection, batch_id: str, indices: Sequence[int]
) -> dict[int, Any]:
    rows = await conn.fetch(
        "SELECT record_index, payload FROM record_ledger"
        " WHERE batch_id = $1 AND record_index = ANY($2::int[]) AND status = 'failed'",
        batch_id,
        list(indices),
    )
    return {row["record_index"]: row["payload"] for row in rows}
