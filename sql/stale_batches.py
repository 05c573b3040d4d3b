"""Batches that stopped moving: settle what was written, fail what never arrived.

With a broker that keeps nothing across a restart (the embedded one), a worker killed
between its commit and its outcome events leaves ledger rows no outcome will ever
announce, and chunks nobody will ever deliver. The ledger is the truth for the first;
the second get a failed result each (``never_delivered``), so every record of the batch
has one, and are counted in the batch's failure reason.
"""

from __future__ import annotations

import logging

import asyncpg

from batchline.vocabulary import RecordError, RecordStatus
from sql.db import is_transient
from sql.results import project
from streams.events import RecordOutcome

log = logging.getLogger(__name__)

_STALE_IDS = """
SELECT id FROM batch
WHERE status = 'processing' AND progressed_at < now() - make_interval(secs => $1)
"""

_LOCK_STALE = """
SELECT id FROM batch
WHERE id = $1 AND status = 'processing' AND progressed_at < now() - make_interval(secs => $2)
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

# Records with no result at all never reached the inserter. (A lost retry chunk leaves its
# records with the failed results of their earlier attempt.)
_NEVER_DELIVERED = """
WITH missing AS (
    INSERT INTO batch_result AS r (batch_id, record_index, attempt, status, error, details)
    SELECT b.id, i, b.attempt, 'failed', $2::text, jsonb_build_object('message', $3::text)
    FROM batch b CROSS JOIN LATERAL generate_series(0, b.record_count - 1) AS i
    WHERE b.id = ANY($1::text[]) AND b.status = 'processing'
      AND NOT EXISTS (
          SELECT FROM batch_result x WHERE x.batch_id = b.id AND x.record_index = i
      )
    RETURNING batch_id
), counted AS (
    SELECT batch_id, count(*) AS lost FROM missing GROUP BY batch_id
)
UPDATE batch b SET failed_count = b.failed_count + c.lost
FROM counted c WHERE b.id = c.batch_id
"""

_FAIL = """
UPDATE batch SET status = 'failed', completed_at = now(),
    failure_reason = 'no progress for ' || $2::int || ' s: '
        || pending_count || ' records never reached the inserter',
    -- Nothing is awaited any more: a late outcome replacing a never_delivered result (its
    -- chunk was in the dead-letter topic, say, and replayed) completes the batch.
    pending_count = 0
WHERE id = ANY($1::text[]) AND status = 'processing'
RETURNING id
"""


async def settle_stale_batches(pool: asyncpg.Pool, older_than_seconds: float) -> list[str]:
    """Returns the ids of the batches that are no longer processing now.

    Each batch is settled on its own: one that cannot be (a ledger row no outcome can
    describe, say) must not keep every other stale batch processing.
    """
    stale = [row["id"] for row in await pool.fetch(_STALE_IDS, older_than_seconds)]
    settled = []
    for batch_id in stale:
        try:
            done = await _settle(pool, batch_id, older_than_seconds, from_ledger=True)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("batch %s: its ledger cannot be projected (%s); failing it", batch_id, exc)
            done = await _settle(pool, batch_id, older_than_seconds, from_ledger=False)
        if done:
            settled.append(batch_id)
    return settled


async def _settle(
    pool: asyncpg.Pool, batch_id: str, older_than_seconds: float, *, from_ledger: bool
) -> bool:
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(_LOCK_STALE, batch_id, older_than_seconds) is None:
            return False  # settled meanwhile, moving again, or another sweep has it
        if from_ledger:
            outcomes = [
                outcome
                for row in await conn.fetch(_UNPROJECTED, [batch_id])
                if (outcome := _outcome(row)) is not None
            ]
            if outcomes:
                await project(conn, outcomes)
            await conn.execute(
                _NEVER_DELIVERED,
                [batch_id],
                RecordError.NEVER_DELIVERED.value,
                f"its chunk never reached the inserter (no progress for {older_than_seconds:.0f}"
                " s); send the record again",
            )
        # Without its ledger the batch cannot tell lost records from written ones: it is
        # failed with the reason, and its records keep what the projection knows.
        await conn.fetch(_FAIL, [batch_id], older_than_seconds)
    return True


def _outcome(row: asyncpg.Record) -> RecordOutcome | None:
    try:
        return RecordOutcome(
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
    except ValueError as exc:  # pydantic's ValidationError is one
        log.warning("ledger row %s[%s] left out: %s", row["batch_id"], row["record_index"], exc)
        return None
