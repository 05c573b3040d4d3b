"""Per-record results (``batch_result``) and the batch counts they move, set-based.

Outcomes of one batch share a key, so one projector partition sees them in order. A
re-sent outcome of the same attempt changes nothing; a retry's outcome (higher attempt)
replaces the earlier one and moves the counts by the difference.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import asyncpg

from sql import batches
from sql.db import insert_resolving_conflicts
from streams.events import RecordOutcome

_PROJECT_TEMPLATE = """
WITH incoming AS (
    -- One JSON document of rows, unpacked in C (asyncpg checks bound arrays per element).
    SELECT DISTINCT ON (batch_id, record_index) *
    FROM (
        SELECT o->>0 AS batch_id, (o->>1)::int AS record_index, (o->>2)::int AS attempt,
               o->>3 AS status, o->>4 AS entity_id, o->>5 AS error,
               nullif(o->6, 'null'::jsonb) AS details
        FROM jsonb_array_elements($1::jsonb) AS o
    ) AS t
    ORDER BY batch_id, record_index, attempt DESC
), locked AS (
    -- Once per batch, not per row: outcomes of a batch being deleted are dropped, never
    -- left behind as results without a batch.
    SELECT id, record_count, attempt FROM batch
    WHERE id = ANY(ARRAY(SELECT DISTINCT batch_id FROM incoming))
    ORDER BY id
    FOR NO KEY UPDATE
), written AS (
    INSERT INTO batch_result AS r
        (batch_id, record_index, attempt, status, entity_id, error, details)
    SELECT i.batch_id, i.record_index, i.attempt, i.status, i.entity_id, i.error, i.details
    FROM incoming i JOIN locked b ON b.id = i.batch_id
    -- Raises for an outcome past its batch's end, which would otherwise count as a record,
    -- or of an attempt the batch has not started, which would hide the real one's outcome.
    WHERE (i.record_index < b.record_count AND i.attempt <= b.attempt)
       OR batchline_outcome_beyond_batch(
              i.batch_id, i.record_index, b.record_count, i.attempt, b.attempt)
{on_conflict}    RETURNING batch_id, record_index, attempt, status, r.xmax = 0 AS fresh
), {delta}
UPDATE batch b
SET inserted_count = b.inserted_count + d.ok,
    failed_count = b.failed_count + d.failed,
    pending_count = greatest(b.pending_count - d.finished, 0),
    status = CASE WHEN b.pending_count - d.finished <= 0 THEN 'completed' ELSE b.status END,
    completed_at = CASE WHEN b.pending_count - d.finished <= 0 AND b.pending_count > 0
                        THEN now() ELSE b.completed_at END,
    failure_reason = CASE WHEN b.pending_count - d.finished <= 0 THEN NULL
                          ELSE b.failure_reason END,
    progressed_at = now()
FROM delta d
WHERE b.id = d.batch_id
RETURNING b.id, b.status
"""
_REPLACING = _PROJECT_TEMPLATE.format(
    on_conflict="""
    ON CONFLICT (batch_id, record_index) DO UPDATE
    SET attempt = EXCLUDED.attempt, status = EXCLUDED.status, entity_id = EXCLUDED.entity_id,
        error = EXCLUDED.error, details = EXCLUDED.details
    WHERE r.attempt <= EXCLUDED.attempt
""",
    delta="""previous AS (
    -- Every statement here sees the table as it was before the insert, so this finds what
    -- a replaced row said; only replaced rows (retries, re-sent outcomes) need looking up.
    SELECT r.batch_id, r.record_index, r.attempt, r.status
    FROM written w JOIN batch_result r USING (batch_id, record_index)
    WHERE NOT w.fresh
), delta AS (
    SELECT w.batch_id,
           sum((w.status <> 'failed')::int - coalesce((p.status <> 'failed')::int, 0)) AS ok,
           sum((w.status = 'failed')::int - coalesce((p.status = 'failed')::int, 0)) AS failed,
           sum((p.batch_id IS NULL OR p.attempt < w.attempt)::int) AS finished
    FROM written w LEFT JOIN previous p USING (batch_id, record_index)
    GROUP BY w.batch_id
)""",
)
# First outcomes replace nothing: without ON CONFLICT the insert costs less, and with every
# row new the counts need no join to earlier results (README, Performance).
_FRESH = _PROJECT_TEMPLATE.format(
    on_conflict="",
    delta="""delta AS (
    SELECT batch_id, sum((status <> 'failed')::int) AS ok, sum((status = 'failed')::int) AS failed,
           count(*) AS finished
    FROM written
    GROUP BY batch_id
)""",
)


async def project(conn: asyncpg.Connection, outcomes: Sequence[RecordOutcome]) -> list[str]:
    """Apply outcomes; returns the ids of batches that are now completed."""
    rows_document = [
        (
            o.batch_id,
            o.index,
            o.attempt,
            o.status.value,
            o.id,
            o.error.value if o.error else None,
            o.details,
        )
        for o in outcomes
    ]
    async with conn.transaction():
        # Replacing: a retry's outcome, or one sent again.
        rows = await insert_resolving_conflicts(conn, _FRESH, _REPLACING, rows_document)
        completed = [row["id"] for row in rows if row["status"] == "completed"]
        if completed:
            await batches.notify_done(conn, completed)
    return completed


_FAILED = """
SELECT r.record_index, r.error, r.details, l.payload ->> 'id' AS record_id
FROM batch_result r
LEFT JOIN record_ledger l USING (batch_id, record_index)
WHERE r.batch_id = $1 AND r.status = 'failed'
ORDER BY r.record_index
"""

_FAILED_INDICES = """
SELECT record_index FROM batch_result
WHERE batch_id = $1 AND status = 'failed' ORDER BY record_index
"""


async def failed(pool: asyncpg.Pool, batch_id: str) -> AsyncIterator[asyncpg.Record]:
    """The batch's failed results in index order, each with the id its payload named."""
    async with pool.acquire() as conn, conn.transaction():
        async for row in conn.cursor(_FAILED, batch_id, prefetch=1000):
            yield row


async def failed_indices(pool: asyncpg.Pool, batch_id: str) -> AsyncIterator[int]:
    async with pool.acquire() as conn, conn.transaction():
        async for row in conn.cursor(_FAILED_INDICES, batch_id, prefetch=1000):
            yield row["record_index"]
