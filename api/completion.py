"""Waiting for a batch to finish: LISTEN for the projector's notifications, poll as a fallback.

One listening connection per API process serves every waiting request. The poll covers a
notification missed while that connection was being re-established.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

import asyncpg

from sql import batches, db
from sql.batches import BATCH_DONE_CHANNEL

log = logging.getLogger(__name__)

_POLL_SECONDS = 1.0


class CompletionWaiter:
    def __init__(self, pool: asyncpg.Pool, database_url: str) -> None:
        self._pool = pool
        self._url = database_url
        self._waiting: defaultdict[str, set[asyncio.Future[None]]] = defaultdict(set)
        self._listener: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self._ensure_listener()

    async def close(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close()
        for futures in self._waiting.values():
            for future in futures:
                future.cancel()

    async def _ensure_listener(self) -> None:
        async with self._lock:
            if self._listener is not None and not self._listener.is_closed():
                return
            try:
                conn = await db.connect(self._url)
                await conn.add_listener(BATCH_DONE_CHANNEL, self._notified)
            except Exception as exc:
                if not db.is_transient(exc):
                    raise
                log.warning("cannot listen for batch completions yet: %s", exc)
                return
            self._listener = conn

    def _notified(self, _conn: asyncpg.Connection, _pid: int, _channel: str, batch_id: str) -> None:
        for future in self._waiting.pop(batch_id, ()):
            if not future.done():
                future.set_result(None)

    async def wait(self, batch_id: str, wait_seconds: float) -> bool:
        """True when the batch is no longer processing within ``wait_seconds``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiting[batch_id].add(future)
        deadline = loop.time() + wait_seconds
        try:
            while True:
                try:
                    if await self._finished(batch_id):
                        return True
                except Exception as exc:
                    if not db.is_transient(exc):
                        raise
                    # The database is away: the batch may still finish before the deadline.
                    log.info("cannot look at batch %s yet: %s", batch_id, exc)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), min(remaining, _POLL_SECONDS))
                    return True
                await self._ensure_listener()
        finally:
            waiting = self._waiting.get(batch_id)
            if waiting is not None:
                waiting.discard(future)
                if not waiting:
                    del self._waiting[batch_id]

    async def _finished(self, batch_id: str) -> bool:
        return await batches.is_finished(self._pool, batch_id)
