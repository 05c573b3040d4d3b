"""Sending the domain events a write staged in the outbox (``sql.outbox``)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from sql import outbox
from streams.producer import AsyncProducer


async def publish(
    pool: asyncpg.Pool, producer: AsyncProducer, events: Sequence[outbox.StagedEvent]
) -> None:
    """Send, and only once the broker acknowledged them, delete them from the outbox."""
    if not events:
        return
    await producer.send_many(e.message for e in events)
    await outbox.delete(pool, events)
