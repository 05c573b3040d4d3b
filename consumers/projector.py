"""The projector: outcome events -> batch_result rows and batch counts, set-based.

Outcomes of one batch share a key, so one projector partition sees them in order. A
re-sent outcome of the same attempt changes nothing; a retry's outcome (higher attempt)
replaces the earlier one and moves the counts by the difference.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import asyncpg
from pydantic import ValidationError

from batchline import dlq
from batchline.db import insert_resolving_conflicts, is_transient, outage_backoff
from streams.deadletter import DeadLetter, Stage
from streams.events import RecordOutcome
from streams.messages import ConsumedMessage
from streams.producer import AsyncProducer

log = logging.getLogger(__name__)

BATCH_DONE_CHANNEL = "batchline_batch_done"

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
# First outcomes replace nothing: without ON CONFLICT the insert costs a third less, and
# with every row new the counts need no join to earlier results (0.5 of 4.3 ms per 1,000).
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
            # Delivered at commit: API instances waiting on these batches answer at once.
            await conn.execute(
                "SELECT pg_notify($1, id) FROM unnest($2::text[]) AS id",
                BATCH_DONE_CHANNEL,
                completed,
            )
    return completed


class Projector:
    def __init__(self, pool: asyncpg.Pool, producer: AsyncProducer, backoff_seconds: float) -> None:
        self._pool = pool
        self._producer = producer
        self._backoff = backoff_seconds

    async def handle_many(self, messages: Sequence[ConsumedMessage]) -> None:
        decoded: list[tuple[ConsumedMessage, RecordOutcome]] = []
        for message in messages:
            try:
                decoded.append((message, RecordOutcome.model_validate_json(message.value or b"")))
            except ValidationError as exc:
                not_json = any(error["type"] == "json_invalid" for error in exc.errors())
                stage = Stage.DECODE if not_json else Stage.VALIDATE
                await self._dead_letter(DeadLetter.for_failure(message, exc, stage, 1))
        if not decoded:
            return
        try:
            await self._project_until_reachable([outcome for _, outcome in decoded])
        except Exception as exc:  # noqa: BLE001 - permanent: find the outcome(s) to blame
            log.warning("projecting %d outcomes failed (%s); one by one", len(decoded), exc)
            for message, outcome in decoded:
                try:
                    await self._project_until_reachable([outcome])
                except Exception as single:  # noqa: BLE001 - one poison outcome, not all
                    letter = DeadLetter.for_failure(message, single, Stage.PROCESS, 1)
                    await self._dead_letter(letter)

    async def _project_until_reachable(self, outcomes: Sequence[RecordOutcome]) -> None:
        """Project; waits out an unavailable database, raises a permanent error."""
        waits = 0
        while True:
            try:
                async with self._pool.acquire() as conn:
                    await project(conn, outcomes)
                return
            except Exception as exc:
                if not is_transient(exc):
                    raise
                waits += 1
                log.warning("database unavailable, projector pausing: %s", exc)
                await asyncio.sleep(outage_backoff(self._backoff, waits))

    async def _dead_letter(self, letter: DeadLetter) -> None:
        waits = 0
        while True:
            try:
                letter = await dlq.with_trusted_replay_count(self._pool, letter)
                await self._producer.send_many([letter.to_message()])
                return
            except Exception as exc:  # noqa: BLE001 - broker away: the offset must wait
                waits += 1
                log.warning("dead-lettering an outcome failed: %s", exc)
                await asyncio.sleep(outage_backoff(self._backoff, waits))
