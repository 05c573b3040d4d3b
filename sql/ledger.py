"""The inserter's ledger: per ``(batch_id, record_index)``, what the pipeline did."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import asyncpg

from batchline.records import RecordResult
from batchline.vocabulary import RecordError, RecordStatus
from sql.db import insert_resolving_conflicts

_FETCH = """
SELECT record_index, attempt, status, entity_id, error, details, chunk_digest
FROM record_ledger
WHERE batch_id = $1 AND record_index = ANY($2::int[]) AND attempt >= $3
  -- Kept for retries of a dead-lettered chunk, not written: a replay must write them.
  AND error IS DISTINCT FROM 'processing_failed'
"""

_INSERT = """
INSERT INTO record_ledger
    (batch_id, record_index, attempt, status, entity_id, error, details, payload, chunk_digest)
SELECT $1, (r->>0)::int, $2, r->>1, r->>2, r->>3,
       nullif(r->4, 'null'::jsonb), nullif(r->5, 'null'::jsonb), $4
FROM jsonb_array_elements($3::jsonb) AS r
"""

# Retries, and replays of a dead-lettered chunk, find rows of an earlier run to replace.
_UPSERT = (
    _INSERT
    + """
ON CONFLICT (batch_id, record_index) DO UPDATE
SET attempt = EXCLUDED.attempt, status = EXCLUDED.status, entity_id = EXCLUDED.entity_id,
    error = EXCLUDED.error, details = EXCLUDED.details, payload = EXCLUDED.payload,
    chunk_digest = EXCLUDED.chunk_digest
"""
)


class DoneRecord(NamedTuple):
    attempt: int
    result: RecordResult
    # The digest of the chunk that wrote it; None for rows from before digests were kept.
    chunk_digest: bytes | None


async def fetch_done(
    conn: asyncpg.Connection, batch_id: str, indices: Sequence[int], attempt: int
) -> dict[int, DoneRecord]:
    """Records of this attempt (or a later one) already written, by index."""
    rows = await conn.fetch(_FETCH, batch_id, list(indices), attempt)
    return {
        row["record_index"]: DoneRecord(
            row["attempt"],
            RecordResult(
                index=row["record_index"],
                status=RecordStatus(row["status"]),
                entity_id=row["entity_id"],
                error=RecordError(row["error"]) if row["error"] else None,
                details=row["details"],
            ),
            row["chunk_digest"],
        )
        for row in rows
    }


async def record(
    conn: asyncpg.Connection,
    batch_id: str,
    attempt: int,
    results: Sequence[RecordResult],
    payloads: dict[int, Any],
    chunk_digest: bytes | None,
) -> None:
    failed = RecordStatus.FAILED
    # One JSON document of rows: PostgreSQL unpacks it in C (see sql.activities).
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
    await insert_resolving_conflicts(conn, _INSERT, _UPSERT, batch_id, attempt, rows, chunk_digest)
