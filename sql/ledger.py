"""The inserter's ledger: one row per chunk, written in the transaction of its entity rows.

Writers of one batch take an advisory lock on it first, so a second delivery of a chunk (a
worker that stalled and resumed after a rebalance, say) waits for the first transaction
to end and then finds its row, instead of writing the records again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from sql.indexranges import contains, index_ranges

# hashtextextended: 64 bits, so two batches share a lock (and wait for each other without
# need) about never; the prefix keeps clear of other advisory locks (migrations).
_LOCK_BATCH_WRITES = "SELECT pg_advisory_xact_lock(hashtextextended('batchline.chunk:' || $1, 0))"

# Rows naming any of the chunk's records in its attempt or a later one. Chunks arrive in
# index order, so for a fresh chunk the index on (batch_id, last_index) finds nothing.
_OVERLAPPING = """
SELECT attempt, first_index, covers, digest, written, outcome
FROM chunk_ledger
WHERE batch_id = $1 AND last_index >= $2 AND first_index <= $3 AND attempt >= $4
  AND covers && $5::int4multirange
ORDER BY attempt, first_index
"""

# A row of the same attempt is never overwritten, except the one a dead-lettered chunk left
# (written = false): a replay of that chunk writes its records and takes the row over.
_RECORD = """
INSERT INTO chunk_ledger AS l
    (batch_id, attempt, first_index, last_index, covers, digest, written, outcome, payloads)
VALUES ($1, $2, $3, $4, $5::int4multirange, $6, $7, $8, $9)
ON CONFLICT (batch_id, attempt, first_index) DO UPDATE
SET last_index = EXCLUDED.last_index, covers = EXCLUDED.covers, digest = EXCLUDED.digest,
    written = EXCLUDED.written, outcome = EXCLUDED.outcome, payloads = EXCLUDED.payloads,
    created_at = now()
WHERE NOT l.written
RETURNING 1
"""

_PAYLOADS = """
SELECT attempt, first_index, payloads FROM chunk_ledger
WHERE batch_id = $1 AND (attempt, first_index) IN (SELECT * FROM unnest($2::int[], $3::int[]))
  AND payloads IS NOT NULL
"""

# Outcomes the inserter committed whose projection never happened (a worker killed between
# its commit and its outcome message, a broker that lost the message).
_UNPROJECTED = """
SELECT l.outcome FROM chunk_ledger l
WHERE l.batch_id = $1 AND NOT EXISTS (
    SELECT FROM chunk_result r
    WHERE r.batch_id = l.batch_id AND r.attempt = l.attempt AND r.first_index = l.first_index
)
ORDER BY l.attempt, l.first_index
"""


@dataclass(frozen=True, slots=True)
class LedgerChunk:
    """A chunk the ledger already holds that names some of the records being written."""

    attempt: int
    first_index: int
    digest: bytes | None
    written: bool
    outcome: bytes
    # The records of the chunk being written that this row names.
    overlap: list[int]

    @property
    def messages(self) -> list[bytes]:
        """The outcome message(s) the chunk was told in, to send again."""
        return outcome_messages(self.outcome)


class LedgerConflict(Exception):
    """A written ledger row of the same attempt is in the way: never overwritten."""


async def lock_batch_writes(conn: asyncpg.Connection, batch_id: str) -> None:
    """Wait until no other transaction writes chunks of this batch; held until commit.

    A writer that stalls for good holds it only until PostgreSQL ends its idle transaction
    (the worker's ``idle_in_transaction_session_timeout``).
    """
    await conn.execute(_LOCK_BATCH_WRITES, batch_id)


async def overlapping(
    conn: asyncpg.Connection, batch_id: str, attempt: int, indices: Sequence[int]
) -> list[LedgerChunk]:
    """Chunks of this attempt or a later one already naming some of ``indices`` (ascending)."""
    rows = await conn.fetch(
        _OVERLAPPING, batch_id, indices[0], indices[-1], attempt, index_ranges(indices)
    )
    return [
        LedgerChunk(
            row["attempt"],
            row["first_index"],
            row["digest"],
            row["written"],
            row["outcome"],
            [i for i in indices if contains(row["covers"], i)],
        )
        for row in rows
    ]


async def record(
    conn: asyncpg.Connection,
    batch_id: str,
    attempt: int,
    indices: Sequence[int],
    messages: Sequence[bytes],
    failed_payloads: bytes | None,
    digest: bytes | None,
    *,
    written: bool = True,
) -> None:
    """Keep a chunk's outcome message(s) (and its failed records' payloads, JSON by index)."""
    kept = await conn.fetchval(
        _RECORD,
        batch_id,
        attempt,
        indices[0],
        indices[-1],
        index_ranges(indices),
        digest,
        written,
        _OUTCOME_SEPARATOR.join(messages),
        failed_payloads,
    )
    if kept is None:
        raise LedgerConflict(
            f"batch {batch_id!r} attempt {attempt} already has a written chunk at index"
            f" {indices[0]}"
        )


async def failed_payloads(
    conn: asyncpg.Connection, batch_id: str, chunks: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    """The failed records' payloads (JSON ``{"index": payload}``) of ``(attempt, first_index)``."""
    rows = await conn.fetch(_PAYLOADS, batch_id, [a for a, _ in chunks], [f for _, f in chunks])
    return {(row["attempt"], row["first_index"]): row["payloads"] for row in rows}


async def unprojected_outcomes(conn: asyncpg.Connection, batch_id: str) -> list[bytes]:
    """Outcome messages of chunks whose outcome the projection never saw."""
    return [
        message
        for row in await conn.fetch(_UNPROJECTED, batch_id)
        for message in outcome_messages(row["outcome"])
    ]


# A chunk told in several messages (too large for one) keeps them one per line: JSON as
# orjson writes it has no line breaks.
_OUTCOME_SEPARATOR = b"\n"


def outcome_messages(stored: bytes) -> list[bytes]:
    return stored.split(_OUTCOME_SEPARATOR)


async def delete(conn: asyncpg.Connection, batch_id: str) -> None:
    await conn.execute("DELETE FROM chunk_ledger WHERE batch_id = $1", batch_id)


def payloads_document(payloads: dict[int, Any]) -> dict[str, Any]:
    """Failed records' payloads keyed as JSON object keys are: by index, as text."""
    return {str(index): payload for index, payload in payloads.items()}
