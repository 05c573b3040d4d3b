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
from pydantic import ValidationError

from sql import ledger, results
from sql.db import is_transient
from streams.events import ChunkOutcome

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

_FAIL = """
UPDATE batch SET status = 'failed', completed_at = now(),
    failure_reason = 'no progress for ' || $2::int || ' s: '
        || pending_count || ' records never reached the inserter',
    -- Nothing is awaited any more: late outcomes replacing never_delivered results (their
    -- chunk was in the dead-letter topic, say, and replayed) complete the batch.
    pending_count = 0
WHERE id = $1 AND status = 'processing'
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
            written = [
                (chunk, outcome)
                for outcome in await ledger.unprojected_outcomes(conn, batch_id)
                if (chunk := _chunk_outcome(batch_id, outcome)) is not None
            ]
            if written:
                await results.project(conn, written)
            await results.record_lost(
                conn,
                batch_id,
                f"its chunk never reached the inserter (no progress for {older_than_seconds:.0f}"
                " s); send the record again",
            )
        # Without its ledger the batch cannot tell lost records from written ones: it is
        # failed with the reason, and its records keep what the projection knows.
        await conn.fetch(_FAIL, batch_id, older_than_seconds)
    return True


def _chunk_outcome(batch_id: str, outcome: bytes) -> ChunkOutcome | None:
    try:
        return ChunkOutcome.model_validate_json(outcome)
    except ValidationError as exc:
        log.warning("a ledger row of batch %s left out, its outcome is invalid: %s", batch_id, exc)
        return None
