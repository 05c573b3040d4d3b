"""Domain events go through an outbox: staged in the writing transaction, sent after commit,
deleted once the broker acknowledged them. A crash in between leaves them to be re-sent."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from sql.db import json_text
from streams.producer import OutgoingMessage


@dataclass(frozen=True, slots=True)
class StagedEvent:
    event_id: str
    batch_id: str
    message: OutgoingMessage


_STAGE = """
INSERT INTO event_outbox (event_id, batch_id, topic, key, value, headers)
SELECT e, b, t, k, v, h::jsonb
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::bytea[], $6::text[])
     AS input(e, b, t, k, v, h)
ON CONFLICT (event_id) DO NOTHING
"""

_SELECT_COLUMNS = "SELECT event_id, batch_id, topic, key, value, headers FROM event_outbox"


async def stage(conn: asyncpg.Connection, events: Sequence[StagedEvent]) -> None:
    if not events:
        return
    await conn.execute(
        _STAGE,
        [uuid.UUID(e.event_id) for e in events],
        [e.batch_id for e in events],
        [e.message.topic for e in events],
        [e.message.key for e in events],
        [e.message.value for e in events],
        [
            json_text([[k, v.decode() if v is not None else None] for k, v in e.message.headers])
            for e in events
        ],
    )


def _from_row(row: asyncpg.Record) -> StagedEvent:
    headers = tuple((k, v.encode() if v is not None else None) for k, v in row["headers"])
    return StagedEvent(
        event_id=str(row["event_id"]),
        batch_id=row["batch_id"],
        message=OutgoingMessage(row["topic"], row["value"], row["key"], headers),
    )


async def pending(pool: asyncpg.Pool, event_ids: Sequence[str]) -> list[StagedEvent]:
    """Staged events among ``event_ids`` that were never confirmed sent."""
    if not event_ids:
        return []
    rows = await pool.fetch(
        f"{_SELECT_COLUMNS} WHERE event_id = ANY($1::uuid[])",
        [uuid.UUID(e) for e in event_ids],
    )
    return [_from_row(row) for row in rows]


async def stale(pool: asyncpg.Pool, older_than_seconds: float, limit: int) -> list[StagedEvent]:
    rows = await pool.fetch(
        f"{_SELECT_COLUMNS} WHERE created_at < now() - make_interval(secs => $1)"
        " ORDER BY created_at LIMIT $2",
        older_than_seconds,
        limit,
    )
    return [_from_row(row) for row in rows]


async def delete(pool: asyncpg.Pool, events: Sequence[StagedEvent]) -> None:
    """Forget events the broker acknowledged."""
    await pool.execute(
        "DELETE FROM event_outbox WHERE event_id = ANY($1::uuid[])",
        [uuid.UUID(e.event_id) for e in events],
    )
