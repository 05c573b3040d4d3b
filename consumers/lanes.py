"""Keyed lanes: work for different keys runs concurrently, work for one key in order.

Chunks of one batch share a Kafka key, so they stay in order (the first index of a
duplicate pair wins across chunks too), while chunks of different batches overlap their
database and broker round trips.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class KeyedLanes(Generic[T]):
    def __init__(self, lanes: int, depth: int, work: Callable[[T], Awaitable[None]]) -> None:
        self._queues: list[asyncio.Queue[T]] = [asyncio.Queue(maxsize=depth) for _ in range(lanes)]
        self._work = work
        self._tasks = [asyncio.create_task(self._run(queue)) for queue in self._queues]

    async def submit(self, key: bytes | None, item: T) -> None:
        """Queue ``item`` on its key's lane; waits while that lane is full (backpressure)."""
        lane = zlib.crc32(key or b"") % len(self._queues)
        await self._queues[lane].put(item)

    async def _run(self, queue: asyncio.Queue[T]) -> None:
        while True:
            item = await queue.get()
            try:
                await self._work(item)
            except Exception:
                # One item's failure must not end the lane: everything queued behind it,
                # and soon every key, would wait forever.
                log.exception("keyed lane: work failed; the lane goes on")
            finally:
                queue.task_done()

    async def close(self, drain_seconds: float) -> None:
        """Finish queued work for up to ``drain_seconds``, then stop.

        Work cut short was never acknowledged, so Kafka delivers it again.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(queue.join() for queue in self._queues)), drain_seconds
            )
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
