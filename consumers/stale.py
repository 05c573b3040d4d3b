"""Batches that stopped moving: settle what was written, fail what never arrived.

With a broker that keeps nothing across a restart (the embedded one), a worker killed
between its commit and its outcome events leaves ledger rows no outcome will ever
announce, and chunks nobody will ever deliver. The ledger is the truth for the first;
the second are counted and named in the batch's failure reason.
"""

from __future__ import annotations

import asyncpg

from consumers.projector import project
from streams.events import RecordError, RecordOutcome, RecordStatus

_STALE = """
SELECT id FROM batch
WHERE status = 'processing' AND progressed_at < now() - make_interval(secs => $1)
FOR UPDATE SKIP LOCKED
"""

# Ledger rows whose outcome never reached the projection.
_UNPROJECTED = """
SELECT l.batch_id, l.record_index, l.attempt, l.status, l.entity_id, l.error, l.details,
       b.entity, b.record_count
FROM record_ledger l
JOIN batch b ON b.id = l.batch_id
LEFT JOIN batch_result r ON r.batch_id = l.batch_id AND r.record_index = l.record_index
WHERE l.batch_id = ANY($1::text[]) AND (r.batch_id IS NULL OR r.attempt < l.attempt)
"""

_FAIL = """
UPDATE batch SET status = 'failed', completed_at = now(),
    failure_reason = 'no progress for ' || $2::int || ' s: '
        || pending_count || ' records never reached the inserter'
WHERE id = ANY($1::text[]) AND status = 'processing'
RETURNING id
"""


async def settle_stale_batches(pool: asyncpg.Pool, older_than_seconds: float) -> list[str]:
    """Returns the ids of the batches that are no longer processing now."""
    async with pool.acquire() as conn, conn.transaction():
        stale = [row["id"] for row in await conn.fetch(_STALE, older_than_seconds)]
        if not stale:
            return []
        outcomes = [
            RecordOutcome(
                batch_id=row["batch_id"],
                index=row["record_index"],
                attempt=row["attempt"],
                status=RecordStatus(row["status"]),
                entity=row["entity"],
                id=row["entity_id"],
                error=RecordError(row["error"]) if row["error"] else None,
                details=row["details"],
                record_count=row["record_count"],
            )
            for row in await conn.fetch(_UNPROJECTED, stale)
        ]
        if outcomes:
            await project(conn, outcomes)
        await conn.fetch(_FAIL, stale, older_than_seconds)
    return stale
